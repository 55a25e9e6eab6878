"""Loading datasets into NumPy, and deterministic batching.

The embedded datasets (`digits`, `photo_patches`, `pydoc_chars`) are built from
their sources straight to NumPy (`gm_jax.data.embedded`), without TensorFlow or
tfds: the same rows, bytes and order as their tfds builders
(`gm_jax.data.builders`, still registered for `tfds.load('digits')` and used by
`make_tf_dataset`). An exported file `DATA_DIR/exported/<name>.npz` is read
without TensorFlow too. Every other dataset is read through tfds, which is the
optional extra `pip install gm_jax[tfds]`: `mnist_offline` is prepared into
`data_dir` without network access; catalogue datasets (`mnist`, `cifar10`, ...)
are prepared by tfds, which needs either network access or a `data_dir` that
already holds them.

Training reads batches with `batch_at_step`, a pure function of
`(step, seed)`: a run resumed from a checkpoint at step `s` sees exactly the
batches an uninterrupted run would have seen.

Which path a training split takes (`load_splits(input_pipeline=...)`, the
trainer's `config.input_pipeline`): in memory (every process holds the whole
split; the embedded datasets and exported files always, and under 'auto' every
tfds split up to `memory_max_bytes`), or streamed through tf.data, each process
its own part (`gm_jax.data.stream`; 'stream', or 'auto' above the limit).

TensorFlow is imported only when a tfds dataset is read, never at
`import gm_jax.data` nor for an embedded or exported dataset.
"""
from __future__ import annotations

from collections.abc import Iterator, Mapping
import dataclasses
import functools
import math
import os
import tempfile
from typing import Any

import numpy as np

from gm_jax.data import _tfds as _tfds_lib
from gm_jax.data import embedded
from gm_jax.data import exported
from gm_jax.data._tfds import is_local as _is_local
from gm_jax.data._tfds import prepare_lock

# Datasets built from local sources by `gm_jax.data.embedded` (tfds builders in
# `gm_jax.data.builders`).
EMBEDDED_DATASETS = embedded.NAMES
# The version of their tfds builders; the only one a name suffix may ask for.
_EMBEDDED_VERSION = '1.0.0'
# Real MNIST converted from a registry wheel (`gm_jax.data.mnist_offline`).
MNIST_OFFLINE = 'mnist_offline'
# Datasets with a validation split of their own, which `load_splits` uses.
_VALIDATION_SPLITS = {MNIST_OFFLINE: 'validation'}

_CYCLE_GAN_CONFIGS = (
    'apple2orange',
    'summer2winter_yosemite',
    'horse2zebra',
    'monet2photo',
    'cezanne2photo',
    'ukiyoe2photo',
    'vangogh2photo',
    'facades',
    'iphone2dslr_flower',
)

# tfds split strings used by `load_splits` where a dataset has no plain
# 'train'/'test' splits.
_TRAIN_TEST_SPLITS = {
    f'cycle_gan/{c}': ('trainA+trainB', 'testA+testB')
    for c in _CYCLE_GAN_CONFIGS
}

# Rows read per tf.data batch when materialising a split in memory.
_READ_CHUNK = 4096


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
  """Static description of a dataset as `load_split` returns it.

  Attributes:
    name: tfds name, e.g. 'digits' or 'cycle_gan/horse2zebra'.
    kind: 'image' (examples under 'image') or 'text' (under 'tokens').
    shape: per-example shape, `(H, W, C)` for images, `(T,)` for text.
    num_levels: values lie in `[0, num_levels)` (pixel levels or vocabulary).
    num_classes: number of `label` classes, or None if the dataset has no
      labels (then `load_split` returns no 'label').
  """

  name: str
  kind: str
  shape: tuple[int, ...]
  num_levels: int
  num_classes: int | None

  @property
  def num_dims(self) -> int:
    """Number of values per example, `prod(shape)`."""
    return math.prod(self.shape)


