"""tfds itself, imported with this project's work-around, and the preparation lock.

The lowest layer of `gm_jax.data`: the builders (`builders`, `mnist_offline`) and
`reading` import it; it imports none of them, so the modules depend one way:
`reading -> {builders, mnist_offline, exported} -> _tfds`.
"""

from __future__ import annotations

from collections.abc import Iterator
import contextlib
import os
import tempfile

try:
  import fcntl
except ImportError:  # Windows: preparing is not serialised there
  fcntl = None  # type: ignore[assignment]  # no fcntl on Windows; users check for None


# What to install for tfds datasets; `setup.cfg` declares the extra.
TFDS_EXTRA = 'pip install gm_jax[tfds]'


def _missing(module: str, dataset: str | None, cause: ImportError) -> ImportError:
  what = f'Dataset {dataset!r} is read' if dataset else 'This is done'
  return ImportError(
    f'{what} through tensorflow_datasets, but {module} cannot be imported '
    f'({cause}). Install the optional extra: {TFDS_EXTRA}. The embedded '
    'datasets (digits, photo_patches, pydoc_chars) and exported files '
    '(DATA_DIR/exported/<name>.npz, see gm_jax.data.exported) need neither.'
  )


def import_tf(dataset: str | None = None):
  """Imports TensorFlow; a missing install names `dataset` and the `[tfds]` extra.

  Raises:
    ImportError: TensorFlow is not installed (the message says `TFDS_EXTRA`).
  """
  try:
    import tensorflow as tf
  except ImportError as e:
    raise _missing('tensorflow', dataset, e) from e
  return tf


def import_tfds(dataset: str | None = None):
  """Imports `tensorflow_datasets` (with the `importlib_resources` shim it needs).

  Args:
    dataset: the dataset it is imported for, named in the error.

  Raises:
    ImportError: tfds is not installed (the message says `TFDS_EXTRA`).
  """
  try:
    import importlib_resources  # noqa: F401  only whether it imports matters
  except ImportError:
    # tfds 4.9.10 uses `importlib_resources.abc` when preparing any dataset but
    # only requires the package on Python < 3.9
    # (github.com/tensorflow/datasets/issues/11212). The standard library
    # module provides the same `abc.Traversable`.
    import importlib.resources
    import sys

    sys.modules.setdefault('importlib_resources', importlib.resources)
  try:
    import tensorflow_datasets as tfds
  except ImportError as e:
    raise _missing('tensorflow_datasets', dataset, e) from e
  return tfds


def is_local(path: str) -> bool:
  return '://' not in path


@contextlib.contextmanager
def prepare_lock(data_dir_root: str, name: str) -> Iterator[None]:
  """Serialises preparing dataset `name` under a local `data_dir_root`.

  Two processes (or threads) preparing the same dataset at once would both write a
  tfds `incomplete.*` folder and the second rename onto the finished version fails
  (`FileExistsError`). An exclusive `fcntl` lock on
  `data_dir_root/.<name>.prepare.lock` makes the second wait, after which it finds the
  data prepared. No lock on remote paths (gs://...) or without `fcntl`.
  """
  root = os.fspath(data_dir_root)
  if fcntl is None or not is_local(root):
    yield
    return
  os.makedirs(root, exist_ok=True)
  with open(os.path.join(root, f'.{name}.prepare.lock'), 'a') as f:
    fcntl.flock(f, fcntl.LOCK_EX)
    try:
      yield
    finally:
      fcntl.flock(f, fcntl.LOCK_UN)


@contextlib.contextmanager
def no_temporary_leftovers() -> Iterator[None]:
  """Constructs tfds builders inside the block without leaving folders in the system's
  temporary folder.

  For a dataset not prepared yet, tfds 4.9's `DatasetInfo.initialize_from_bucket` makes a
  `tempfile.mkdtemp('tfds')` for metadata it would copy from GCS, and never removes it: an
  empty `/tmp/tmp*tfds` folder per builder (about 200 per run of this project's tests).
  Inside the block `tempfile` makes its folders in one that is removed after it.
  """
  saved = tempfile.tempdir
  with tempfile.TemporaryDirectory(prefix='gm_jax_tfds_builder_') as scratch:
    tempfile.tempdir = scratch
    try:
      yield
    finally:
      tempfile.tempdir = saved
