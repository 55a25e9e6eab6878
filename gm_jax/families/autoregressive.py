"""The autoregressive family (PixelCNN on images, causal-conv model on text).

The loss is the exact negative log-likelihood `-sum_i log p(x_i | x_<i)`
(`losses.autoregressive_nll` of the model's logits; the models shift internally),
reported in bits/dim (bits per character for text). Evaluation is exact too: no
bound, no sampling. Samples are drawn with the cached sampler
(`gm_jax.sampling.sample(method='cached')`).
"""

from __future__ import annotations

import math
import os
import time

import jax
import jax.numpy as jnp
import numpy as np

from gm_jax import losses
from gm_jax import parallel
from gm_jax import sampling
from gm_jax.families import _binarization as binarization
from gm_jax.models import autoregressive as ar_lib
from gm_jax.train import defaults
from gm_jax.train.family import Family

MODELS = ('pixelcnn', 'char_lm')
_KIND = {'pixelcnn': 'image', 'char_lm': 'text'}

# The family's own settings (`gm_jax.families.setup` fills them in once).
DEFAULTS = {
  'dropout_rate': 0.0,
  'sample_temperature': 1.0,
  'sample_length': 256,
  **binarization.DEFAULTS,
}
DEFAULTS_DOC = {
  'dropout_rate': 'dropout between the masked/causal convolutions, in [0, 1)',
  'sample_temperature': 'softmax temperature of the samples (> 0)',
  'sample_length': 'char_lm: characters per sample in samples.txt',
  **binarization.DEFAULTS_DOC,
}


def _positive_int(config, name: str) -> int:
  value = config[name]
  if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
    raise ValueError(f'config.{name} must be a positive integer; got {value!r}')
  return value


def check_config(config, info) -> None:
  """Checks the settings and dataset before any data is read; errors name the field."""
  if config.model not in MODELS:
    raise ValueError(f'config.model must be one of {MODELS}; got {config.model!r}')
  if info.kind != _KIND[config.model]:
    raise ValueError(
      f'config.model={config.model!r} needs a {_KIND[config.model]} dataset; '
      f'{info.name!r} is {info.kind}'
    )
  _positive_int(config, 'channels')
  _positive_int(config, 'kernel_size')
  dropout = config.dropout_rate
  if not isinstance(dropout, (int, float)) or not 0.0 <= dropout < 1.0:
    raise ValueError(f'config.dropout_rate must be in [0, 1); got {dropout!r}')
  if not float(config.sample_temperature) > 0:
    raise ValueError(f'config.sample_temperature must be > 0; got {config.sample_temperature!r}')
  binarization.check_config(config)


def build_model(config, info):
  """The `PixelCNN` or `CausalConvLM` named by `config.model`, sized for dataset `info`."""
  if config.model not in MODELS:
    raise ValueError(f'config.model must be one of {MODELS}; got {config.model!r}')
  if info.kind != _KIND[config.model]:
    raise ValueError(
      f'config.model={config.model!r} needs a {_KIND[config.model]} dataset; '
      f'{info.name!r} is {info.kind}'
    )
  channels = _positive_int(config, 'channels')
  kernel_size = _positive_int(config, 'kernel_size')
  dropout = config.dropout_rate
  if not isinstance(dropout, (int, float)) or not 0.0 <= dropout < 1.0:
    raise ValueError(f'config.dropout_rate must be in [0, 1); got {dropout!r}')
  if config.model == 'pixelcnn':
    num_channels = info.shape[-1]
    if channels % num_channels:
      raise ValueError(
        f'config.channels={channels} must be a multiple of the '
        f'{num_channels} colour channels of {info.name!r}'
      )
    if kernel_size < 3 or kernel_size % 2 == 0:
      raise ValueError(f'config.kernel_size must be odd and >= 3; got {kernel_size}')
    return ar_lib.PixelCNN(
      num_levels=info.num_levels,
      num_channels=num_channels,
      features=channels,
      num_layers=_positive_int(config, 'num_layers'),
      kernel_size=kernel_size,
      dropout_rate=float(dropout),
    )
  dilations = config.dilations
  if (
    not isinstance(dilations, (tuple, list))
    or not dilations
    or any(not isinstance(d, int) or isinstance(d, bool) or d <= 0 for d in dilations)
  ):
    raise ValueError(
      f'config.dilations must be a non-empty sequence of positive integers; got {dilations!r}'
    )
  if kernel_size < 2:
    raise ValueError(f'config.kernel_size must be >= 2; got {kernel_size}')
  return ar_lib.CausalConvLM(
    vocab_size=info.num_levels,
    channels=channels,
    dilations=tuple(dilations),
    kernel_size=kernel_size,
    dropout_rate=float(dropout),
  )