def _known_datasets() -> dict[str, DatasetInfo]:
  from pydoc_data import topics  # pylint: disable=g-import-not-at-top

  rows = [
      ('digits', 'image', (8, 8, 1), 17, 10),
      ('photo_patches', 'image', (32, 32, 3), 256, 2),
      ('pydoc_chars', 'text', (128,), 256, len(topics.topics)),
      ('mnist', 'image', (28, 28, 1), 256, 10),
      (MNIST_OFFLINE, 'image', (28, 28, 1), 256, 10),
      ('binarized_mnist', 'image', (28, 28, 1), 2, None),
      ('fashion_mnist', 'image', (28, 28, 1), 256, 10),
      ('kmnist', 'image', (28, 28, 1), 256, 10),
      ('cifar10', 'image', (32, 32, 3), 256, 10),
      ('cifar100', 'image', (32, 32, 3), 256, 100),
      ('svhn_cropped', 'image', (32, 32, 3), 256, 10),
  ]
  # label = domain, 'A' or 'B'.
  rows += [
      (f'cycle_gan/{c}', 'image', (256, 256, 3), 256, 2)
      for c in _CYCLE_GAN_CONFIGS
  ]
  return {row[0]: DatasetInfo(*row) for row in rows}


def _base_name(name: str) -> str:
  """'mnist:3.0.1' -> 'mnist' (tfds accepts a version after ':')."""
  return name.split(':', 1)[0]


def get_info(name: str) -> DatasetInfo:
  """Returns the static `DatasetInfo` of dataset `name`.

  Args:
    name: an embedded dataset ('digits', 'photo_patches', 'pydoc_chars'),
      'mnist_offline' (see `gm_jax.data.mnist_offline`) or a known tfds name
      ('mnist', 'binarized_mnist', 'fashion_mnist', 'cifar10',
      'cycle_gan/horse2zebra', ...); a tfds version suffix (':3.0.1') is
      allowed.

  Raises:
    ValueError: if `name` is not a known dataset.
  """
  known = _known_datasets()
  if not isinstance(name, str) or _base_name(name) not in known:
    raise ValueError(
        f"Unknown dataset {name!r}. Known datasets: {', '.join(known)}."
    )
  return known[_base_name(name)]


def _tf(name: str | None = None):
  """Imports TensorFlow for input pipelines only: CPU, no GPU memory grabbed.

  Raises:
    ImportError: TensorFlow is not installed; the message names dataset `name`
      and the `gm_jax[tfds]` extra.
  """
  tf = _tfds_lib.import_tf(name)

  try:
    tf.config.set_visible_devices([], 'GPU')
  except (RuntimeError, ValueError):
    pass  # TF already initialised its devices; keep that choice.
  return tf


def _tfds(name: str | None = None):
  """Imports tfds with the embedded builders registered (this module depends on them).

  Raises:
    ImportError: tfds is not installed; the message names dataset `name` and the
      `gm_jax[tfds]` extra.
  """
  tfds = _tfds_lib.import_tfds(name)
  from gm_jax.data import builders  # pylint: disable=g-import-not-at-top,unused-import
  from gm_jax.data import mnist_offline  # pylint: disable=g-import-not-at-top,unused-import
  return tfds


def _check_data_dir(data_dir: str | os.PathLike[str] | None) -> str | None:
  """Creates a local `data_dir` if needed; errors name the path."""
  if data_dir is None:
    return None
  path = os.path.expanduser(os.fspath(data_dir))
  if _is_local(path):
    try:
      os.makedirs(path, exist_ok=True)
    except OSError as e:
      raise ValueError(
          f'data_dir {path!r} cannot be created or is not a directory: {e}'
      ) from e
  return path


def _check_writable(path: str | None) -> None:
  """Raises ValueError naming `path` if files cannot be written there."""
  if path is None or not _is_local(path):
    return
  try:
    with tempfile.TemporaryFile(dir=path):
      pass
  except OSError as e:
    raise ValueError(
        f'data_dir {path!r} is not writable, so the dataset cannot be '
        f'prepared there: {e}'
    ) from e


