"""The diffusion (VDM) and flow-matching family: loss, likelihood, samplers, sample quality.

`config.model = 'diffusion'`: a variational diffusion model (Kingma et al. 2021). The
loss is the continuous-time bound on `-log P(k)` of the discrete images in nats
(`models.diffusion.vdm_terms`: discrete decoder at t=0, prior KL at t=1, diffusion term
weighted by `-d lambda / dt`), times drawn low-discrepancy over each loss group of
`config.loss_group_size` examples (VDM appendix I.1); evaluation averages
`eval_bound_samples` draws per test image (`bound: 'elbo'`, bits/dim of the discrete
data).

`config.model = 'flow_matching'`: conditional flow matching on the optimal-transport
path (Lipman et al. 2023) to uniformly dequantised images; evaluation integrates the
probability-flow ODE with the instantaneous change of variables
(`sampling.ode_log_likelihood`): the exact trace where the images have at most
`exact_trace_max_dims` dimensions (the 64 of the digits), Hutchinson's estimator
above; `bound` says which. The dequantisation bound is in bits/dim of the discrete
data, as for the flows.

Both: optional class conditioning with classifier-free guidance (`conditional`,
`cond_drop_rate`, `guidance_scale`); `samples.png` and `fid` / `fid_floor` /
`class_coverage` (the digits classifier's features, `gm_jax.evaluate.fid`) from
`config.sampler` with `config.sample_steps`; samples/s and FID of every sampler in
`config.timing_samplers` (`'method:steps'`, e.g. DDPM-1000, DDIM-50, Heun-25).
All randomness comes from the key the loss receives, so the data-parallel modes agree.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

from gm_jax import losses
from gm_jax import parallel
from gm_jax import sampling
from gm_jax.evaluate import sample_metrics
from gm_jax.families import _diffusion_eval
from gm_jax.families import _sample_quality
from gm_jax.families import _unet_settings

# The sampling names other modules import from here (`gm_jax.families._sample_quality`).
from gm_jax.families._sample_quality import check_sampler_fields
from gm_jax.families._sample_quality import num_evaluations
from gm_jax.families._sample_quality import parse_sampler
from gm_jax.families._sample_quality import sample_quality
from gm_jax.families._sample_quality import sampler_names
from gm_jax.families._sample_quality import save_trajectory_picture
from gm_jax.families._sample_quality import suite_draw
from gm_jax.families._sample_quality import SUITE_ONLY
from gm_jax.models import diffusion as dm
from gm_jax.models import edm as edm_lib
from gm_jax.train import defaults
from gm_jax.train.family import Family

__all__ = (
  'DEFAULTS',
  'DEFAULTS_DOC',
  'MODELS',
  'SUITE_ONLY',
  'build_model',
  'check_config',
  'check_sampler_fields',
  'make_family',
  'num_evaluations',
  'parse_sampler',
  'sample_quality',
  'sampler_names',
  'save_trajectory_picture',
  'suite_draw',
)

MODELS = ('diffusion', 'flow_matching')

# The family's own settings (`defaults.complete`); configs/diffusion.py and
# configs/flow_matching.py set every one of them.
DEFAULTS = {
  **_unet_settings.DEFAULTS,
  'fourier_exponents': (),
  **_unet_settings.CONDITIONING_DEFAULTS,
  # validation: draws of the objective per image (common random numbers across checks)
  'val_samples': 4,
  # sampling, the FID and the timed samplers (families/_sample_quality.py)
  **_sample_quality.DEFAULTS,
  # VDM
  'noise_schedule': 'cosine',
  'log_snr_min': -6.0,
  'log_snr_max': 6.0,
  'prediction_type': 'eps',
  'eval_bound_samples': 16,
  # flow matching
  'sigma_min': 0.0,
  **_diffusion_eval.LIKELIHOOD_DEFAULTS,
}

DEFAULTS_DOC = {
  **_unet_settings.DEFAULTS_DOC,
  'fourier_exponents': 'Fourier-feature exponents of the input (VDM; () for none)',
  **_unet_settings.CONDITIONING_DOC,
  'val_samples': 'draws of the objective per validation image',
  **_sample_quality.DEFAULTS_DOC,
  'noise_schedule': 'VDM: log-SNR schedule, one of models.diffusion.SCHEDULES',
  'log_snr_min': 'VDM: log-SNR at t = 1',
  'log_snr_max': 'VDM: log-SNR at t = 0',
  'prediction_type': 'VDM: what the network predicts, one of models.diffusion.PREDICTIONS',
  'eval_bound_samples': 'VDM: draws of the variational bound per test image',
  'sigma_min': 'flow matching: noise scale at t = 1, in [0, 1)',
  **{k: f'flow matching: {v}' for k, v in _diffusion_eval.LIKELIHOOD_DOC.items()},
}

# Evaluation-only settings: a resumed run may change them.
_EVAL_FIELDS = frozenset(
  {'val_samples', 'guidance_scale', 'eval_bound_samples'}
  | _sample_quality.EVAL_FIELDS
  | set(_diffusion_eval.LIKELIHOOD_DEFAULTS)
)


def check_config(config, info) -> None:
  """Validates the family's fields against dataset `info`; errors name the field."""
  if config.model not in MODELS:
    raise ValueError(f'config.model must be one of {MODELS}; got {config.model!r}')
  if info.kind != 'image':
    raise ValueError(
      f'config.dataset={info.name!r} is {info.kind} data; {config.model} needs images'
    )
  check_sampler_fields(config)
  _unet_settings.check_config(config)
  _unet_settings.check_positive_ints(config, ('val_samples', 'eval_bound_samples'))
  _unet_settings.check_conditioning(config, info)
  if config.model == 'diffusion':
    defaults.check_one_of(config, 'noise_schedule', dm.SCHEDULES)
    defaults.check_one_of(config, 'prediction_type', dm.PREDICTIONS)
    if not config.log_snr_max > config.log_snr_min:
      raise ValueError(
        f'config.log_snr_max ({config.log_snr_max}) must exceed '
        f'config.log_snr_min ({config.log_snr_min})'
      )
  else:
    _diffusion_eval.check_likelihood(config)
    if not 0.0 <= config.sigma_min < 1.0:
      raise ValueError(f'config.sigma_min must be in [0, 1); got {config.sigma_min!r}')


