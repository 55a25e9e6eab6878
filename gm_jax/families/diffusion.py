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
import time

import jax
import jax.numpy as jnp
import numpy as np

from gm_jax import losses
from gm_jax import parallel
from gm_jax import sampling
from gm_jax.models import diffusion as dm
from gm_jax.models import edm as edm_lib
from gm_jax.train import defaults
from gm_jax.train.family import Family

MODELS = ('diffusion', 'flow_matching')

# The family's own settings (`defaults.complete`); configs/diffusion.py and
# configs/flow_matching.py set every one of them.
DEFAULTS = {
  # the U-Net (models.diffusion.UNet)
  'channels': 64,
  'channel_mults': (1, 2),
  'num_res_blocks': 1,
  'attention': False,
  'dropout_rate': 0.1,
  'fourier_exponents': (),
  # class conditioning and classifier-free guidance (scale 0: unconditional, 1: conditional)
  'conditional': False,
  'cond_drop_rate': 0.1,
  'guidance_scale': 1.0,
  # validation: draws of the objective per image (common random numbers across checks)
  'val_samples': 4,
  # sampling: the default sampler ('method:steps' strings for the timed ones)
  'sampler': 'ddim',
  'sample_steps': 50,
  'timing_samplers': ('ddpm:1000', 'ddim:50', 'heun:25'),
  'fid_num_samples': 0,  # 0: as many as training images (the floor's sample size)
  # more samplers scored on fid_num_samples samples each: eval.json fid_by_sampler
  'fid_samplers': (),
  # the feature network of the FID (gm_jax.evaluate.sample_metrics)
  'fid_network': 'classifier',
  'inception_weights': '',
  # trajectory.png: this many samples at each step of the default sampler (0: none)
  'trajectory_samples': 8,
  # FID of each timed sampler too, on this many samples (0: only their samples/s; a
  # DDPM-1000 draw of the 1,293 digits costs 1.3M network evaluations)
  'timing_fid_samples': 0,
  'sample_batch_size': 512,
  # VDM
  'noise_schedule': 'cosine',
  'log_snr_min': -6.0,
  'log_snr_max': 6.0,
  'prediction_type': 'eps',
  'eval_bound_samples': 16,
  # flow matching
  'sigma_min': 0.0,
  'likelihood_solver': 'rk4',
  'likelihood_steps': 32,
  'exact_trace_max_dims': 256,
  'eval_dequant_samples': 1,
  'likelihood_batch_size': 40,
}

DEFAULTS_DOC = {
  'channels': 'U-Net base width',
  'channel_mults': 'U-Net width multiplier per resolution',
  'num_res_blocks': 'residual blocks per U-Net resolution',
  'attention': 'self-attention at the lowest resolution',
  'dropout_rate': 'dropout in the residual blocks, in [0, 1)',
  'fourier_exponents': 'Fourier-feature exponents of the input (VDM; () for none)',
  'conditional': 'class-conditional model (with classifier-free guidance)',
  'cond_drop_rate': 'probability of dropping the label in training (guidance)',
  'guidance_scale': 'classifier-free guidance scale (0: unconditional, 1: conditional)',
  'val_samples': 'draws of the objective per validation image',
  'sampler': 'default sampler of samples.png and the FID',
  'sample_steps': 'steps of the default sampler',
  'timing_samplers': "'METHOD:STEPS' samplers timed (and optionally scored) too",
  'fid_num_samples': 'samples of the FID (0: as many as training images)',
  'fid_samplers': "'METHOD:STEPS' samplers also scored on fid_num_samples (fid_by_sampler)",
  'fid_network': "feature network of the FID: 'classifier' | 'inception'",
  'inception_weights': "path of pytorch-fid's weights file (fid_network='inception')",
  'trajectory_samples': 'samples in trajectory.png (0: no picture)',
  'timing_fid_samples': 'FID samples of each timed sampler (0: only samples/s)',
  'sample_batch_size': 'images per sampler call',
  'noise_schedule': 'VDM: log-SNR schedule, one of models.diffusion.SCHEDULES',
  'log_snr_min': 'VDM: log-SNR at t = 1',
  'log_snr_max': 'VDM: log-SNR at t = 0',
  'prediction_type': 'VDM: what the network predicts, one of models.diffusion.PREDICTIONS',
  'eval_bound_samples': 'VDM: draws of the variational bound per test image',
  'sigma_min': 'flow matching: noise scale at t = 1, in [0, 1)',
  'likelihood_solver': 'flow matching: ODE solver of the likelihood',
  'likelihood_steps': 'flow matching: solver steps of the likelihood',
  'exact_trace_max_dims': 'flow matching: exact divergence up to this many dims',
  'eval_dequant_samples': 'flow matching: dequantisation draws per test image',
  'likelihood_batch_size': 'flow matching: test images per likelihood batch',
}