def _prepared_builder(name: str, data_dir: str | os.PathLike[str] | None):
  """Returns a tfds builder for `name` whose data exist in `data_dir`."""
  get_info(name)  # Validates the name before any tfds work.
  _tf(name)
  tfds = _tfds(name)
  path = _check_data_dir(data_dir)
  builder = tfds.builder(name, data_dir=path)
  if builder.is_prepared():
    return builder
  _check_writable(path)
  with prepare_lock(builder.data_dir_root, builder.name):
    # Another process may have prepared it while this one waited for the lock.
    builder = tfds.builder(name, data_dir=path)
    if builder.is_prepared():
      return builder
    if _base_name(name) in EMBEDDED_DATASETS + (MNIST_OFFLINE,):
      # Built from local files (mnist_offline: a checked wheel, see its module);
      # never look for a prepared copy on GCS. Their errors say what to do.
      builder.download_and_prepare(
          download_config=tfds.download.DownloadConfig(try_download_gcs=False)
      )
      return builder
    try:
      builder.download_and_prepare()
    except Exception as e:  # pylint: disable=broad-except
      raise RuntimeError(
          f'tfds could not download and prepare {name!r} into '
          f'{builder.data_dir_root!r}. Without network access, copy a prepared '
          'copy there or use an embedded dataset '
          f"({', '.join(EMBEDDED_DATASETS)}). Cause: {e}"
      ) from e
    return builder


def _select_features(info: DatasetInfo):
  """tf.data map: keeps the public features with `load_split`'s dtypes."""
  tf = _tf()

  def select(example):
    out = {}
    if info.kind == 'image':
      out['image'] = tf.ensure_shape(example['image'], info.shape)
    else:
      out['tokens'] = tf.cast(
          tf.ensure_shape(example['tokens'], info.shape), tf.int32
      )
    if info.num_classes is not None:
      out['label'] = tf.cast(example['label'], tf.int32)
    return out

  return select


def _select_arrays(info: DatasetInfo, arrays: Mapping[str, np.ndarray]):
  """`_select_features` on NumPy arrays: the public features, `load_split`'s dtypes."""
  n = _num_examples(arrays)
  if info.kind == 'image':
    out = {'image': np.asarray(arrays['image'], np.uint8)}
  else:
    out = {'tokens': np.asarray(arrays['tokens']).astype(np.int32)}
  data = next(iter(out.values()))
  if data.shape != (n,) + info.shape:
    raise ValueError(f'{info.name}: examples of shape {data.shape[1:]}, '
                     f'expected {info.shape}.')
  if info.num_classes is not None:
    out['label'] = np.asarray(arrays['label']).astype(np.int32)
  return out


def _load_embedded(
    name: str, split: str, data_dir: str | os.PathLike[str] | None
) -> dict[str, np.ndarray]:
  """`load_split` of an embedded dataset, built from its source without tfds."""
  base, _, version = name.partition(':')
  if version and version != _EMBEDDED_VERSION:
    raise ValueError(f'Dataset {name!r}: {base} has only version '
                     f'{_EMBEDDED_VERSION}.')
  # A bad data_dir is reported as for every other dataset, though nothing is
  # written there.
  _check_data_dir(data_dir)
  return _select_arrays(get_info(name), embedded.read_split(base, split))


def load_split(
    name: str,
    split: str,
    *,
    data_dir: str | os.PathLike[str] | None = None,
    use_exported: bool = True,
) -> dict[str, np.ndarray]:
  """Reads one split into memory, in the dataset's stored order.

  Embedded datasets (`EMBEDDED_DATASETS`) are built from their sources without
  TensorFlow (`gm_jax.data.embedded`): the rows their tfds builders store, in
  the same order. Other datasets are read through tfds (`gm_jax[tfds]` extra)
  unless `data_dir` holds an exported file.

  Args:
    name: dataset name, see `get_info`.
    split: a tfds split string: 'train', 'test', 'train[:90%]', ... (embedded
      datasets accept names, slices and '+', not shard slices).
    data_dir: tfds data directory (default: tfds's, `~/tensorflow_datasets`);
      tfds datasets are prepared there on first use. If it holds
      `exported/<name>.npz` (see `gm_jax.data.exported`), the split is read from
      that file, without TensorFlow.
    use_exported: False ignores an exported file (the exporter reads tfds, or
      the embedded sources).

  Returns:
    Image datasets: `{'image': uint8 [N, H, W, C] in [0, num_levels),
    'label': int32 [N]}`; text datasets: `{'tokens': int32 [N, T],
    'label': int32 [N]}`. Datasets without labels (`binarized_mnist`) have no
    'label'.

  Raises:
    ValueError: unknown dataset or split, or a `data_dir` that cannot be created
      or written (the message contains the path).
    ImportError: a dataset read through tfds where tfds or TensorFlow is not
      installed; the message names the dataset and `pip install gm_jax[tfds]`.
  """
  info = get_info(name)
  if use_exported and data_dir is not None:
    path = exported.exported_path(name, data_dir)
    if os.path.exists(path):
      return exported.read_split(path, name, split)
  if _base_name(name) in EMBEDDED_DATASETS:
    return _load_embedded(name, split, data_dir)
  builder = _prepared_builder(name, data_dir)
  tfds = _tfds(name)
  ds = builder.as_dataset(split=split, shuffle_files=False)
  ds = ds.map(_select_features(info)).batch(_READ_CHUNK)
  # tfds rejects empty splits, so there is at least one chunk.
  chunks = list(tfds.as_numpy(ds))
  return {k: np.concatenate([c[k] for c in chunks]) for k in chunks[0]}