def build_model(config, info):
  """The `VDM` or `FlowMatching` of `config` for dataset `info` (checked)."""
  check_config(config, info)
  net = _unet_settings.build_unet(
    config,
    info,
    num_classes=info.num_classes if config.conditional else 0,
    fourier_exponents=config.fourier_exponents,
  )
  if config.model == 'diffusion':
    schedule = dm.LogSNRSchedule(
      kind=config.noise_schedule,
      log_snr_min=float(config.log_snr_min),
      log_snr_max=float(config.log_snr_max),
    )
    return dm.VDM(net=net, schedule=schedule, prediction_type=config.prediction_type)
  return dm.FlowMatching(net=net, sigma_min=float(config.sigma_min))


def make_family(config, info) -> Family:
  """Pure functions of the diffusion or flow-matching model for the generic trainer."""
  model = build_model(config, info)
  is_vdm = config.model == 'diffusion'
  levels, num_dims, shape = info.num_levels, info.num_dims, tuple(info.shape)
  conditional = bool(config.conditional)
  null_label = info.num_classes if conditional else 0
  drop_rate = float(config.cond_drop_rate) if conditional else 0.0
  val_samples = int(config.val_samples)
  to_bpd = lambda nats: losses.bits_per_dim(nats, num_dims=num_dims)

  def terms(params, images, labels, key, *, train, times=None):
    fn = dm.vdm_terms if is_vdm else dm.flow_matching_terms
    return fn(
      model,
      params,
      images,
      labels,
      key,
      num_levels=levels,
      train=train,
      times=times,
      cond_drop_rate=drop_rate if train else 0.0,
    )

  @jax.jit
  def init(key, batch):
    images = jnp.asarray(batch['image'])
    x = dm.levels_to_unit(images, levels)
    labels = dm.labels_or_none(batch, conditional)
    rngs = {'params': key, 'dropout': jax.random.fold_in(key, 1)}
    if is_vdm:
      return model.init(rngs, x, labels, method=model.init_all)
    return model.init(rngs, x, jnp.zeros((x.shape[0],)), labels)

  def loss(params, batch, key, *, train):
    images = jnp.asarray(batch['image'])
    labels = dm.labels_or_none(batch, conditional)
    if not train and val_samples > 1:  # several draws per image: a steadier selection
      images, labels = _diffusion_eval.repeat((images, labels), val_samples)
    out = terms(params, images, labels, key, train=train)
    if is_vdm:
      metrics = {
        'bpd': jnp.mean(to_bpd(out['bound'])),
        'recon_bpd': jnp.mean(to_bpd(out['recon'])),
        'prior_bpd': jnp.mean(to_bpd(out['prior'])),
        'diffusion_bpd': jnp.mean(to_bpd(out['diffusion'])),
      }
      return jnp.mean(out['bound']), metrics
    value = jnp.mean(out['loss'])
    return value, {'fm_loss_per_dim': value / num_dims}

  # -- sampling ------------------------------------------------------------------------
  guidance = float(config.guidance_scale)

  def model_fn(params):
    """`(z, c) -> eps_hat` (VDM, `c` the log-SNR) or velocity (flow matching, `c` = t)."""

    def raw(z, c, labels):
      c = jnp.full((z.shape[0],), c, jnp.float32)
      out = model.apply(params, z, c, labels)
      if is_vdm:
        return dm.eps_from_prediction(out, z, c, model.prediction_type)
      return out

    return raw

  def conditioned(params, labels, scale):
    raw = model_fn(params)
    if not conditional:
      return lambda z, c: raw(z, c, None)
    return sampling.classifier_free_guidance(raw, labels, null_label=null_label, scale=scale)

  def sigma_range(params) -> tuple[float, float]:
    """`(sigma_min, sigma_max)` of the suite's Karras levels: VDM's log-SNR end points
    (`sigma = exp(-lambda / 2)`), flow matching's `t` near 1 and `1 / 81`."""
    if is_vdm:
      lam = lambda t: float(model.apply(params, jnp.asarray(t, jnp.float32), method=model.log_snr))
      return math.exp(-0.5 * lam(0.0)), math.exp(-0.5 * lam(1.0))
    return float(config.sigma_min) + edm_lib.SIGMA_MIN, edm_lib.SIGMA_MAX

  def denoiser(params, labels, scale):
    fn = conditioned(params, labels, scale)
    if is_vdm:
      return sampling.vp_denoiser(fn)
    return sampling.flow_denoiser(fn, sigma_min=float(config.sigma_min))

  @functools.partial(jax.jit, static_argnums=(2, 3, 4, 5))
  def draw(params, key, num, method, steps, trajectory, labels, scale, sigmas):
    if method in SUITE_ONLY or trajectory:
      return suite_draw(
        denoiser(params, labels, scale),
        key,
        (num,) + shape,
        method,
        sigmas,
        levels=levels,
        trajectory=trajectory,
      )
    fn = conditioned(params, labels, scale)
    if is_vdm:
      log_snr = lambda t: model.apply(params, t, method=model.log_snr)
      x = sampling.diffusion_sample(
        fn, log_snr, key, (num,) + shape, method=method, num_steps=steps
      )
    else:
      x = sampling.flow_sample(fn, key, (num,) + shape, method=method, num_steps=steps)
    return dm.unit_to_levels(x, levels).astype(jnp.uint8)

  def labels_for(num, offset=0):
    return (
      jnp.arange(offset, offset + num, dtype=jnp.int32) % info.num_classes
      if conditional
      else jnp.zeros((num,), jnp.int32)
    )

  def schedule_for(params, method, steps):
    if method not in SUITE_ONLY:
      return None
    lo, hi = sigma_range(params)
    return sampling.karras_sigmas(steps, sigma_min=lo, sigma_max=hi)

  def sample_with(params, key, num, method, steps):
    """uint8 `[num, H, W, C]` from `method` with `steps`, in batches of `sample_batch_size`."""
    size = int(config.sample_batch_size)
    sigmas = schedule_for(params, method, steps)
    out = []
    for i, start in enumerate(range(0, num, size)):
      n = min(size, num - start)
      batch_key = jax.random.fold_in(key, i)
      labels = labels_for(n, start)
      out.append(
        np.asarray(draw(params, batch_key, n, method, steps, False, labels, guidance, sigmas))
      )
    return np.concatenate(out)

  default_sampler = (str(config.sampler), int(config.sample_steps))

  def sample(params, key, num):
    return sample_with(params, key, num, *default_sampler)

  def pictures(params, splits, key, workdir):
    del splits
    method, steps = default_sampler
    method = _sample_quality.TRAJECTORY_ANALOGUE.get(method, method)
    num = int(config.trajectory_samples)
    if not num:
      return {}
    lo, hi = sigma_range(params)
    sigmas = sampling.karras_sigmas(steps, sigma_min=lo, sigma_max=hi)
    states = draw(params, key, num, method, steps, True, labels_for(num), guidance, sigmas)
    return save_trajectory_picture(states, workdir, levels, method, steps)

  # -- evaluation ----------------------------------------------------------------------

  def evaluate(params, splits, key, cfg, *, workdir=None):
    like_key, sample_key = jax.random.split(key)
    mesh = parallel.eval_mesh(cfg.parallel)
    if is_vdm:
      results = _diffusion_eval.vdm_bound(
        model,
        params,
        splits.test,
        like_key,
        num_levels=levels,
        conditional=conditional,
        num_samples=int(cfg.eval_bound_samples),
        batch_size=int(defaults.get(cfg, 'eval_batch_size')),
        mesh=mesh,
      )
    else:
      trace = 'exact' if num_dims <= int(cfg.exact_trace_max_dims) else 'hutchinson'
      results = _diffusion_eval.flow_likelihood(
        model_fn,
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
        mesh=mesh,
      )
    if conditional:
      results['likelihood'] = 'p(x|y)'
      results['guidance_scale'] = guidance
    nfe_of = lambda method, steps: num_evaluations(config.model, method, steps)
    results.update(
      sample_quality(
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
    validation_metric='bpd' if is_vdm else 'fm_loss_per_dim',
    resume_may_change=_EVAL_FIELDS,
    evaluate_takes_workdir=True,
  )
