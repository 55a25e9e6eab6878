"""Reading one split of a dataset into NumPy, or as a tf.data pipeline.

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

`import_tf`, `import_tfds`, `prepared_builder` and `select_features` are the tfds
pieces the streamed input (`gm_jax.data.stream`) shares with `load_split`.
TensorFlow is imported only when a tfds dataset is read, never at
`import gm_jax.data` nor for an embedded or exported dataset.
"""

from __future__ import annotations

from collections.abc import Mapping
import contextlib
import os
import tempfile

import numpy as np

from gm_jax.data import _tfds as _tfds_lib
from gm_jax.data import checks
from gm_jax.data import embedded
from gm_jax.data import exported
from gm_jax.data._tfds import is_local as _is_local
from gm_jax.data._tfds import prepare_lock
from gm_jax.data.batching import check_batch_size
from gm_jax.data.batching import num_examples
from gm_jax.data.catalogue import base_name
from gm_jax.data.catalogue import DatasetInfo
from gm_jax.data.catalogue import EMBEDDED_DATASETS
from gm_jax.data.catalogue import EMBEDDED_VERSION
from gm_jax.data.catalogue import get_info
from gm_jax.data.catalogue import MNIST_OFFLINE

# Rows read per tf.data batch when materialising a split in memory.
_READ_CHUNK = 4096


def import_tf(name: str | None = None):
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


def import_tfds(name: str | None = None):
  """Imports tfds with this package's builders registered (`builders`, `mnist_offline`).

  Raises:
    ImportError: tfds is not installed; the message names dataset `name` and the
      `gm_jax[tfds]` extra.
  """
  tfds = _tfds_lib.import_tfds(name)
  from gm_jax.data import builders  # noqa: F401  registers the embedded tfds builders
  from gm_jax.data import mnist_offline  # noqa: F401  registers mnist_offline

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
      raise ValueError(f'data_dir {path!r} cannot be created or is not a directory: {e}') from e
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
      f'data_dir {path!r} is not writable, so the dataset cannot be prepared there: {e}'
    ) from e


# tfds retries a failed HTTP download 10 times with exponential back-off: minutes of
# waiting before a machine without network access hears why. One retry covers a blip.
DOWNLOAD_RETRIES = 1


@contextlib.contextmanager
def _few_download_retries():
  """tfds's HTTP downloads retry `DOWNLOAD_RETRIES` times inside the block (its module
  setting, restored after)."""
  from tensorflow_datasets.core.download import downloader

  saved = downloader.MAX_RETRIES
  downloader.MAX_RETRIES = DOWNLOAD_RETRIES
  try:
    yield
  finally:
    downloader.MAX_RETRIES = saved


def _builder(tfds, name: str, path: str | None):
  """`tfds.builder(name, data_dir=path)`, leaving nothing in the system's temporary folder
  (`_tfds.no_temporary_leftovers`)."""
  with _tfds_lib.no_temporary_leftovers():
    return tfds.builder(name, data_dir=path)


def prepared_builder(name: str, data_dir: str | os.PathLike[str] | None):
  """Returns a tfds builder for `name` whose data exist in `data_dir`."""
  get_info(name)  # Validates the name before any tfds work.
  import_tf(name)
  tfds = import_tfds(name)
  path = _check_data_dir(data_dir)
  builder = _builder(tfds, name, path)
  if builder.is_prepared():
    return builder
  _check_writable(path)
  with prepare_lock(builder.data_dir_root, builder.name):
    # Another process may have prepared it while this one waited for the lock.
    builder = _builder(tfds, name, path)
    if builder.is_prepared():
      return builder
    if base_name(name) in EMBEDDED_DATASETS + (MNIST_OFFLINE,):
      # Built from local files (mnist_offline: a checked wheel, see its module);
      # never look for a prepared copy on GCS. Their errors say what to do.
      builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(try_download_gcs=False)
      )
      return builder
    try:
      with _few_download_retries():
        builder.download_and_prepare()
    except Exception as e:
      cause = str(e).splitlines()[0] if str(e) else type(e).__name__
      raise RuntimeError(
        f'tfds could not download and prepare {name!r} into {builder.data_dir_root!r} '
        f'({cause}). Prepare it on a machine with network access (`tfds build {name} '
        f'--data_dir DIR`, or `python -m gm_jax.data.export --dataset {name}` for a '
        'TF-free file) and copy it there, or use an embedded dataset '
        f'({", ".join(EMBEDDED_DATASETS)}).'
      ) from e
    return builder


