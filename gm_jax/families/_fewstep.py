"""What the few-step families (consistency, reflow) share: their sampling settings and
`fid_by_steps`, the FID (`gm_jax.evaluate.sample_metrics`, `config.fid_network` as every
sampling family) of the same model sampled with 1, 2 and 4 network evaluations."""

from __future__ import annotations

import time

import jax
import numpy as np

from gm_jax.evaluate import sample_metrics

DEFAULTS = {
  'sample_steps': 1,
  'fid_steps': (1, 2, 4),
  # the FID's sample count and feature network, as every sampling family's
  **sample_metrics.DEFAULTS,
  'sample_batch_size': 512,
}
DEFAULTS_DOC = {
  'sample_steps': 'network evaluations per sample of samples.png and `fid`',
  'fid_steps': 'step counts of fid_by_steps',
  **sample_metrics.DEFAULTS_DOC,
  'fid_num_samples': 'samples of each FID (0: as many as training images)',
  'sample_batch_size': 'images per sampler call',
}
EVAL_FIELDS = frozenset(DEFAULTS)


def check_config(config) -> None:
  """Errors name the field."""
  for name in ('sample_steps', 'sample_batch_size'):
    value = config[name]
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
      raise ValueError(f'config.{name} must be a positive integer; got {value!r}')
  steps = config.fid_steps
  if not steps or any(not isinstance(s, int) or isinstance(s, bool) or s < 1 for s in steps):
    raise ValueError(f'config.fid_steps must be positive integers; got {steps!r}')
  if not isinstance(config.fid_num_samples, int) or config.fid_num_samples < 0:
    raise ValueError(
      f'config.fid_num_samples must be a non-negative integer; got {config.fid_num_samples!r}'
    )
  sample_metrics.check_config(config)


def batched(draw, config):
  """`sample_with(params, key, num, steps)`: uint8 images from `draw(params, key, num,
  steps)` in batches of `config.sample_batch_size`."""
  size = int(config.sample_batch_size)

  def sample_with(params, key, num, steps):
    out = [
      np.asarray(draw(params, jax.random.fold_in(key, i), min(size, num - start), steps))
      for i, start in enumerate(range(0, num, size))
    ]
    return np.concatenate(out)

  return sample_with


def fid_by_steps(sample_with, params, splits, key, config, *, cache_dir=None) -> dict:
  """`fid_by_steps` (`{"1": .., "2": .., "4": ..}`), `samples_per_s_by_steps` and, at
  `config.sample_steps`, the rest of `sample_metrics.sample_metrics` (`fid`, KID,
  precision/recall, what was measured; the classifier's `fid_floor`, `class_coverage`).

  Args:
    sample_with: `(params, key, num, steps) -> uint8 [num, H, W, C]`.
    cache_dir: where the real-data Inception statistics are cached
      (`sample_metrics.cache_dir(workdir)`); None computes them every call.
  """
  info = splits.info
  num = sample_metrics.num_samples(config, splits)
  steps = sorted(set(config.fid_steps) | {int(config.sample_steps)})
  results: dict = {'fid_by_steps': {}, 'samples_per_s_by_steps': {}}
  scorable = config.fid_network == 'inception' or bool(info.num_classes)
  for s in steps:
    k = jax.random.fold_in(key, s)
    samples = sample_with(params, k, num, s)  # includes compilation
    t0 = time.perf_counter()
    sample_with(params, jax.random.fold_in(k, 1), num, s)
    results['samples_per_s_by_steps'][str(s)] = num / (time.perf_counter() - t0)
    if not scorable:
      continue
    quality = sample_metrics.sample_metrics(config, samples, splits, cache_dir=cache_dir)
    if s in config.fid_steps:
      results['fid_by_steps'][str(s)] = quality['fid']
    if s == int(config.sample_steps):
      results.update(quality)
  results['nfe'] = int(config.sample_steps)
  return results
