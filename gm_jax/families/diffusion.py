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


def parse_sampler(spec: str, model: str) -> tuple[str, int]:
  """`'ddim:50'` -> `('ddim', 50)`; a ValueError names `config.timing_samplers`."""
  methods = sampling.DIFFUSION_METHODS if model == 'diffusion' else sampling.ODE_METHODS
  method, _, steps = str(spec).partition(':')
  if method not in methods or not steps.isdigit() or int(steps) <= 0:
    raise ValueError(
      f"config.timing_samplers entries must be 'METHOD:STEPS' with METHOD in "
      f'{methods} for {model}; got {spec!r}'
    )
  return method, int(steps)


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
  for name in (
    'channels',
    'num_res_blocks',
    'sample_steps',
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
  parse_sampler(f'{config.sampler}:{config.sample_steps}', config.model)
  for spec in config.timing_samplers:
    parse_sampler(spec, config.model)


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

  @functools.partial(jax.jit, static_argnums=(2, 3, 4))
  def draw(params, key, num, method, steps, labels, scale):
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

  def sample_with(params, key, num, method, steps):
    """uint8 `[num, H, W, C]` from `method` with `steps`, in batches of `sample_batch_size`."""
    size = int(config.sample_batch_size)
    out = []
    for i, start in enumerate(range(0, num, size)):
      n = min(size, num - start)
      out.append(
        np.asarray(
          draw(params, jax.random.fold_in(key, i), n, method, steps, labels_for(n, start), guidance)
        )
      )
    return np.concatenate(out)

  default_sampler = (str(config.sampler), int(config.sample_steps))

  def sample(params, key, num):
    return sample_with(params, key, num, *default_sampler)

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
    results.update(_sample_quality(sample_with, params, splits, sample_key, cfg, default_sampler))
    return results

  return Family(
    name=config.model,
    init=init,
    loss=loss,
    evaluate=evaluate,
    sample=sample,
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


def _sample_quality(sample_with, params, splits, key, cfg, default_sampler) -> dict:
  """FID / floor / class coverage of the default sampler; samples/s of each timed one (and
  its FID on `timing_fid_samples` samples when that is set)."""
  info = splits.info
  num = int(cfg.fid_num_samples) or len(splits.train['image'])
  results = {'sampler': f'{default_sampler[0]}-{default_sampler[1]}'}
  classifier = None
  from gm_jax.evaluate import fid

  if info.num_classes:
    classifier = fid.classifier_for(splits)
  specs = [default_sampler] + [parse_sampler(s, cfg.model) for s in cfg.timing_samplers]
  timing_num = int(defaults.get(cfg, 'num_samples'))
  seen = set()
  for i, (method, steps) in enumerate(specs):
    if (method, steps) in seen:
      continue
    seen.add((method, steps))
    name = f'{method}_{steps}'
    sub_key = jax.random.fold_in(key, i)
    if i:  # timing of the compiled sampler on a batch of num_samples
      sample_with(params, sub_key, timing_num, method, steps)  # compile
      t0 = time.perf_counter()
      sample_with(params, jax.random.fold_in(sub_key, 1), timing_num, method, steps)
      results[f'samples_per_s_{name}'] = timing_num / (time.perf_counter() - t0)
    count = num if i == 0 else int(cfg.timing_fid_samples)
    if classifier is None or not count:
      continue
    samples = sample_with(params, sub_key, count, method, steps)
    quality = fid.sample_quality(classifier, samples, splits, num_classes=info.num_classes)
    if i == 0:
      results.update(quality)
    else:
      results[f'fid_{name}'] = quality['fid']
      results[f'class_coverage_{name}'] = quality['class_coverage']
      results[f'fid_samples_{name}'] = count
  return results