# Evaluation-only settings: a resumed run may change them.
_EVAL_FIELDS = frozenset(
  {
    'val_samples',
    'sampler',
    'sample_steps',
    'timing_samplers',
    'fid_num_samples',
    'fid_samplers',
    'fid_network',
    'inception_weights',
    'trajectory_samples',
    'timing_fid_samples',
    'sample_batch_size',
    'guidance_scale',
    'eval_bound_samples',
    'likelihood_solver',
    'likelihood_steps',
    'exact_trace_max_dims',
    'eval_dequant_samples',
    'likelihood_batch_size',
  }
)


# The suite's samplers (`gm_jax.sampling.SAMPLERS`) that the VDM and flow-matching models
# did not have before it: on the Karras noise levels through `vp_denoiser` / `flow_denoiser`.
# 'euler' and 'heun' keep their meaning (and numbers) of `diffusion_sample` / `flow_sample`.
SUITE_ONLY = ('euler_ancestral', 'dpmpp_2m')
# The suite's sampler drawn for trajectory.png where the default sampler is not the suite's:
# DDIM is Euler on the probability-flow ODE in these coordinates, DDPM its ancestral form.
_TRAJECTORY_ANALOGUE = {'ddim': 'euler', 'ddpm': 'euler_ancestral', 'rk4': 'heun'}


def sampler_names(model: str) -> tuple[str, ...]:
  """The `config.sampler` values of `model` ('diffusion', 'flow_matching' or 'edm')."""
  if model == 'diffusion':
    return tuple(sampling.DIFFUSION_METHODS) + SUITE_ONLY
  if model == 'flow_matching':
    return tuple(sampling.ODE_METHODS) + SUITE_ONLY
  return tuple(sampling.SAMPLERS)


def parse_sampler(spec: str, model: str, field: str = 'timing_samplers') -> tuple[str, int]:
  """`'ddim:50'` -> `('ddim', 50)`; a ValueError names `config.<field>`."""
  methods = sampler_names(model)
  method, _, steps = str(spec).partition(':')
  if method not in methods or not steps.isdigit() or int(steps) <= 0:
    raise ValueError(
      f"config.{field} entries must be 'METHOD:STEPS' with METHOD in "
      f'{methods} for {model} and STEPS >= 1; got {spec!r}'
    )
  return method, int(steps)


def check_sampler_fields(config) -> None:
  """`sampler`, `sample_steps`, `timing_samplers`, `fid_samplers`, `trajectory_samples` and
  the FID network switch (`sample_metrics.check_config`); errors name the field."""
  names = sampler_names(config.model)
  if config.sampler not in names:
    raise ValueError(f'config.sampler must be one of {names}; got {config.sampler!r}')
  steps = config.sample_steps
  if not isinstance(steps, int) or isinstance(steps, bool) or steps < 1:
    raise ValueError(f'config.sample_steps must be an integer >= 1; got {steps!r}')
  for field in ('timing_samplers', 'fid_samplers'):
    for spec in config[field]:
      parse_sampler(spec, config.model, field)
  count = config.trajectory_samples
  if not isinstance(count, int) or isinstance(count, bool) or count < 0:
    raise ValueError(f'config.trajectory_samples must be an integer >= 0; got {count!r}')
  from gm_jax.evaluate import sample_metrics

  sample_metrics.check_config(config)


