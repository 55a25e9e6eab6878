"""The normalising-flow family (NICE, RealNVP, Glow, MAF, NSF): loss, evaluation, pictures.

Discrete images `k` on `L` levels are dequantised uniformly,
`x = (k + u) / L`, `u ~ U[0, 1)^D`, fresh noise every step; the loss is the
bound `E_u[-log p(x)] + D log L >= -log P(k)` in nats
(`gm_jax.models.flows.discrete_nll`), reported in bits/dim of the discrete
data. Evaluation averages the bound over `eval_dequant_samples` noise draws
per test image (a lower-variance estimate of the same bound) and also gives the
importance-weighted version `-log mean_k p(x_k) + D log L`, a tighter bound
that is still an upper bound on the discrete NLL (Jensen).
"""

from __future__ import annotations

import math
import os

import jax
import jax.numpy as jnp
import numpy as np

from gm_jax import losses
from gm_jax import parallel
from gm_jax.models import flows as flows_lib
from gm_jax.nn import autoregressive_flows as arf
from gm_jax.nn import flows as fl
from gm_jax.train import defaults
from gm_jax.train.family import Family

MODELS = ('nice', 'realnvp', 'glow', 'maf', 'nsf')

# The family's own settings (`gm_jax.families.setup` fills them in once); the model
# constructors' defaults (`gm_jax.models.flows`), except `hidden`, whose default is
# RealNVP's and Glow's (NICE's shipped config sets 256).
DEFAULTS = {
  'num_couplings': 4,
  'num_hidden_layers': 3,
  'num_scales': 2,
  'num_checkerboard': 3,
  'num_channel': 3,
  'num_final': 4,
  'steps_per_scale': 4,
  'hidden': 64,
  'num_blocks': 0,
  'coupling_scale': 'tanh',
  'learned_prior': True,
  'dropout_rate': 0.0,
  'logit_alpha': 0.05,
  'num_layers': 10,
  'permutation': 'random',
  'actnorm': True,
  'clamp': 2.0,
  'layer': 'coupling',
  'num_bins': 16,
  'tail_bound': 3.0,
  'sample_temperature': 1.0,
  'eval_dequant_samples': 10,
}
DEFAULTS_DOC = {
  'num_couplings': 'NICE: additive coupling layers',
  'num_hidden_layers': 'NICE: hidden layers of each coupling MLP',
  'num_scales': 'RealNVP/Glow: multi-scale levels (image sides divisible by 2**num_scales)',
  'num_checkerboard': 'RealNVP: checkerboard couplings per scale',
  'num_channel': 'RealNVP: channel-wise couplings per scale',
  'num_final': 'RealNVP: checkerboard couplings at the last scale',
  'steps_per_scale': 'Glow: flow steps (ActNorm, 1x1 conv, coupling) per scale',
  'hidden': 'width of the coupling networks',
  'num_blocks': 'residual blocks per coupling network (0: plain conv stack)',
  'coupling_scale': "affine couplings' scale nonlinearity: one of nn.flows.SCALES",
  'learned_prior': 'Glow: learned conditional prior on the factored-out latents',
  'dropout_rate': 'dropout in the coupling networks',
  'logit_alpha': 'alpha of the logit preprocessing (None: none)',
  'num_layers': 'MAF, NSF autoregressive: autoregressive steps',
  'permutation': "MAF, NSF autoregressive: 'reverse' or seeded 'random' between steps",
  'actnorm': 'MAF, NSF autoregressive: ActNorm before each autoregressive step',
  'clamp': 'MAF: soft bound on the log-scales of the affine steps',
  'layer': "NSF: 'coupling' (multi-scale, as Glow) or 'autoregressive' (as MAF)",
  'num_bins': 'NSF: bins K of each rational-quadratic spline (K >= 2, K x 1e-3 < 1)',
  'tail_bound': 'NSF: splines act on [-tail_bound, tail_bound], identity outside',
  'sample_temperature': 'temperature of the base distribution for samples.png',
  'eval_dequant_samples': 'uniform-dequantisation draws per test image in evaluation',
}

# config fields -> model constructor arguments, per model.
_MODEL_FIELDS = {
  'nice': ('num_couplings', 'hidden', 'num_hidden_layers', 'dropout_rate', 'logit_alpha'),
  'realnvp': (
    'num_scales',
    'num_checkerboard',
    'num_channel',
    'num_final',
    'hidden',
    'num_blocks',
    'coupling_scale',
    'dropout_rate',
    'logit_alpha',
  ),
  'glow': (
    'num_scales',
    'steps_per_scale',
    'hidden',
    'num_blocks',
    'coupling_scale',
    'learned_prior',
    'dropout_rate',
    'logit_alpha',
  ),
  'maf': (
    'num_layers',
    'hidden',
    'num_hidden_layers',
    'permutation',
    'actnorm',
    'clamp',
    'dropout_rate',
    'logit_alpha',
  ),
  'nsf': (
    'layer',
    'num_bins',
    'tail_bound',
    'num_scales',
    'steps_per_scale',
    'hidden',
    'num_blocks',
    'dropout_rate',
    'num_layers',
    'num_hidden_layers',
    'permutation',
    'actnorm',
    'logit_alpha',
  ),
}