def split_names(name: str) -> list[str]:
  """The tfds split strings `load_splits` reads for `name` (train, [validation,] test)."""
  get_info(name)
  train_split, test_split = _TRAIN_TEST_SPLITS.get(_base_name(name), ('train', 'test'))
  if _base_name(name) in _VALIDATION_SPLITS:
    return [train_split, _VALIDATION_SPLITS[_base_name(name)], test_split]
  return [train_split, test_split]


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
  train_stream: Any = None  # stream.StreamSource or None


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
    raise ValueError(
        f'validation_fraction must be in [0, 1), got {validation_fraction}.'
    )
  if input_pipeline not in INPUT_PIPELINES:
    raise ValueError(f'input_pipeline must be one of {INPUT_PIPELINES}, got '
                     f'{input_pipeline!r}.')
  names = split_names(name)
  if input_pipeline != 'memory' and _streams(name, names[0], data_dir, input_pipeline,
                                             memory_max_bytes, validation_fraction):
    return _streamed_splits(name, names, data_dir, validation_fraction)
  if len(names) == 3:  # the dataset's own validation split
    train, validation, test = (load_split(name, s, data_dir=data_dir) for s in names)
    return Splits(train=train, validation=validation, test=test, info=info)
  full = load_split(name, names[0], data_dir=data_dir)
  n = _num_examples(full)
  n_train = n - int(round(validation_fraction * n))
  return Splits(
      train={k: v[:n_train] for k, v in full.items()},
      validation={k: v[n_train:] for k, v in full.items()},
      test=load_split(name, names[-1], data_dir=data_dir),
      info=info,
  )


def _streams(name, train_split, data_dir, input_pipeline, memory_max_bytes,
             validation_fraction) -> bool:
  """Whether `load_splits` streams the training split (see its docstring)."""
  from gm_jax.data import stream  # pylint: disable=g-import-not-at-top
  if input_pipeline == 'stream':
    if '+' in train_split:
      raise ValueError(
          f"input_pipeline='stream': {name!r} trains on {train_split!r}, several tfds "
          "splits; only a single split is streamed. Use input_pipeline='memory'.")
    return True
  # 'auto'
  if _base_name(name) in EMBEDDED_DATASETS or '+' in train_split:
    return False
  if data_dir is not None and os.path.exists(exported.exported_path(name, data_dir)):
    return False
  if memory_max_bytes is None:
    return False
  rows = stream.num_examples(_prepared_builder(name, data_dir), train_split)
  rows -= int(round(validation_fraction * rows)) if len(split_names(name)) == 2 else 0
  return stream.source_nbytes(get_info(name), rows) > int(memory_max_bytes)


