"""The EDM family (Karras et al. 2022): a preconditioned denoiser, the sampler suite, the
probability-flow likelihood.

`config.model = 'edm'`: `gm_jax.models.edm.EDM`, the U-Net of the diffusion family as
`D(x; sigma) = c_skip x + c_out F(c_in x, c_noise)`, trained with `losses.edm_loss` at
log-normal noise levels (`p_mean`, `p_std`) on uniformly dequantised images. It samples
with every sampler of `gm_jax.sampling.SAMPLERS` (`config.sampler`, default Heun, the
paper's deterministic sampler) on `karras_sigmas(sample_steps, sigma_min, sigma_max, rho)`.

Evaluation (`eval.json`): the dequantisation bound in bits/dim of the discrete data through
the probability-flow ODE, exactly as flow matching reports it (`families/_diffusion_eval.py`'s
`flow_likelihood`): the denoiser is written as the velocity of the rectified-flow path
`x_t = t x_data + (1 - t) n` (`sigma = (1 - t) / t`), whose prior at `t = 0` is N(0, I)
exactly; `sample_metrics` of the default sampler (`fid`, floor, class coverage, KID,
precision/recall; `config.fid_network`); `fid_by_sampler` / `nfe_by_sampler` of the default
sampler and each of `config.fid_samplers`; samples/s of `config.timing_samplers`;
`trajectory.png` beside `samples.png`. EMA weights are the trainer's (`config.ema_decay`).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from gm_jax import parallel
from gm_jax import sampling
from gm_jax.evaluate import sample_metrics
from gm_jax.families import _diffusion_eval
from gm_jax.families import _sample_quality
from gm_jax.families import _unet_settings
from gm_jax.models import diffusion as dm
from gm_jax.models import edm as edm_lib
from gm_jax.train.family import Family

MODELS = ('edm',)

DEFAULTS = {
  **_unet_settings.DEFAULTS,
  **_unet_settings.CONDITIONING_DEFAULTS,
  # EDM (Karras et al. 2022, Table 1)
  'sigma_data': edm_lib.SIGMA_DATA,
  'p_mean': edm_lib.P_MEAN,
  'p_std': edm_lib.P_STD,
  'sigma_min': edm_lib.SIGMA_MIN,
  'sigma_max': edm_lib.SIGMA_MAX,
  'rho': 7.0,
  's_churn': 0.0,
  # validation: draws of the loss per image
  'val_samples': 4,
  # sampling as the diffusion family's (families/_sample_quality.py), but Heun with 18
  # steps = 35 network evaluations (the paper's CIFAR-10 setting)
  **_sample_quality.DEFAULTS,
  'sampler': 'heun',
  'sample_steps': 18,
  'fid_samplers': ('dpmpp_2m:10',),
  'timing_samplers': (),
  # likelihood through the probability-flow ODE
  **_diffusion_eval.LIKELIHOOD_DEFAULTS,
}

DEFAULTS_DOC = {
  # the settings EDM shares with the diffusion family mean the same there
  **_unet_settings.DEFAULTS_DOC,
  **_unet_settings.CONDITIONING_DOC,
  'sigma_data': 'standard deviation of the data in [-1, 1] (preconditioning, loss weight)',
  'p_mean': 'mean of ln(sigma) in training (log-normal noise levels)',
  'p_std': 'standard deviation of ln(sigma) in training',
  'sigma_min': 'smallest positive noise level of the sampling schedule',
  'sigma_max': 'largest noise level of the sampling schedule (the start)',
  'rho': 'exponent of the Karras schedule',
  's_churn': "Heun's stochastic churn (0: deterministic, Algorithm 1)",
  'val_samples': 'draws of the loss per validation image',
  **_sample_quality.DEFAULTS_DOC,
  'sampler': 'default sampler of samples.png and the FID, one of sampling.SAMPLERS',
  **_diffusion_eval.LIKELIHOOD_DOC,
}

_EVAL_FIELDS = frozenset(
  {'val_samples', 'guidance_scale', 'sigma_min', 'sigma_max', 'rho', 's_churn'}
  | _sample_quality.EVAL_FIELDS
  | set(_diffusion_eval.LIKELIHOOD_DEFAULTS)
)


def check_config(config, info) -> None:
  """Validates the EDM fields against dataset `info`; errors name the field."""
  if config.model not in MODELS:
    raise ValueError(f'config.model must be one of {MODELS}; got {config.model!r}')
  if info.kind != 'image':
    raise ValueError(f'config.dataset={info.name!r} is {info.kind} data; edm needs images')
  _sample_quality.check_sampler_fields(config)
  _unet_settings.check_config(config)
  _unet_settings.check_positive_ints(config, ('val_samples',))
  _diffusion_eval.check_likelihood(config)
  _unet_settings.check_conditioning(config, info)
  for name in ('sigma_data', 'rho'):
    if not config[name] > 0:
      raise ValueError(f'config.{name} must be > 0; got {config[name]!r}')
  if not config.p_std >= 0:
    raise ValueError(f'config.p_std must be >= 0; got {config.p_std!r}')
  if not 0 < config.sigma_min < config.sigma_max < float('inf'):
    raise ValueError(
      f'config.sigma_min ({config.sigma_min!r}) and config.sigma_max ({config.sigma_max!r}) '
      'must satisfy 0 < sigma_min < sigma_max < inf'
    )
  if not config.s_churn >= 0:
    raise ValueError(f'config.s_churn must be >= 0; got {config.s_churn!r}')


def build_model(config, info) -> edm_lib.EDM:
  """The `EDM` of `config` for dataset `info` (checked)."""
  check_config(config, info)
  net = _unet_settings.build_unet(
    config, info, num_classes=info.num_classes if config.conditional else 0
  )
  return edm_lib.EDM(net=net, sigma_data=float(config.sigma_data))


def flow_velocity(model: edm_lib.EDM, params, *, sigma_min: float, sigma_max: float):
  """The denoiser as the velocity of the rectified-flow path, for the likelihood.

  With `x_t = t x` and `sigma = (1 - t) / t` (noise at `t = 0`, data at `t = 1`) the
  probability-flow ODE of `D` is `dx_t/dt = (D - x_t) / (1 - t)`; with the preconditioning
  written in `t` (`r = sqrt((1 - t)^2 + sigma_data^2 t^2)`) it is
  `((sigma_data^2 t - (1 - t)) / r^2) x_t + (sigma_data / r) F(x_t / r, c_noise)`, finite on
  all of `[0, 1]`; `c_noise = ln(sigma) / 4` with `sigma` clipped to `[sigma_min,
  sigma_max]` (the levels the network was trained and samples at).

  Returns:
    `(x_t [B, ...], t scalar, labels [B] or None) -> velocity [B, ...]`.
  """
  sd = model.sigma_data
  net_params = {'params': params['params']['net']}
  log_lo, log_hi = float(np.log(sigma_min)), float(np.log(sigma_max))

  def velocity(x_t, t, labels):
    t = jnp.asarray(t, jnp.float32)
    r2 = jnp.square(1.0 - t) + sd**2 * jnp.square(t)
    r = jnp.sqrt(r2)
    log_sigma = jnp.log1p(-jnp.minimum(t, 1.0 - 1e-7)) - jnp.log(jnp.maximum(t, 1e-30))
    c_noise = 0.25 * jnp.clip(log_sigma, log_lo, log_hi)
    c_noise = jnp.full((x_t.shape[0],), c_noise, jnp.float32)
    f = model.net.apply(net_params, x_t / r, c_noise, labels)
    return (sd**2 * t - (1.0 - t)) / r2 * x_t + (sd / r) * f.astype(x_t.dtype)

  return velocity


def make_family(config, info) -> Family:
  """Pure functions of the EDM model for the generic trainer."""
  model = build_model(config, info)
  levels, num_dims, shape = info.num_levels, info.num_dims, tuple(info.shape)
  conditional = bool(config.conditional)
  null_label = info.num_classes if conditional else 0
  drop_rate = float(config.cond_drop_rate) if conditional else 0.0
  val_samples = int(config.val_samples)
  p_mean, p_std = float(config.p_mean), float(config.p_std)
  guidance = float(config.guidance_scale)

  @jax.jit
  def init(key, batch):
    x = dm.levels_to_unit(jnp.asarray(batch['image']), levels)
    labels = dm.labels_or_none(batch, conditional)
    rngs = {'params': key, 'dropout': jax.random.fold_in(key, 1)}
    return model.init(rngs, x, jnp.ones((x.shape[0],)), labels)

  def loss(params, batch, key, *, train):
    images = jnp.asarray(batch['image'])
    labels = dm.labels_or_none(batch, conditional)
    if not train and val_samples > 1:  # several draws per image: a steadier selection
      images, labels = _diffusion_eval.repeat((images, labels), val_samples)
    out = edm_lib.edm_terms(
      model,
      params,
      images,
      labels,
      key,
      num_levels=levels,
      train=train,
      p_mean=p_mean,
      p_std=p_std,
      cond_drop_rate=drop_rate if train else 0.0,
    )
    value = jnp.mean(out['loss'])
    return value, {'edm_loss_per_dim': value / num_dims}

  # -- sampling ------------------------------------------------------------------------
  def denoiser(params, labels, scale):
    if not conditional:
      return edm_lib.edm_denoiser(model, params)
    raw = lambda x, sigma, lab: model.apply(params, x, sigma, lab)
    return sampling.guided_denoiser(raw, labels, null_label=null_label, scale=scale)

  def sigmas_for(steps):
    return sampling.karras_sigmas(
      steps,
      sigma_min=float(config.sigma_min),
      sigma_max=float(config.sigma_max),
      rho=float(config.rho),
    )

  options = {'heun': {'s_churn': float(config.s_churn)}}

  @functools.partial(jax.jit, static_argnums=(2, 3, 4, 5))
  def draw(params, key, num, method, steps, trajectory, labels, scale):
    init_key, step_key = jax.random.split(key)
    sigmas = sigmas_for(steps)
    x = jax.random.normal(init_key, (num,) + shape, jnp.float32) * sigmas[0]
    out = sampling.get_sampler(method)(
      denoiser(params, labels, scale),
      x,
      sigmas,
      key=step_key,
      return_trajectory=trajectory,
      **options.get(method, {}),
    )
    if not trajectory:
      return dm.unit_to_levels(out, levels).astype(jnp.uint8)
    scale_of = jax.lax.rsqrt(1.0 + jnp.square(sigmas)).reshape((-1,) + (1,) * (len(shape) + 1))
    return dm.unit_to_levels(out[1] * scale_of, levels).astype(jnp.uint8)

  def labels_for(num, offset=0):
    return (
      jnp.arange(offset, offset + num, dtype=jnp.int32) % info.num_classes
      if conditional
      else jnp.zeros((num,), jnp.int32)
    )

  def sample_with(params, key, num, method, steps):
    """uint8 `[num, H, W, C]` from `method` with `steps`, in batches of `sample_batch_size`."""
    size = int(config.sample_batch_size)
    out = []
    for i, start in enumerate(range(0, num, size)):
      n = min(size, num - start)
      out.append(
        np.asarray(
          draw(
            params,
            jax.random.fold_in(key, i),
            n,
            method,
            steps,
            False,
            labels_for(n, start),
            guidance,
          )
        )
      )
    return np.concatenate(out)

  default_sampler = (str(config.sampler), int(config.sample_steps))

  def sample(params, key, num):
    return sample_with(params, key, num, *default_sampler)

  def pictures(params, splits, key, workdir):
    del splits
    num = int(config.trajectory_samples)
    if not num:
      return {}
    method, steps = default_sampler
    states = draw(params, key, num, method, steps, True, labels_for(num), guidance)
    return _sample_quality.save_trajectory_picture(states, workdir, levels, method, steps)

  # -- evaluation ----------------------------------------------------------------------
  def velocity_of(params):
    return flow_velocity(
      model, params, sigma_min=float(config.sigma_min), sigma_max=float(config.sigma_max)
    )

  def evaluate(params, splits, key, cfg, *, workdir=None):
    like_key, sample_key = jax.random.split(key)
    trace = 'exact' if num_dims <= int(cfg.exact_trace_max_dims) else 'hutchinson'
    results = _diffusion_eval.flow_likelihood(
      velocity_of,
      params,
      splits.test,
      like_key,
      num_levels=levels,
      conditional=conditional,
      trace=trace,
      method=cfg.likelihood_solver,
      num_steps=int(cfg.likelihood_steps),
      num_draws=int(cfg.eval_dequant_samples),
      batch_size=int(cfg.likelihood_batch_size),
      mesh=parallel.eval_mesh(cfg.parallel),
    )
    if conditional:
      results['likelihood'] = 'p(x|y)'
      results['guidance_scale'] = guidance
    results['sigma_schedule'] = (
      f'karras(sigma_min={cfg.sigma_min}, sigma_max={cfg.sigma_max}, rho={cfg.rho})'
    )
    nfe_of = lambda method, steps: sampling.nfe(method, steps)
    results.update(
      _sample_quality.sample_quality(
        sample_with,
        params,
        splits,
        sample_key,
        cfg,
        default_sampler,
        nfe_of,
        cache_dir=sample_metrics.cache_dir(workdir),
      )
    )
    return results

  return Family(
    name=config.model,
    init=init,
    loss=loss,
    evaluate=evaluate,
    sample=sample,
    pictures=pictures,
    validation_metric='edm_loss_per_dim',
    resume_may_change=_EVAL_FIELDS,
    evaluate_takes_workdir=True,
  )