# The floor of the normalised spline bin widths and heights
# (`splines.rational_quadratic_spline`'s default): K bins fit only while K x floor < 1.
_MIN_BIN = 1e-3


def check_config(config, info) -> None:
  """Checks the flow's settings and dataset before any data is read; errors name the field."""
  if config.model not in MODELS:
    raise ValueError(f'config.model must be one of {MODELS}; got {config.model!r}')
  if info.kind != 'image':
    raise ValueError(f'flows need an image dataset; {info.name!r} is {info.kind}')
  if not isinstance(config.hidden, int) or config.hidden <= 0:
    raise ValueError(f'config.hidden must be a positive integer; got {config.hidden!r}')
  if not isinstance(config.num_blocks, int) or config.num_blocks < 0:
    raise ValueError(f'config.num_blocks must be an integer >= 0; got {config.num_blocks!r}')
  if config.coupling_scale not in fl.SCALES:
    raise ValueError(
      f'config.coupling_scale must be one of {fl.SCALES}; got {config.coupling_scale!r}'
    )
  if config.model in ('maf', 'nsf'):
    _check_autoregressive(config)
  if config.model == 'nsf':
    _check_spline(config)


def _check_autoregressive(config) -> None:
  for field in ('num_layers', 'num_hidden_layers'):
    value = config[field]
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
      raise ValueError(f'config.{field} must be a positive integer; got {value!r}')
  if config.permutation not in arf.PERMUTATIONS:
    raise ValueError(
      f'config.permutation must be one of {arf.PERMUTATIONS}; got {config.permutation!r}'
    )
  if not isinstance(config.clamp, (int, float)) or not config.clamp > 0:
    raise ValueError(f'config.clamp must be a number > 0; got {config.clamp!r}')


def _check_spline(config) -> None:
  if config.layer not in flows_lib.NSF_LAYERS:
    raise ValueError(f'config.layer must be one of {flows_lib.NSF_LAYERS}; got {config.layer!r}')
  k = config.num_bins
  if not isinstance(k, int) or isinstance(k, bool) or k < 2:
    raise ValueError(f'config.num_bins must be an integer >= 2 (K bins); got {k!r}')
  if k * _MIN_BIN >= 1.0:
    raise ValueError(
      f'config.num_bins = {k} bins cannot fit: the minimum bin width {_MIN_BIN} x K must be '
      f'below 1, so K < {round(1 / _MIN_BIN)}'
    )
  if not isinstance(config.tail_bound, (int, float)) or not config.tail_bound > 0:
    raise ValueError(f'config.tail_bound must be a number > 0; got {config.tail_bound!r}')


def build_model(config, info) -> flows_lib.FlowModel:
  """The flow named by `config.model` for dataset `info`, from the config's fields."""
  check_config(config, info)
  kwargs = {k: config[k] for k in _MODEL_FIELDS[config.model]}
  model = flows_lib.MODELS[config.model](**kwargs)
  multiple = model.size_multiple
  h, w, _ = info.shape
  if h % multiple or w % multiple:
    raise ValueError(
      f'{config.model} with these config.num_scales needs image sides '
      f'divisible by {multiple}; {info.name!r} is {info.shape}'
    )
  return model


def make_family(config, info) -> Family:
  """Pure functions of a flow for the generic trainer."""
  model = build_model(config, info)
  levels, num_dims = info.num_levels, info.num_dims
  temperature = float(config.sample_temperature)

  def bound(params, images, key, *, train):
    """Per-example discrete NLL bound in nats, `[B]`."""
    noise_key, dropout_key = jax.random.split(key)
    x = flows_lib.dequantize(noise_key, images, num_levels=levels)
    z, log_det = model.apply(
      params, x, train=train, rngs={'dropout': dropout_key}, method=model.forward_and_log_det
    )
    return flows_lib.discrete_nll(z, log_det, num_levels=levels)

  @jax.jit
  def init(key, batch):
    # ActNorm layers initialise from this (dequantised) batch.
    x = flows_lib.dequantize(jax.random.fold_in(key, 1), batch['image'], num_levels=levels)
    return model.init({'params': key}, x, method=model.forward_and_log_det)

  def loss(params, batch, key, *, train):
    nll = bound(params, jnp.asarray(batch['image']), key, train=train)
    bpd = losses.bits_per_dim(nll, num_dims=num_dims)
    return jnp.mean(nll), {'bpd': jnp.mean(bpd), 'nll_nats': jnp.mean(nll)}

  def evaluate(params, splits, key, cfg):
    return evaluate_bound(
      model,
      params,
      splits.test,
      key,
      num_levels=levels,
      num_samples=int(cfg.eval_dequant_samples),
      batch_size=int(defaults.get(cfg, 'eval_batch_size')),
      mesh=parallel.eval_mesh(cfg.parallel),
    )

  # `temperature` is traced, so every temperature shares one compiled sampler.
  sample_jit = jax.jit(
    lambda p, k, n, t: flows_lib.quantize(
      flows_lib.sample(model, p, k, shape=(n,) + tuple(info.shape), temperature=t),
      num_levels=levels,
    ),
    static_argnums=2,
  )
  num_samples = int(defaults.get(config, 'num_samples'))

  def sample(params, key, num):
    return np.asarray(sample_jit(params, key, num, temperature)).astype(np.uint8)

  def pictures(params, splits, key, workdir):
    draw = lambda key, t: sample_jit(params, key, num_samples, t)
    return flow_pictures(model, params, splits, key, workdir, draw=draw)

  return Family(
    name=config.model,
    init=init,
    loss=loss,
    evaluate=evaluate,
    sample=sample,
    pictures=pictures,
    validation_metric='bpd',
    resume_may_change=frozenset({'eval_dequant_samples', 'sample_temperature'}),
  )