def num_evaluations(model: str, method: str, steps: int) -> int:
  """Network evaluations per sample of `method` with `steps` steps (classifier-free
  guidance doubles the batch, not this count).

  The suite's samplers: `sampling.nfe`; VDM's own: one per step (Heun two) and the final
  denoising; flow matching's `odeint`: 1, 2, 4 per step (Euler, Heun, RK4)."""
  if model not in MODELS or method in SUITE_ONLY:
    return sampling.nfe(method, steps)
  per_step = {'ddpm': 1, 'ddim': 1, 'euler': 1, 'heun': 2, 'rk4': 4}[method]
  return per_step * steps + (1 if model == 'diffusion' else 0)


def check_config(config, info) -> None:
  """Validates the family's fields against dataset `info`; errors name the field."""
  if config.model not in MODELS:
    raise ValueError(f'config.model must be one of {MODELS}; got {config.model!r}')
  if info.kind != 'image':
    raise ValueError(
      f'config.dataset={info.name!r} is {info.kind} data; {config.model} needs images'
    )
  if not isinstance(config.timing_fid_samples, int) or config.timing_fid_samples < 0:
    raise ValueError(
      f'config.timing_fid_samples must be a non-negative integer; got {config.timing_fid_samples!r}'
    )
  check_sampler_fields(config)
  for name in (
    'channels',
    'num_res_blocks',
    'val_samples',
    'eval_bound_samples',
    'likelihood_steps',
    'eval_dequant_samples',
    'likelihood_batch_size',
    'sample_batch_size',
  ):
    value = config[name]
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
      raise ValueError(f'config.{name} must be a positive integer; got {value!r}')
  if not config.channel_mults or any(
    not isinstance(m, int) or m <= 0 for m in config.channel_mults
  ):
    raise ValueError(
      f'config.channel_mults must be positive integers; got {config.channel_mults!r}'
    )
  if not 0.0 <= config.dropout_rate < 1.0:
    raise ValueError(f'config.dropout_rate must be in [0, 1); got {config.dropout_rate!r}')
  if config.conditional and not info.num_classes:
    raise ValueError(f'config.conditional=True needs labels; {info.name!r} has none')
  if not 0.0 <= config.cond_drop_rate < 1.0:
    raise ValueError(f'config.cond_drop_rate must be in [0, 1); got {config.cond_drop_rate!r}')
  if config.model == 'diffusion':
    defaults.check_one_of(config, 'noise_schedule', dm.SCHEDULES)
    defaults.check_one_of(config, 'prediction_type', dm.PREDICTIONS)
    if not config.log_snr_max > config.log_snr_min:
      raise ValueError(
        f'config.log_snr_max ({config.log_snr_max}) must exceed '
        f'config.log_snr_min ({config.log_snr_min})'
      )
  else:
    defaults.check_one_of(config, 'likelihood_solver', sampling.ODE_METHODS)
    if not 0.0 <= config.sigma_min < 1.0:
      raise ValueError(f'config.sigma_min must be in [0, 1); got {config.sigma_min!r}')


def build_model(config, info):
  """The `VDM` or `FlowMatching` of `config` for dataset `info` (checked)."""
  check_config(config, info)
  net = dm.UNet(
    channels=config.channels,
    channel_mults=tuple(config.channel_mults),
    num_res_blocks=config.num_res_blocks,
    attention=bool(config.attention),
    num_classes=info.num_classes if config.conditional else 0,
    fourier_exponents=tuple(config.fourier_exponents),
    dropout_rate=float(config.dropout_rate),
  )
  dm.check_image_shape(net, info.shape)
  if config.model == 'diffusion':
    schedule = dm.LogSNRSchedule(
      kind=config.noise_schedule,
      log_snr_min=float(config.log_snr_min),
      log_snr_max=float(config.log_snr_max),
    )
    return dm.VDM(net=net, schedule=schedule, prediction_type=config.prediction_type)
  return dm.FlowMatching(net=net, sigma_min=float(config.sigma_min))


