"""Deterministic batches of in-memory arrays: `batch_at_step` and `iterate_batches`.

Training reads batches with `batch_at_step`, a pure function of `(step, seed)`: a run
resumed from a checkpoint at step `s` sees exactly the batches an uninterrupted run
would have seen. Evaluation reads a split in order with `iterate_batches`.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
import functools
from typing import Any

import numpy as np


def num_examples(arrays: Mapping[str, Any]) -> int:
  """Common leading dimension of `arrays`; errors if empty or inconsistent."""
  if not arrays:
    raise ValueError('arrays must hold at least one array.')
  lengths = {k: len(v) for k, v in arrays.items()}
  if len(set(lengths.values())) != 1:
    raise ValueError(f'arrays have different lengths: {lengths}.')
  return next(iter(lengths.values()))


def check_batch_size(batch_size: int) -> int:
  """`batch_size` as an int; a ValueError naming `batch_size` unless a positive integer."""
  if isinstance(batch_size, bool) or int(batch_size) != batch_size:
    raise ValueError(f'batch_size must be an integer, got {batch_size!r}.')
  if batch_size <= 0:
    raise ValueError(f'batch_size must be positive, got {batch_size}.')
  return int(batch_size)


@functools.lru_cache(maxsize=8)
def _permutation(n: int, seed: int, epoch: int) -> np.ndarray:
  perm = np.random.default_rng([seed, epoch]).permutation(n)
  perm.flags.writeable = False
  return perm


def batch_at_step(
  arrays: Mapping[str, np.ndarray],
  step: int,
  *,
  batch_size: int,
  seed: int,
  shard_index: int = 0,
  shard_count: int = 1,
) -> dict[str, np.ndarray]:
  """The training batch for `step`: a pure function of `(step, seed)`.

  Each epoch visits `N // batch_size` batches of a fresh permutation,
  `np.random.default_rng([seed, epoch]).permutation(N)`; the last
  `N % batch_size` examples of each permutation are skipped that epoch.

  Args:
    arrays: `{key: [N, ...]}`, e.g. from `load_split`.
    step: global step, >= 0.
    batch_size: global batch size, 0 < batch_size <= N.
    seed: non-negative data-order seed.
    shard_index: which contiguous part of the global batch to return.
    shard_count: number of parts; must divide `batch_size`.

  Returns:
    `{key: [batch_size // shard_count, ...]}`. The shards for
    `shard_index = 0 .. shard_count - 1` concatenate to the global batch.
  """
  n = num_examples(arrays)
  batch_size = check_batch_size(batch_size)
  step, seed = int(step), int(seed)
  if step < 0:
    raise ValueError(f'step must be non-negative, got {step}.')
  if seed < 0:
    raise ValueError(f'seed must be non-negative, got {seed}.')
  if shard_count < 1:
    raise ValueError(f'shard_count must be positive, got {shard_count}.')
  if not 0 <= shard_index < shard_count:
    raise ValueError(f'shard_index must be in [0, {shard_count}), got {shard_index}.')
  if batch_size % shard_count:
    raise ValueError(f'batch_size ({batch_size}) must be divisible by shard_count ({shard_count}).')
  if n < batch_size:
    raise ValueError(f'batch_size ({batch_size}) is larger than the number of examples ({n}).')
  epoch, position = divmod(step, n // batch_size)
  start = position * batch_size
  shard_size = batch_size // shard_count
  start += shard_index * shard_size
  idx = _permutation(n, seed, epoch)[start : start + shard_size]
  return {k: v[idx] for k, v in arrays.items()}


def iterate_batches(
  arrays: Mapping[str, np.ndarray], batch_size: int
) -> Iterator[dict[str, np.ndarray]]:
  """Yields `arrays` in order in batches of `batch_size`; the last may be smaller."""
  n = num_examples(arrays)
  batch_size = check_batch_size(batch_size)
  for start in range(0, n, batch_size):
    yield {k: v[start : start + batch_size] for k, v in arrays.items()}