def evaluate_bound(
  model,
  params,
  test: dict,
  key,
  *,
  num_levels: int,
  num_samples: int,
  batch_size: int = 256,
  mesh=None,
) -> dict:
  """Test NLL bounds with `num_samples` uniform-dequantisation draws per image.

  Returns `test_nll_nats` / `test_bpd` (the dequantisation bound
  `E_u[-log p(x)] + D log L`, averaged over the draws), its standard error in
  bits/dim over test images, and the tighter importance-weighted bound
  `test_bpd_iw` = `-log mean_k p(x_k) + D log L`. `mesh` (`parallel.eval_mesh`): each
  test batch is split over its devices.
  """
  num_dims = math.prod(test['image'].shape[1:])

  def per_draw(params, batch, key):
    keys = jax.random.split(key, num_samples)

    def one(key):
      x = flows_lib.dequantize(key, batch['image'], num_levels=num_levels)
      z, log_det = model.apply(params, x, method=model.forward_and_log_det)
      return flows_lib.discrete_nll(z, log_det, num_levels=num_levels)

    return jax.lax.map(one, keys).T  # [B, K]

  nll = parallel.map_examples(
    per_draw, params, {'image': test['image']}, key, batch_size=batch_size, mesh=mesh
  )
  nll = np.asarray(nll, np.float64).T  # [K, N]
  per_image = nll.mean(0)
  iw = -(np.logaddexp.reduce(-nll, axis=0) - math.log(num_samples))
  to_bpd = lambda nats: float(nats) / (num_dims * math.log(2.0))
  return {
    'bound': 'exact',  # exact change of variables; the bound is the dequantisation's
    'dequantization': 'uniform',
    'eval_dequant_samples': num_samples,
    'test_nll_nats': float(per_image.mean()),
    'test_bpd': to_bpd(per_image.mean()),
    'test_bpd_stderr': to_bpd(per_image.std(ddof=1) / math.sqrt(len(per_image))),
    'test_bpd_iw': to_bpd(iw.mean()),
    'test_nonfinite': int(np.sum(~np.isfinite(nll))),
  }


def flow_pictures(model, params, splits, key, workdir, *, draw) -> dict:
  """Samples at several temperatures and latent interpolations between test images.

  `draw(key, temperature)` returns a batch of level images `[N, H, W, C]`;
  each temperature is a row of 10 (the same base noise, scaled).
  """
  from gm_jax.evaluate import images
  from gm_jax.evaluate import probe

  levels = splits.info.num_levels
  temperatures = (0.0, 0.5, 0.7, 0.85, 1.0)
  rows = [np.asarray(draw(key, t))[:10] for t in temperatures]
  images.save_image_grid(
    np.concatenate(rows),
    os.path.join(workdir, 'samples_temperature.png'),
    num_levels=levels,
    nrow=10,
  )

  # Class-free interpolation: straight lines in z between pairs of test images, taken
  # at the centres of their dequantisation bins.
  test = np.asarray(splits.test['image'][:8], np.float32)
  x = (test + 0.5) / levels
  interp = jax.jit(
    lambda p, a, b: flows_lib.quantize(
      flows_lib.interpolate(model, p, a, b, num_steps=10), num_levels=levels
    )
  )
  path = np.concatenate([np.asarray(interp(params, x[i], x[i + 1])) for i in range(0, 8, 2)])
  images.save_image_grid(
    path, os.path.join(workdir, 'interpolations.png'), num_levels=levels, nrow=10
  )
  results = {'sample_temperatures': list(temperatures)}
  if splits.info.num_classes:
    # Representation: z = f(x) of the bin centres, flattened (as many dims as pixels).
    encode = jax.jit(
      lambda p, images: model.apply(
        p, (images.astype(jnp.float32) + 0.5) / levels, method=model.forward_and_log_det
      )[0]
    )
    results.update(probe.probe_splits(lambda x: encode(params, x), splits))
  return results
