"""Datasets: offline tfds builders, in-memory loading and deterministic batches.

`import gm_jax.data` imports neither TensorFlow nor tfds; they are imported
when data is first read. The builder classes (`Digits`, `PhotoPatches`,
`PydocChars`) are loaded on first attribute access.
"""
from gm_jax.data.pipeline import batch_at_step
from gm_jax.data.pipeline import DatasetInfo
from gm_jax.data.pipeline import EMBEDDED_DATASETS
from gm_jax.data.pipeline import get_info
from gm_jax.data.pipeline import iterate_batches
from gm_jax.data.pipeline import load_split
from gm_jax.data.pipeline import load_splits
from gm_jax.data.pipeline import make_tf_dataset
from gm_jax.data.pipeline import Splits

_BUILDERS = ("Digits", "PhotoPatches", "PydocChars")


def __getattr__(name):
  # Importing the builders imports tfds and registers the datasets.
  if name in _BUILDERS:
    from gm_jax.data import builders  # pylint: disable=g-import-not-at-top

    return getattr(builders, name)
  raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = (
    "DatasetInfo",
    "Digits",
    "EMBEDDED_DATASETS",
    "PhotoPatches",
    "PydocChars",
    "Splits",
    "batch_at_step",
    "get_info",
    "iterate_batches",
    "load_split",
    "load_splits",
    "make_tf_dataset",
)
