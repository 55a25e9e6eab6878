"""tfds itself, imported with this project's work-around, and the preparation lock.

The lowest layer of `gm_jax.data`: the builders (`builders`, `mnist_offline`) and the
pipeline import it; it imports none of them, so the modules depend one way:
`pipeline -> {builders, mnist_offline, exported} -> _tfds`.
"""
from __future__ import annotations

from collections.abc import Iterator
import contextlib
import os

try:
  import fcntl
except ImportError:  # Windows: preparing is not serialised there
  fcntl = None


def import_tfds():
  """Imports `tensorflow_datasets` (with the `importlib_resources` shim it needs)."""
  try:
    import importlib_resources  # pylint: disable=g-import-not-at-top,unused-import
  except ImportError:
    # tfds 4.9.10 uses `importlib_resources.abc` when preparing any dataset but
    # only requires the package on Python < 3.9
    # (github.com/tensorflow/datasets/issues/11212). The standard library
    # module provides the same `abc.Traversable`.
    import importlib.resources  # pylint: disable=g-import-not-at-top
    import sys  # pylint: disable=g-import-not-at-top

    sys.modules.setdefault("importlib_resources", importlib.resources)
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  return tfds


def is_local(path: str) -> bool:
  return "://" not in path


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
  with open(os.path.join(root, f".{name}.prepare.lock"), "a") as f:
    fcntl.flock(f, fcntl.LOCK_EX)
    try:
      yield
    finally:
      fcntl.flock(f, fcntl.LOCK_UN)