def select_features(info: DatasetInfo):
  """tf.data map: keeps the public features with `load_split`'s dtypes."""
  tf = import_tf()

  def select(example):
    out = {}
    if info.kind == 'image':
      out['image'] = tf.ensure_shape(example['image'], info.shape)
    else:
      out['tokens'] = tf.cast(tf.ensure_shape(example['tokens'], info.shape), tf.int32)
    if info.num_classes is not None:
      out['label'] = tf.cast(example['label'], tf.int32)
    return out

  return select


def _select_arrays(info: DatasetInfo, arrays: Mapping[str, np.ndarray]):
  """`_select_features` on NumPy arrays: the public features, `load_split`'s dtypes."""
  n = num_examples(arrays)
  if info.kind == 'image':
    out = {'image': np.asarray(arrays['image'], np.uint8)}
  else:
    out = {'tokens': np.asarray(arrays['tokens']).astype(np.int32)}
  data = next(iter(out.values()))
  if data.shape != (n,) + info.shape:
    raise ValueError(f'{info.name}: examples of shape {data.shape[1:]}, expected {info.shape}.')
  if info.num_classes is not None:
    out['label'] = np.asarray(arrays['label']).astype(np.int32)
  return out


def _load_embedded(
  name: str, split: str, data_dir: str | os.PathLike[str] | None
) -> dict[str, np.ndarray]:
  """`load_split` of an embedded dataset, built from its source without tfds."""
  base, _, version = name.partition(':')
  if version and version != EMBEDDED_VERSION:
    raise ValueError(f'Dataset {name!r}: {base} has only version {EMBEDDED_VERSION}.')
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
    ValueError: unknown dataset or split, a `data_dir` that cannot be created
      or written (the message contains the path), or arrays that break the dataset's
      declared dtype, shape or value range (`gm_jax.data.checks`; the message names the
      source, split, field and value).
    ImportError: a dataset read through tfds where tfds or TensorFlow is not
      installed; the message names the dataset and `pip install gm_jax[tfds]`.
  """
  info = get_info(name)
  if use_exported and data_dir is not None:
    path = exported.exported_path(name, data_dir)
    if os.path.exists(path):
      return exported.read_split(path, name, split)
  if base_name(name) in EMBEDDED_DATASETS:
    return _load_embedded(name, split, data_dir)
  builder = prepared_builder(name, data_dir)
  tfds = import_tfds(name)
  ds = builder.as_dataset(split=split, shuffle_files=False)
  ds = ds.map(select_features(info)).batch(_READ_CHUNK)
  # tfds rejects empty splits, so there is at least one chunk.
  chunks = list(tfds.as_numpy(ds))
  arrays = {k: np.concatenate([c[k] for c in chunks]) for k in chunks[0]}
  # Checked once where the data enter (levels, classes, shapes): a prepared copy of other
  # data under this name would otherwise train silently on out-of-range values.
  checks.check_arrays(arrays, info, source=f'tfds {name!r} in {builder.data_dir}', split=split)
  return arrays


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
  batch_size = check_batch_size(batch_size)
  builder = prepared_builder(name, data_dir)
  tf = import_tf(name)
  tfds = import_tfds(name)
  shuffle = shuffle_seed is not None
  ds = builder.as_dataset(
    split=split,
    # tfds refuses to shuffle the files of datasets stored in order (the
    # embedded ones); the example shuffle below still mixes them.
    shuffle_files=shuffle and not builder.info.disable_shuffling,
    read_config=tfds.ReadConfig(shuffle_seed=shuffle_seed),
  )
  ds = ds.map(select_features(info), num_parallel_calls=tf.data.AUTOTUNE)
  if shuffle:
    ds = ds.shuffle(10_000, seed=shuffle_seed, reshuffle_each_iteration=True)
  return ds.batch(batch_size, drop_remainder=drop_remainder).prefetch(tf.data.AUTOTUNE)
