"""Datasets: in-memory loading, deterministic batches, streaming, offline tfds builders.

`import gm_jax.data` imports neither TensorFlow nor tfds, and loading an
embedded dataset (`digits`, `photo_patches`, `pydoc_chars`) or an exported file
never does; they are imported when a tfds dataset is first read (the optional
extra `pip install gm_jax[tfds]`). The tfds builder classes (`Digits`,
`PhotoPatches`, `PydocChars`) are loaded on first attribute access.

Modules, each one job, imported one way (`splits -> stream -> reading -> batching,
catalogue`): `catalogue` (names, `DatasetInfo`, split names), `reading` (one split into
NumPy, or a tf.data pipeline), `splits` (train/validation/test), `batching`
(deterministic batches), `stream` (a training split read per process through tf.data).
"""

from gm_jax.data.batching import batch_at_step
from gm_jax.data.batching import iterate_batches
from gm_jax.data.catalogue import DatasetInfo
from gm_jax.data.catalogue import EMBEDDED_DATASETS
from gm_jax.data.catalogue import get_info
from gm_jax.data.catalogue import split_names
from gm_jax.data.reading import load_split
from gm_jax.data.reading import make_tf_dataset
from gm_jax.data.splits import INPUT_PIPELINES
from gm_jax.data.splits import load_splits
from gm_jax.data.splits import Splits
from gm_jax.data.stream import StreamedBatches
from gm_jax.data.stream import StreamSource

_BUILDERS = ('Digits', 'PhotoPatches', 'PydocChars')


def __getattr__(name):
  # Importing the builders imports tfds and registers the datasets.
  if name in _BUILDERS:
    from gm_jax.data import _tfds

    _tfds.import_tfds()  # without tfds: an ImportError naming the [tfds] extra
    from gm_jax.data import builders

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
  'split_names',
)
