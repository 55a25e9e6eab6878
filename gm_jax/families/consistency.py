"""Consistency models: improved consistency training (iCT; Song & Dhariwal 2023), or
consistency distillation from an EDM run (CD; Song et al. 2023).

`config.model = 'consistency'`: `f(x, sigma) = c_skip x + c_out F(c_in x, c_noise)` with
the U-Net of the diffusion family as `F` and the boundary condition `f(x, sigma_min) = x`
(`gm_jax.models.consistency`).

* `config.teacher_workdir = ''`: consistency training, without a teacher: the
  pseudo-Huber distance between the network at neighbouring levels of a Karras grid whose
  size doubles from `ct_initial_scales` to `ct_final_scales` over training, the smaller
  level's output under `stop_gradient`, level pairs drawn from a discretised log-normal,
  weighted by `1 / (sigma_{i+1} - sigma_i)` (`gm_jax.losses.consistency_loss`).
* `config.teacher_workdir = DIR`, a trained unconditional `edm` run on the same dataset:
  consistency distillation. The target's point is one Heun step of the teacher's
  probability-flow ODE from `sigma_{i+1}` to `sigma_i` on a fixed grid of `cd_scales`
  levels (`cm.cd_terms`), with the pair distribution, weighting and metric of training.
  The student is the teacher's U-Net (its settings, not this config's) started from the
  teacher's parameters (as Song et al. do): with the same `c_in` and `c_noise`, and
  `c_skip`, `c_out` that differ from EDM's only by `sigma_min`, it starts as the teacher's
  denoiser, a one-step sampler of the data's mean at `sigma_max` that distillation makes
  consistent along the teacher's ODE.

The loss of a training run depends on the step (the grid grows), so no validation
selection: the last parameters are evaluated (distillation likewise). Samples by multistep
consistency sampling (Song et al. 2023, Algorithm 1); eval.json has `fid_by_steps` for
`fid_steps` (1, 2, 4 network evaluations) and, at `sample_steps`,
`gm_jax.evaluate.sample_metrics` (`fid`, KID, precision/recall; `config.fid_network`
'classifier' (`fid_floor`, `class_coverage`) or 'inception', as every sampling family).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from gm_jax.evaluate import sample_metrics
from gm_jax.families import _fewstep
from gm_jax.families import _unet_settings
from gm_jax.families import edm as edm_family
from gm_jax.models import consistency as cm
from gm_jax.models import diffusion as dm
from gm_jax.train.family import Family

MODELS = ('consistency',)

DEFAULTS = {
  # the U-Net (models.diffusion.UNet) of the diffusion family, unconditional and narrower
  **_unet_settings.DEFAULTS,
  'channels': 32,
  # the noise levels and the curriculum (iCT)
  'sigma_min': cm.SIGMA_MIN,
  'sigma_max': cm.SIGMA_MAX,
  'sigma_data': cm.SIGMA_DATA,
  'rho': cm.RHO,
  'ct_p_mean': cm.P_MEAN,
  'ct_p_std': cm.P_STD,
  'ct_initial_scales': 10,
  'ct_final_scales': 1280,
  'huber_c': 0.0,  # 0: 0.00054 sqrt(D)
  # consistency distillation: '' trains without a teacher
  'teacher_workdir': '',
  'cd_scales': 18,
  'sample_rho': 0.0,
  **_fewstep.DEFAULTS,
}

DEFAULTS_DOC = {
  **_unet_settings.DEFAULTS_DOC,
  'sigma_min': 'smallest noise level, where f is the identity (> 0)',
  'sigma_max': 'largest noise level, where sampling starts',
  'sigma_data': "the data's standard deviation in the preconditioning",
  'rho': 'Karras grid exponent of training and sampling levels',
  'ct_p_mean': 'mean of the log-normal the level pairs are drawn from',
  'ct_p_std': 'standard deviation of that log-normal (> 0)',
  'ct_initial_scales': 's0: grid intervals at the start of training',
  'ct_final_scales': 's1: grid intervals at the end (doubling from s0)',
  'huber_c': 'pseudo-Huber c (0: 0.00054 sqrt(dimensions))',
  'teacher_workdir': "a trained edm run to distil ('': consistency training)",
  'cd_scales': "distillation's fixed grid of noise levels (>= 2)",
  'sample_rho': 'Karras exponent of the multistep sampling levels (0: config.rho)',
  **_fewstep.DEFAULTS_DOC,
}


def check_config(config, info) -> None:
  """Validates the family's fields against dataset `info`; errors name the field."""
  if config.model not in MODELS:
    raise ValueError(f'config.model must be one of {MODELS}; got {config.model!r}')
  if info.kind != 'image':
    raise ValueError(f'config.dataset={info.name!r} is {info.kind} data; consistency needs images')
  _unet_settings.check_config(config)
  _unet_settings.check_positive_ints(config, ('ct_initial_scales', 'ct_final_scales', 'cd_scales'))
  if config.cd_scales < 2:
    raise ValueError(f'config.cd_scales must be >= 2; got {config.cd_scales!r}')
  if not isinstance(config.teacher_workdir, str):
    raise ValueError(f'config.teacher_workdir must be a path (str); got {config.teacher_workdir!r}')
  if not 0.0 < config.sigma_min < config.sigma_max:
    raise ValueError(
      f'config.sigma_min must be in (0, config.sigma_max={config.sigma_max}); '
      f'got {config.sigma_min!r}'
    )
  for name in ('sigma_data', 'rho', 'ct_p_std'):
    if not config[name] > 0:
      raise ValueError(f'config.{name} must be > 0; got {config[name]!r}')
  if config.ct_final_scales < config.ct_initial_scales:
    raise ValueError(
      f'config.ct_final_scales ({config.ct_final_scales}) must be >= '
      f'config.ct_initial_scales ({config.ct_initial_scales})'
    )
  if not config.sample_rho >= 0:
    raise ValueError(f'config.sample_rho must be >= 0; got {config.sample_rho!r}')
  if not config.huber_c >= 0:
    raise ValueError(f'config.huber_c must be >= 0; got {config.huber_c!r}')
  _fewstep.check_config(config)


