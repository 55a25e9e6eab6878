"""What the few-step families (consistency, reflow) share: their sampling settings,
`fid_by_steps`, the FID (`gm_jax.evaluate.sample_metrics`, `config.fid_network` as every
sampling family) of the same model sampled with 1, 2 and 4 network evaluations, and the
reading of the teacher run they learn from (`config.teacher_workdir`)."""

from __future__ import annotations

import os
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from gm_jax.evaluate import sample_metrics
from gm_jax.train import checkpoint
from gm_jax.train import run_config

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
  # One key for every step count: the same initial noise (common random numbers), so the
  # FIDs of 1, 2 and 4 steps differ by the sampler, not by the draw (the FID of 1,293
  # samples moves by ~1 between draws). The 1-step key of the per-count keys used before.
  k = jax.random.fold_in(key, 1)
  for s in steps:
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


def teacher_config(config, *, model: str, needed_by: str) -> ml_collections.ConfigDict:
  """The saved config of the run `config.teacher_workdir`, checked to be an unconditional
  `model` run on `config.dataset`; a ValueError names `config.teacher_workdir`."""
  workdir = config.teacher_workdir
  if not isinstance(workdir, str) or not workdir or not os.path.isdir(workdir):
    raise ValueError(
      f'config.teacher_workdir must name a trained {model} workdir; {workdir!r} is '
      f'not a directory (train one: python -m gm_jax.main --config=configs/{model}.py '
      '--workdir=DIR)'
    )
  try:
    saved = run_config.load(workdir)
  except run_config.ResumeConfigError as e:
    raise ValueError(f'config.teacher_workdir={workdir!r}: {e}') from e
  if saved is None:
    raise ValueError(f'config.teacher_workdir={workdir!r} has no config.json: not a gm_jax run')
  if saved.get('model') != model:
    raise ValueError(
      f'config.teacher_workdir={workdir!r} is a {saved.get("model")!r} run; {needed_by} needs '
      f'a {model} teacher'
    )
  if saved.get('dataset') != config.dataset:
    raise ValueError(
      f'config.teacher_workdir={workdir!r} was trained on {saved.get("dataset")!r}, '
      f'config.dataset is {config.dataset!r}'
    )
  if saved.get('conditional'):
    raise ValueError(
      f'config.teacher_workdir={workdir!r} is class-conditional; {needed_by} takes an '
      'unconditional teacher'
    )
  return ml_collections.ConfigDict(saved)


def teacher_params(model, config, info) -> tuple[int, object]:
  """`(step, params)`: the parameters the teacher run selected (`checkpoint.load_params`:
  its best validation, EMA weights where it kept them) for the flax `model`, called as
  `model(x [1, *shape], s [1])`; a ValueError names `config.teacher_workdir`."""
  shape = (1,) + tuple(info.shape)
  target = model.init(jax.random.key(0), jnp.zeros(shape), jnp.ones((1,)))
  try:
    return checkpoint.load_params(config.teacher_workdir, target)
  except checkpoint.CheckpointError as e:
    raise ValueError(f'config.teacher_workdir={config.teacher_workdir!r}: {e}') from e
