"""Consistency models by improved consistency training (iCT; Song & Dhariwal 2023).

`config.model = 'consistency'`: `f(x, sigma) = c_skip x + c_out F(c_in x, c_noise)` with
the U-Net of the diffusion family as `F` and the boundary condition `f(x, sigma_min) = x`
(`gm_jax.models.consistency`). Trained without a teacher: the pseudo-Huber distance
between the network at neighbouring levels of a Karras grid whose size doubles from
`ct_initial_scales` to `ct_final_scales` over training, the smaller level's output under
`stop_gradient`, level pairs drawn from a discretised log-normal, weighted by
`1 / (sigma_{i+1} - sigma_i)` (`gm_jax.losses.consistency_loss`). Consistency training
rather than distillation from an EDM run: it needs no other workdir, so the config is
self-contained and its result does not depend on another run's.

The loss of a run depends on the step (the grid grows), so no validation selection: the
last parameters are evaluated. Samples by multistep consistency sampling (Song et al.
2023, Algorithm 1); eval.json has `fid_by_steps` for `fid_steps` (1, 2, 4 network
evaluations) and, at `sample_steps`, `gm_jax.evaluate.sample_metrics` (`fid`, KID,
precision/recall; `config.fid_network` 'classifier' (`fid_floor`, `class_coverage`) or
'inception', as every sampling family).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from gm_jax.evaluate import sample_metrics
from gm_jax.families import _fewstep
from gm_jax.families import _unet_settings
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
  **_fewstep.DEFAULTS_DOC,
}


def check_config(config, info) -> None:
  """Validates the family's fields against dataset `info`; errors name the field."""
  if config.model not in MODELS:
    raise ValueError(f'config.model must be one of {MODELS}; got {config.model!r}')
  if info.kind != 'image':
    raise ValueError(f'config.dataset={info.name!r} is {info.kind} data; consistency needs images')
  _unet_settings.check_config(config)
  _unet_settings.check_positive_ints(config, ('ct_initial_scales', 'ct_final_scales'))
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
  if not config.huber_c >= 0:
    raise ValueError(f'config.huber_c must be >= 0; got {config.huber_c!r}')
  _fewstep.check_config(config)


def build_model(config, info) -> cm.ConsistencyModel:
  """The `ConsistencyModel` of `config` for dataset `info` (checked)."""
  check_config(config, info)
  net = _unet_settings.build_unet(config, info)
  return cm.ConsistencyModel(
    net=net, sigma_min=float(config.sigma_min), sigma_data=float(config.sigma_data)
  )


def make_family(config, info) -> Family:
  """Pure functions of the consistency model for the generic trainer."""
  model = build_model(config, info)
  levels, num_dims, shape = info.num_levels, info.num_dims, tuple(info.shape)
  s0, s1 = int(config.ct_initial_scales), int(config.ct_final_scales)
  total = int(config.num_train_steps)
  sigma_min, sigma_max, rho = float(config.sigma_min), float(config.sigma_max), float(config.rho)
  huber_c = float(config.huber_c) or None

  @jax.jit
  def init(key, batch):
    x = dm.levels_to_unit(jnp.asarray(batch['image']), levels)
    rngs = {'params': key, 'dropout': jax.random.fold_in(key, 1)}
    return model.init(rngs, x, jnp.ones((x.shape[0],)))

  def loss(params, batch, key, *, train, step=None):
    # validation (no step): the final grid
    n = cm.discretization_steps(total if step is None else step, total_steps=total, s0=s0, s1=s1)
    out = cm.ct_terms(
      model,
      params,
      jnp.asarray(batch['image']),
      key,
      num_levels=levels,
      num_scales=n,
      max_scales=s1 + 1,
      sigma_max=sigma_max,
      rho=rho,
      p_mean=float(config.ct_p_mean),
      p_std=float(config.ct_p_std),
      huber_c=huber_c,
      train=train,
    )
    value = jnp.mean(out['loss'])
    return value, {'ct_loss_per_dim': value / num_dims, 'num_scales': n.astype(jnp.float32)}

  @functools.partial(jax.jit, static_argnums=(2, 3))
  def draw(params, key, num, steps):
    f = lambda x, sigma: model.apply(params, x, sigma)
    sigmas = cm.step_sigmas(steps, sigma_min=sigma_min, sigma_max=sigma_max, rho=rho)
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
    resume_may_change=_fewstep.EVAL_FIELDS,
    evaluate_takes_workdir=True,
  )