def build_model(config, info, teacher_config=None) -> cm.ConsistencyModel:
  """The `ConsistencyModel` of `config` for dataset `info` (checked); with a distillation
  teacher's config, the teacher's U-Net."""
  check_config(config, info)
  net = _unet_settings.build_unet(teacher_config or config, info)
  return cm.ConsistencyModel(
    net=net, sigma_min=float(config.sigma_min), sigma_data=float(config.sigma_data)
  )


def prepare(config, splits):
  """Reads the distillation teacher (`config.teacher_workdir`), if any."""
  if not config.teacher_workdir:
    return config, splits, {}
  teacher_config = _fewstep.teacher_config(
    config, model='edm', needed_by='consistency distillation'
  )
  if float(teacher_config.sigma_data) != float(config.sigma_data):
    raise ValueError(
      f"config.sigma_data={config.sigma_data} differs from the teacher's "
      f'({teacher_config.sigma_data}): the student starts from its parameters'
    )
  teacher = edm_family.build_model(teacher_config, splits.info)
  _, params = _fewstep.teacher_params(teacher, config, splits.info)
  return config, splits, {'teacher_config': teacher_config, 'teacher_params': params}


def make_family(config, info, *, teacher_config=None, teacher_params=None) -> Family:
  """Pure functions of the consistency model for the generic trainer: consistency training,
  or distillation from the EDM teacher `prepare` read (`teacher_config`, `teacher_params`)."""
  distil = teacher_config is not None
  model = build_model(config, info, teacher_config)
  levels, num_dims, shape = info.num_levels, info.num_dims, tuple(info.shape)
  s0, s1 = int(config.ct_initial_scales), int(config.ct_final_scales)
  total = int(config.num_train_steps)
  sigma_min, sigma_max, rho = float(config.sigma_min), float(config.sigma_max), float(config.rho)
  huber_c = float(config.huber_c) or None
  sample_rho = float(config.sample_rho) or rho

  if distil:
    teacher = edm_family.build_model(teacher_config, info)
    denoise = lambda x, sigma: teacher.apply(teacher_params, x, sigma)
    cd_scales = int(config.cd_scales)

  @jax.jit
  def init(key, batch):
    if distil:  # the EDM's and the student's parameters have one structure: {'net': ...}
      return jax.tree.map(jnp.array, teacher_params)
    x = dm.levels_to_unit(jnp.asarray(batch['image']), levels)
    rngs = {'params': key, 'dropout': jax.random.fold_in(key, 1)}
    return model.init(rngs, x, jnp.ones((x.shape[0],)))

  def loss(params, batch, key, *, train, step=None):
    common = dict(
      num_levels=levels,
      sigma_max=sigma_max,
      rho=rho,
      p_mean=float(config.ct_p_mean),
      p_std=float(config.ct_p_std),
      huber_c=huber_c,
      train=train,
    )
    images = jnp.asarray(batch['image'])
    if distil:
      out = cm.cd_terms(model, params, denoise, images, key, num_scales=cd_scales, **common)
      n = jnp.asarray(cd_scales)
    else:  # validation (no step): the final grid
      n = cm.discretization_steps(total if step is None else step, total_steps=total, s0=s0, s1=s1)
      out = cm.ct_terms(model, params, images, key, num_scales=n, max_scales=s1 + 1, **common)
    value = jnp.mean(out['loss'])
    return value, {'ct_loss_per_dim': value / num_dims, 'num_scales': n.astype(jnp.float32)}

  @functools.partial(jax.jit, static_argnums=(2, 3))
  def draw(params, key, num, steps):
    f = lambda x, sigma: model.apply(params, x, sigma)
    sigmas = cm.step_sigmas(steps, sigma_min=sigma_min, sigma_max=sigma_max, rho=sample_rho)
    x = cm.multistep_sample(f, key, (num,) + shape, sigmas, sigma_min=sigma_min)
    return dm.unit_to_levels(x, levels).astype(jnp.uint8)

  sample_with = _fewstep.batched(draw, config)

  def sample(params, key, num):
    return sample_with(params, key, num, int(config.sample_steps))

  def evaluate(params, splits, key, cfg, *, workdir=None):
    cache_dir = sample_metrics.cache_dir(workdir)
    return _fewstep.fid_by_steps(sample_with, params, splits, key, cfg, cache_dir=cache_dir)

  return Family(
    name=config.model,
    init=init,
    loss=loss,
    evaluate=evaluate,
    sample=sample,
    validation_metric=None,
    loss_takes_step=True,
    resume_may_change=_fewstep.EVAL_FIELDS | {'sample_rho'},
    evaluate_takes_workdir=True,
  )