def _streamed_splits(name, names, data_dir, validation_fraction) -> Splits:
  from gm_jax.data import stream  # pylint: disable=g-import-not-at-top
  info = get_info(name)
  builder = _prepared_builder(name, data_dir)
  n = stream.num_examples(builder, names[0])
  if len(names) == 3:
    train_split, validation = names[0], load_split(name, names[1], data_dir=data_dir,
                                                   use_exported=False)
  else:
    n_train = n - int(round(validation_fraction * n))
    train_split = f'{names[0]}[:{n_train}]'
    validation = (load_split(name, f'{names[0]}[{n_train}:]', data_dir=data_dir,
                             use_exported=False)
                  if n_train < n else None)
    n = n_train
  sample = load_split(name, f'{names[0]}[:{min(n, TRAIN_SAMPLE)}]', data_dir=data_dir,
                      use_exported=False)
  if validation is None:  # tfds rejects an empty slice
    validation = {k: v[:0] for k, v in sample.items()}
  path = None if data_dir is None else os.path.expanduser(os.fspath(data_dir))
  return Splits(
      train=sample, validation=validation,
      test=load_split(name, names[-1], data_dir=data_dir, use_exported=False),
      info=info,
      train_stream=stream.StreamSource(name=name, split=train_split, data_dir=path,
                                       num_examples=n))


def _num_examples(arrays: Mapping[str, Any]) -> int:
  """Common leading dimension of `arrays`; errors if empty or inconsistent."""
  if not arrays:
    raise ValueError('arrays must hold at least one array.')
  lengths = {k: len(v) for k, v in arrays.items()}
  if len(set(lengths.values())) != 1:
    raise ValueError(f'arrays have different lengths: {lengths}.')
  return next(iter(lengths.values()))


def _check_batch_size(batch_size: int) -> int:
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
  n = _num_examples(arrays)
  batch_size = _check_batch_size(batch_size)
  step, seed = int(step), int(seed)
  if step < 0:
    raise ValueError(f'step must be non-negative, got {step}.')
  if seed < 0:
    raise ValueError(f'seed must be non-negative, got {seed}.')
  if shard_count < 1:
    raise ValueError(f'shard_count must be positive, got {shard_count}.')
  if not 0 <= shard_index < shard_count:
    raise ValueError(
        f'shard_index must be in [0, {shard_count}), got {shard_index}.'
    )
  if batch_size % shard_count:
    raise ValueError(
        f'batch_size ({batch_size}) must be divisible by shard_count '
        f'({shard_count}).'
    )
  if n < batch_size:
    raise ValueError(
        f'batch_size ({batch_size}) is larger than the number of examples '
        f'({n}).'
    )
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
  n = _num_examples(arrays)
  batch_size = _check_batch_size(batch_size)
  for start in range(0, n, batch_size):
    yield {k: v[start : start + batch_size] for k, v in arrays.items()}


def make_tf_dataset(
    name: str,
    split: str,
    *,
    batch_size: int,
    data_dir: str | os.PathLike[str] | None = None,
    shuffle_seed: int | None = None,
    drop_remainder: bool = True,
):
  """A batched, prefetched `tf.data.Dataset` for streaming large datasets.

  Elements are dicts with the keys and dtypes of `load_split`, batched.

  Args:
    name: dataset name, see `get_info`.
    split: tfds split string.
    batch_size: examples per batch (> 0).
    data_dir: tfds data directory.
    shuffle_seed: None reads in stored order; an int shuffles files and
      examples (reshuffled each iteration) from that seed.
    drop_remainder: drop the last, smaller batch.

  Raises:
    ImportError: TensorFlow or tfds is not installed (`pip install gm_jax[tfds]`);
      the embedded datasets read through their tfds builders here.
  """
  info = get_info(name)
  batch_size = _check_batch_size(batch_size)
  builder = _prepared_builder(name, data_dir)
  tf = _tf(name)
  tfds = _tfds(name)
  shuffle = shuffle_seed is not None
  ds = builder.as_dataset(
      split=split,
      # tfds refuses to shuffle the files of datasets stored in order (the
      # embedded ones); the example shuffle below still mixes them.
      shuffle_files=shuffle and not builder.info.disable_shuffling,
      read_config=tfds.ReadConfig(shuffle_seed=shuffle_seed),
  )
  ds = ds.map(_select_features(info), num_parallel_calls=tf.data.AUTOTUNE)
  if shuffle:
    ds = ds.shuffle(10_000, seed=shuffle_seed, reshuffle_each_iteration=True)
  return ds.batch(batch_size, drop_remainder=drop_remainder).prefetch(
      tf.data.AUTOTUNE
  )