def make_family(config, info, *, grey_levels=None) -> Family:
  """Pure functions of an autoregressive model for the generic trainer.

  Args:
    grey_levels: levels of the images before `config.binarize` (the `prepare` hook's).
  """
  check_config(config, info)
  model = build_model(config, info)
  field = 'image' if info.kind == 'image' else 'tokens'
  num_dims = info.num_dims
  temperature = float(config.sample_temperature)

  def per_example_nll(params, x, key=None, train=False):
    rngs = {'dropout': key} if train else {}
    logits = model.apply(params, x, train=train, rngs=rngs)
    return losses.autoregressive_nll(logits, x)

  @jax.jit
  def init(key, batch):
    return model.init({'params': key}, jnp.asarray(batch[field]))

  def loss(params, batch, key, *, train):
    nll = per_example_nll(params, jnp.asarray(batch[field]), key, train)
    bpd = jnp.mean(losses.bits_per_dim(nll, num_dims=num_dims))
    metrics = {'bpd': bpd, 'nll_nats': jnp.mean(nll)}
    if field == 'tokens':
      metrics['bits_per_char'] = bpd
    return jnp.mean(nll), metrics

  def evaluate(params, splits, key, cfg):
    del key  # exact likelihood: nothing is sampled
    results = evaluate_nll(
      per_example_nll,
      params,
      splits.test,
      field=field,
      batch_size=int(defaults.get(cfg, 'eval_batch_size')),
      mesh=parallel.eval_mesh(cfg.parallel),
    )
    if field == 'tokens':
      results['test_bits_per_char'] = results['test_bpd']
    return results

  def sample_images(params, key, num):
    x = sampling.sample(model, params, key, (num,) + tuple(info.shape), temperature=temperature)
    return np.asarray(x).astype(np.uint8)

  num_text = int(defaults.get(config, 'num_samples'))
  length = int(config.sample_length)

  def text_pictures(params, splits, key, workdir):
    del splits
    return write_text_samples(
      model, params, key, workdir, num=num_text, length=length, temperature=temperature
    )

  # Images go through the trainer's samples.png; text writes samples.txt itself.
  is_image = field == 'image'
  sample_fn = sample_images if is_image else None
  pictures_fn = None if is_image else text_pictures

  family = Family(
    name=config.model,
    init=init,
    loss=loss,
    evaluate=evaluate,
    sample=sample_fn,
    pictures=pictures_fn,
    validation_metric='bpd',
    resume_may_change=frozenset({'sample_length', 'sample_temperature'}),
  )
  return binarization.wrap_family(config, family, grey_levels=grey_levels)


def evaluate_nll(
  per_example_nll, params, test: dict, *, field: str, batch_size: int = 256, mesh=None
) -> dict:
  """Exact test NLL in nats and bits/dim (mean over the test split, with its stderr).

  `mesh` (`parallel.eval_mesh`): each test batch is split over its devices.
  """
  data = test[field]
  num_dims = math.prod(data.shape[1:])
  nll = parallel.map_examples(
    lambda p, batch, _: per_example_nll(p, batch[field]),
    params,
    {field: data},
    None,
    batch_size=batch_size,
    mesh=mesh,
  )
  nll = np.asarray(nll, np.float64)
  to_bpd = lambda nats: float(nats) / (num_dims * math.log(2.0))
  return {
    'bound': 'exact',
    'test_nll_nats': float(nll.mean()),
    'test_bpd': to_bpd(nll.mean()),
    'test_bpd_stderr': to_bpd(nll.std(ddof=1) / math.sqrt(len(nll))) if len(nll) > 1 else 0.0,
    'test_nonfinite': int(np.sum(~np.isfinite(nll))),
  }


def write_text_samples(
  model, params, key, workdir: str, *, num: int, length: int, temperature: float
) -> dict:
  """Samples `num` byte strings of `length` into `workdir/samples.txt`; times a second draw."""
  shape = (num, length)
  tokens = np.asarray(sampling.sample(model, params, key, shape, temperature=temperature))
  t0 = time.perf_counter()
  np.asarray(
    sampling.sample(model, params, jax.random.fold_in(key, 1), shape, temperature=temperature)
  )
  seconds = time.perf_counter() - t0
  if jax.process_index() == 0:
    with open(os.path.join(workdir, 'samples.txt'), 'w', encoding='utf-8') as f:
      for i, row in enumerate(tokens):
        text = bytes(row.astype(np.uint8).tolist()).decode('utf-8', errors='replace')
        f.write(f'--- sample {i} (temperature {temperature}) ---\n{text}\n')
  return {
    'samples_per_s': num / seconds if seconds > 0 else None,
    'sample_chars_per_s': num * length / seconds if seconds > 0 else None,
    'sample_length': length,
  }


# The registry's hook: the splits binarised as `config.binarize` asks, and the grey levels
# before binarisation for `make_family`.
prepare = binarization.prepare