def _repeat(tree, k: int):
  return jax.tree.map(lambda a: None if a is None else jnp.concatenate([a] * k), tree)


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
      images, labels = _repeat((images, labels), val_samples)
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
    method = _TRAJECTORY_ANALOGUE.get(method, method)
    num = int(config.trajectory_samples)
    if not num:
      return {}
    lo, hi = sigma_range(params)
    sigmas = sampling.karras_sigmas(steps, sigma_min=lo, sigma_max=hi)
    states = draw(params, key, num, method, steps, True, labels_for(num), guidance, sigmas)
    return save_trajectory_picture(states, workdir, levels, method, steps)

  # -- evaluation ----------------------------------------------------------------------

  def evaluate(params, splits, key, cfg):
    like_key, sample_key = jax.random.split(key)
    mesh = parallel.eval_mesh(cfg.parallel)
    if is_vdm:
      results = _vdm_bound(
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
      results = _flow_likelihood(
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
      sample_quality(sample_with, params, splits, sample_key, cfg, default_sampler, nfe_of)
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
  )


def _vdm_bound(
  model, params, test, key, *, num_levels, conditional, num_samples, batch_size, mesh=None
) -> dict:
  """The VDM bound on the test images, `num_samples` draws per image.

  Image `b`'s draws use the times `(u_b + k / K) mod 1`, `k < K` (stratified per image),
  so the average over its draws is a low-variance estimate of its bound. `mesh`
  (`parallel.eval_mesh`): each test batch is split over its devices.
  """
  num_dims = math.prod(test['image'].shape[1:])

  def per_batch(params, batch, key):
    images = batch['image']
    labels = batch['label'] if conditional else None
    u_key, key = jax.random.split(key)
    u = jax.random.uniform(u_key, (images.shape[0],))

    def one(i):
      times = jnp.mod(u + i / num_samples, 1.0)
      return dm.vdm_terms(
        model,
        params,
        images,
        labels,
        jax.random.fold_in(key, i),
        num_levels=num_levels,
        times=times,
      )

    return jax.tree.map(lambda v: v.T, jax.lax.map(one, jnp.arange(num_samples)))  # [B, K]

  per = parallel.map_examples(
    per_batch, params, _eval_fields(test, conditional), key, batch_size=batch_size, mesh=mesh
  )
  terms = {k: np.asarray(v, np.float64).T for k, v in per.items()}  # [K, N]
  per_image = {k: v.mean(0) for k, v in terms.items()}
  to_bpd = lambda nats: float(nats) / (num_dims * math.log(2.0))
  bound = per_image['bound']
  return {
    'bound': 'elbo',
    'eval_bound_samples': num_samples,
    'test_nll_nats': float(bound.mean()),
    'test_bpd': to_bpd(bound.mean()),
    'test_bpd_stderr': to_bpd(bound.std(ddof=1) / math.sqrt(len(bound))),
    'test_recon_bpd': to_bpd(per_image['recon'].mean()),
    'test_prior_bpd': to_bpd(per_image['prior'].mean()),
    'test_diffusion_bpd': to_bpd(per_image['diffusion'].mean()),
    'test_nonfinite': int(np.sum(~np.isfinite(terms['bound']))),
    'log_snr_0': float(model.apply(params, jnp.zeros(()), method=model.log_snr)),
    'log_snr_1': float(model.apply(params, jnp.ones(()), method=model.log_snr)),
  }


def _eval_fields(test, conditional) -> dict:
  """The test arrays the likelihood evaluations read (labels as int32 where conditional)."""
  fields = {'image': test['image']}
  if conditional:
    fields['label'] = np.asarray(test['label'], np.int32)
  return fields


def _flow_likelihood(
  model_fn,
  params,
  test,
  key,
  *,
  num_levels,
  conditional,
  trace,
  method,
  num_steps,
  num_draws,
  batch_size,
  mesh=None,
) -> dict:
  """Dequantisation bound through the probability-flow ODE, `num_draws` noise draws per
  image (draw `d` of batch `i` with the key `fold_in(fold_in(key, d), i)`). `model_fn(params)`
  is the velocity `(z, t, labels) -> v`; `mesh` (`parallel.eval_mesh`): each test batch is
  split over its devices."""
  num_dims = math.prod(test['image'].shape[1:])

  def per_batch(params, batch, key):
    velocity_of = model_fn(params)
    images = batch['image']
    labels = batch['label'] if conditional else None
    deq_key, probe_key = jax.random.split(key)
    x = dm.dequantize(deq_key, images, num_levels=num_levels)
    velocity = lambda z, t: velocity_of(z, t, labels)
    if trace == 'exact':
      # the exact trace runs the network on one example at a time (vmapped): its label
      def log_p(xb, lb):
        fn = lambda z, t: velocity_of(z, t, None if lb is None else lb[None])
        return sampling.ode_log_likelihood(
          fn, xb[None], t_data=1.0, t_noise=0.0, num_steps=num_steps, method=method, trace='exact'
        )[0][0]

      log_px = (
        jax.vmap(log_p)(x, labels)
        if labels is not None
        else jax.vmap(lambda xb: log_p(xb, None))(x)
      )
    else:
      log_px, _ = sampling.ode_log_likelihood(
        velocity,
        x,
        t_data=1.0,
        t_noise=0.0,
        num_steps=num_steps,
        method=method,
        trace='hutchinson',
        key=probe_key,
      )
    return dm.dequantized_nll(log_px, num_dims=num_dims, num_levels=num_levels)

  fields = _eval_fields(test, conditional)
  draws = [
    parallel.map_examples(
      per_batch, params, fields, jax.random.fold_in(key, d), batch_size=batch_size, mesh=mesh
    )
    for d in range(num_draws)
  ]
  draws = [np.asarray(d, np.float64) for d in draws]
  nll = np.stack(draws)  # [draws, N]
  per_image = nll.mean(0)
  to_bpd = lambda nats: float(nats) / (num_dims * math.log(2.0))
  return {
    'bound': (
      'dequantization (probability-flow ODE, exact trace)'
      if trace == 'exact'
      else "dequantization (probability-flow ODE, Hutchinson's unbiased trace estimate)"
    ),
    'dequantization': 'uniform',
    'likelihood_solver': f'{method}, {num_steps} fixed steps',
    'eval_dequant_samples': num_draws,
    'test_nll_nats': float(per_image.mean()),
    'test_bpd': to_bpd(per_image.mean()),
    'test_bpd_stderr': to_bpd(per_image.std(ddof=1) / math.sqrt(len(per_image))),
    'test_nonfinite': int(np.sum(~np.isfinite(nll))),
  }


def suite_draw(denoise, key, shape, method, sigmas, *, levels: int, trajectory: bool = False):
  """A draw of the suite's `method` on `sigmas` from `noise * sigmas[0]`: uint8 levels
  `shape`, or with `trajectory` the states `[N + 1, *shape]` scaled to the data's range
  (`x / sqrt(1 + sigma^2)`, the variance-preserving view) and quantised."""
  init_key, step_key = jax.random.split(key)
  x = jax.random.normal(init_key, shape, jnp.float32) * sigmas[0]
  out = sampling.get_sampler(method)(denoise, x, sigmas, key=step_key, return_trajectory=trajectory)
  if not trajectory:
    return dm.unit_to_levels(out, levels).astype(jnp.uint8)
  states = out[1] * jax.lax.rsqrt(1.0 + jnp.square(sigmas)).reshape((-1,) + (1,) * len(shape))
  return dm.unit_to_levels(states, levels).astype(jnp.uint8)


def save_trajectory_picture(states, workdir, levels, method, steps) -> dict:
  """`trajectory.png` (one row per sample, one column per state) and its eval.json keys."""
  import os

  from gm_jax.evaluate import images

  images.save_trajectory(
    np.asarray(states), os.path.join(workdir, 'trajectory.png'), num_levels=levels
  )
  return {'trajectory_sampler': f'{method}:{steps}'}


def sample_quality(sample_with, params, splits, key, cfg, default_sampler, nfe_of) -> dict:
  """Sample metrics of the default sampler (`gm_jax.evaluate.sample_metrics`: FID, floor,
  class coverage, KID, precision/recall, what was measured); FID of each of
  `cfg.fid_samplers` on as many samples (`fid_by_sampler`, `nfe_by_sampler`, keys
  `'name:steps'`); samples/s of each timed sampler (and its FID on `timing_fid_samples`
  samples when that is set).

  Args:
    sample_with: `(params, key, num, method, steps) -> uint8 [num, H, W, C]`.
    default_sampler: `(method, steps)`.
    nfe_of: `(method, steps) -> network evaluations per sample`.
  """
  from gm_jax.evaluate import fid
  from gm_jax.evaluate import sample_metrics

  info = splits.info
  num = sample_metrics.num_samples(cfg, splits)
  results = {
    'sampler': f'{default_sampler[0]}-{default_sampler[1]}',
    'nfe': nfe_of(*default_sampler),
  }
  scorable = cfg.fid_network == 'inception' or bool(info.num_classes)
  by_fid, by_nfe = {}, {}
  fid_specs = [default_sampler] + [
    parse_sampler(s, cfg.model, 'fid_samplers') for s in cfg.fid_samplers
  ]
  for i, (method, steps) in enumerate(fid_specs):
    name = f'{method}:{steps}'
    if name in by_nfe:
      continue
    by_nfe[name] = nfe_of(method, steps)
    if not scorable:
      continue
    # the default sampler draws with fold_in(key, 0) as before the suite (same numbers)
    sub_key = jax.random.fold_in(key, 0 if i == 0 else 1000 + i)
    samples = sample_with(params, sub_key, num, method, steps)
    if i == 0:
      results.update(sample_metrics.sample_metrics(cfg, samples, splits))
      by_fid[name] = results['fid']
    else:
      by_fid[name] = sample_metrics.sample_metrics(cfg, samples, splits)['fid']
  if by_fid:
    results['fid_by_sampler'] = by_fid
  results['nfe_by_sampler'] = by_nfe
  classifier = fid.classifier_for(splits) if info.num_classes else None
  specs = [parse_sampler(s, cfg.model) for s in cfg.timing_samplers]
  timing_num = int(defaults.get(cfg, 'num_samples'))
  seen = {default_sampler}
  for i, (method, steps) in enumerate(specs, start=1):
    if (method, steps) in seen:
      continue
    seen.add((method, steps))
    name = f'{method}_{steps}'
    sub_key = jax.random.fold_in(key, i)
    sample_with(params, sub_key, timing_num, method, steps)  # compile
    t0 = time.perf_counter()
    sample_with(params, jax.random.fold_in(sub_key, 1), timing_num, method, steps)
    results[f'samples_per_s_{name}'] = timing_num / (time.perf_counter() - t0)
    results[f'nfe_{name}'] = nfe_of(method, steps)
    count = int(cfg.timing_fid_samples)
    if classifier is None or not count:
      continue
    samples = sample_with(params, sub_key, count, method, steps)
    quality = fid.sample_quality(classifier, samples, splits, num_classes=info.num_classes)
    results[f'fid_{name}'] = quality['fid']
    results[f'class_coverage_{name}'] = quality['class_coverage']
    results[f'fid_samples_{name}'] = count
  return results
