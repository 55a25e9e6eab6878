"""Train/validation/test splits of a dataset, in memory or with the training split streamed.

Which path a training split takes (`load_splits(input_pipeline=...)`, the
trainer's `config.input_pipeline`): in memory (every process holds the whole
split; the embedded datasets and exported files always, and under 'auto' every
tfds split up to `memory_max_bytes`), or streamed through tf.data, each process
its own part (`gm_jax.data.stream`; 'stream', or 'auto' above the limit).
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np

from gm_jax.data import exported
from gm_jax.data import reading
from gm_jax.data import stream
from gm_jax.data.batching import num_examples
from gm_jax.data.catalogue import base_name
from gm_jax.data.catalogue import DatasetInfo
from gm_jax.data.catalogue import EMBEDDED_DATASETS
from gm_jax.data.catalogue import get_info
from gm_jax.data.catalogue import split_names


@dataclasses.dataclass(frozen=True)
class Splits:
  """Train/validation/test arrays of one dataset (see `load_split`).

  `train_stream` is None where the training split is in memory (`train` holds all
  of it). Streamed (`load_splits(input_pipeline='stream')`): training batches come
  from `train_stream` (`gm_jax.data.stream`), and `train` holds only the training
  split's first `TRAIN_SAMPLE` rows in stored order, for what evaluation reads from
  training data (a linear probe, FID's real-data floor, decoder marginals) and a
  family's `init`.
  """

  train: dict[str, np.ndarray]
  validation: dict[str, np.ndarray]
  test: dict[str, np.ndarray]
  info: DatasetInfo
  train_stream: stream.StreamSource | None = None


INPUT_PIPELINES = ('auto', 'memory', 'stream')
# Rows of a streamed training split kept in memory as `Splits.train`.
TRAIN_SAMPLE = 10_000


def load_splits(
  name: str,
  *,
  data_dir: str | os.PathLike[str] | None = None,
  validation_fraction: float = 0.1,
  input_pipeline: str = 'memory',
  memory_max_bytes: int | None = None,
) -> Splits:
  """Loads train, validation and test splits.

  Validation is the last `round(validation_fraction * N)` examples of the tfds
  train split (deterministic), train is the rest. `validation_fraction=0`
  gives validation arrays of length 0. Datasets with a validation split of
  their own (`mnist_offline`: 50,000 / 10,000 / 10,000) use it unchanged and
  ignore `validation_fraction`.

  Which path the training split takes (`input_pipeline`):
  - 'memory' (default): read into memory by every process; batches are
    `batch_at_step`, a function of `(step, seed)`. The embedded datasets and
    exported files always take this path under 'auto'.
  - 'stream': read through tfds by each process, its own part only
    (`gm_jax.data.stream`); `Splits.train_stream` describes it and `Splits.train`
    holds its first `TRAIN_SAMPLE` rows. Validation and test are in memory. Needs
    the `[tfds]` extra, also for the embedded datasets (read through their
    builders), and a train split of one piece ('train', not 'trainA+trainB').
  - 'auto': 'stream' for a tfds dataset whose training rows would take more than
    `memory_max_bytes` in memory (each process), else 'memory'.

  Raises:
    ValueError: unknown dataset or `input_pipeline`, bad `data_dir`, or
      `validation_fraction` outside `[0, 1)`.
    ImportError: a dataset read through tfds without tfds installed (the
      message names `pip install gm_jax[tfds]`).
  """
  info = get_info(name)
  if not 0 <= validation_fraction < 1:
    raise ValueError(f'validation_fraction must be in [0, 1), got {validation_fraction}.')
  if input_pipeline not in INPUT_PIPELINES:
    raise ValueError(f'input_pipeline must be one of {INPUT_PIPELINES}, got {input_pipeline!r}.')
  names = split_names(name)
  if input_pipeline != 'memory' and _streams(
    name, names[0], data_dir, input_pipeline, memory_max_bytes, validation_fraction
  ):
    return _streamed_splits(name, names, data_dir, validation_fraction)
  if len(names) == 3:  # the dataset's own validation split
    train, validation, test = (reading.load_split(name, s, data_dir=data_dir) for s in names)
    return Splits(train=train, validation=validation, test=test, info=info)
  full = reading.load_split(name, names[0], data_dir=data_dir)
  n = num_examples(full)
  n_train = n - int(round(validation_fraction * n))
  return Splits(
    train={k: v[:n_train] for k, v in full.items()},
    validation={k: v[n_train:] for k, v in full.items()},
    test=reading.load_split(name, names[-1], data_dir=data_dir),
    info=info,
  )


def _streams(
  name, train_split, data_dir, input_pipeline, memory_max_bytes, validation_fraction
) -> bool:
  """Whether `load_splits` streams the training split (see its docstring)."""
  if input_pipeline == 'stream':
    if '+' in train_split:
      raise ValueError(
        f"input_pipeline='stream': {name!r} trains on {train_split!r}, several tfds "
        "splits; only a single split is streamed. Use input_pipeline='memory'."
      )
    return True
  # 'auto'
  if base_name(name) in EMBEDDED_DATASETS or '+' in train_split:
    return False
  if data_dir is not None and os.path.exists(exported.exported_path(name, data_dir)):
    return False
  if memory_max_bytes is None:
    return False
  rows = stream.num_examples(reading.prepared_builder(name, data_dir), train_split)
  rows -= int(round(validation_fraction * rows)) if len(split_names(name)) == 2 else 0
  return stream.source_nbytes(get_info(name), rows) > int(memory_max_bytes)


def _streamed_splits(name, names, data_dir, validation_fraction) -> Splits:
  info = get_info(name)
  builder = reading.prepared_builder(name, data_dir)
  n = stream.num_examples(builder, names[0])
  validation: dict[str, np.ndarray] | None
  if len(names) == 3:
    train_split = names[0]
    validation = reading.load_split(name, names[1], data_dir=data_dir, use_exported=False)
  else:
    n_train = n - int(round(validation_fraction * n))
    train_split = f'{names[0]}[:{n_train}]'
    validation = (
      reading.load_split(name, f'{names[0]}[{n_train}:]', data_dir=data_dir, use_exported=False)
      if n_train < n
      else None
    )
    n = n_train
  sample = reading.load_split(
    name, f'{names[0]}[:{min(n, TRAIN_SAMPLE)}]', data_dir=data_dir, use_exported=False
  )
  if validation is None:  # tfds rejects an empty slice
    validation = {k: v[:0] for k, v in sample.items()}
  path = None if data_dir is None else os.path.expanduser(os.fspath(data_dir))
  return Splits(
    train=sample,
    validation=validation,
    test=reading.load_split(name, names[-1], data_dir=data_dir, use_exported=False),
    info=info,
    train_stream=stream.StreamSource(name=name, split=train_split, data_dir=path, num_examples=n),
  )
