"""Datasets: in-memory loading, deterministic batches, streaming, offline tfds builders.

`import gm_jax.data` imports neither TensorFlow nor tfds, and loading an
embedded dataset (`digits`, `photo_patches`, `pydoc_chars`) or an exported file
never does; they are imported when a tfds dataset is first read (the optional
extra `pip install gm_jax[tfds]`). The tfds builder classes (`Digits`,
`PhotoPatches`, `PydocChars`) are loaded on first attribute access.
"""
from gm_jax.data.pipeline import batch_at_step
from gm_jax.data.pipeline import DatasetInfo
from gm_jax.data.pipeline import EMBEDDED_DATASETS
from gm_jax.data.pipeline import get_info
from gm_jax.data.pipeline import INPUT_PIPELINES
from gm_jax.data.pipeline import iterate_batches
from gm_jax.data.pipeline import load_split
from gm_jax.data.pipeline import load_splits
from gm_jax.data.pipeline import make_tf_dataset
from gm_jax.data.pipeline import Splits
from gm_jax.data.stream import StreamedBatches
from gm_jax.data.stream import StreamSource

_BUILDERS = ('Digits', 'PhotoPatches', 'PydocChars')


def __getattr__(name):
  # Importing the builders imports tfds and registers the datasets.
  if name in _BUILDERS:
    from gm_jax.data import _tfds  # pylint: disable=g-import-not-at-top

    _tfds.import_tfds()  # without tfds: an ImportError naming the [tfds] extra
    from gm_jax.data import builders  # pylint: disable=g-import-not-at-top

    return getattr(builders, name)
  raise AttributeError(f'module {__name__!r} has no attribute {name!r}')


__all__ = (
    'DatasetInfo',
    'Digits',
    'EMBEDDED_DATASETS',
    'INPUT_PIPELINES',
    'PhotoPatches',
    'PydocChars',
    'Splits',
    'StreamSource',
    'StreamedBatches',
    'batch_at_step',
    'get_info',
    'iterate_batches',
    'load_split',
    'load_splits',
    'make_tf_dataset',
)
