"""Offline tfds builders for the real data that ships with the environment.

Three small datasets need no network: their sources are scikit-learn's bundled
files and the Python standard library. Importing this module registers them
with tfds under the names `digits`, `photo_patches` and `pydoc_chars`, so
`tfds.builder('digits', data_dir=...)` works like any catalogue dataset. They
are written into `data_dir` by `builder.download_and_prepare()`; nothing is
downloaded (their `_split_generators` never use `dl_manager`).

Examples are written in generation order (`disable_shuffling=True`), so split
contents and order are exactly those of `gm_jax.data.embedded.examples`, the one
source of truth that `load_split` also reads directly (without tfds).
"""

from __future__ import annotations

from collections.abc import Iterator

from etils import epath
import numpy as np
import tensorflow_datasets as tfds

from gm_jax.data import embedded
from gm_jax.data._ordered_builder import OrderedBuilder

# The sources, split rules and constants live in `gm_jax.data.embedded`, which also
# serves them to `load_split` without tfds; re-exported here for existing callers.
from gm_jax.data.embedded import DIGITS_NUM_LEVELS  # noqa: F401  re-exported
from gm_jax.data.embedded import DIGITS_NUM_TEST
from gm_jax.data.embedded import DIGITS_NUM_TRAIN
from gm_jax.data.embedded import PHOTO_NAMES
from gm_jax.data.embedded import photo_patch_grid  # noqa: F401  re-exported
from gm_jax.data.embedded import PHOTO_PATCH_SIZE
from gm_jax.data.embedded import PHOTO_STRIDE
from gm_jax.data.embedded import PHOTO_TEST_COLUMNS
from gm_jax.data.embedded import PYDOC_TEST_EVERY
from gm_jax.data.embedded import pydoc_topic_split  # noqa: F401  re-exported
from gm_jax.data.embedded import pydoc_topics
from gm_jax.data.embedded import PYDOC_WINDOW

# tfds derives `code_path` through `importlib_resources`, which tfds 4.9.10
# imports but does not require on Python >= 3.9
# (github.com/tensorflow/datasets/issues/11212). Setting it directly keeps
# preparation independent of that package; tfds only uses it to look for a
# (here absent) `checksums.tsv` next to this file.
_CODE_PATH = epath.Path(__file__)


def _rows(arrays: dict[str, np.ndarray]) -> Iterator[dict[str, np.ndarray]]:
  """Splits `{feature: [N, ...]}` into N examples `{feature: [...]}`, in order."""
  for i in range(len(next(iter(arrays.values())))):
    yield {k: v[i] for k, v in arrays.items()}


class Digits(OrderedBuilder):
  """scikit-learn's 8x8 handwritten digits (UCI optdigits test set), 17 levels."""

  code_path = _CODE_PATH
  HOMEPAGE = 'https://archive.ics.uci.edu/dataset/80'

  def description(self) -> str:
    return (
      '1,797 8x8 grey images of handwritten digits with 17 grey levels '
      '(0..16), from sklearn.datasets.load_digits(). train = the first '
      f"{DIGITS_NUM_TRAIN} in scikit-learn's order, test = the last "
      f'{DIGITS_NUM_TEST}.'
    )

  def features(self) -> dict:
    return {
      'image': tfds.features.Image(shape=(8, 8, 1), dtype=np.uint8),
      'label': tfds.features.ClassLabel(num_classes=10),
    }

  def _split_generators(self, dl_manager):
    del dl_manager  # Bundled with scikit-learn.
    return {split: self._generate_examples(split) for split in embedded.SPLITS}

  def _generate_examples(self, split: str) -> Iterator[tuple[int, dict]]:
    # Key = index in load_digits(); unique across splits.
    offset = 0 if split == 'train' else DIGITS_NUM_TRAIN
    for i, example in enumerate(_rows(embedded.digits(split))):
      yield offset + i, example


class PhotoPatches(OrderedBuilder):
  """32x32 RGB crops of scikit-learn's two sample photographs."""

  code_path = _CODE_PATH
  HOMEPAGE = (
    'https://scikit-learn.org/stable/modules/generated/sklearn.datasets.load_sample_images.html'
  )

  def description(self) -> str:
    return (
      f'{PHOTO_PATCH_SIZE}x{PHOTO_PATCH_SIZE} RGB crops (stride '
      f'{PHOTO_STRIDE}) of sklearn.datasets.load_sample_images() '
      '(china.jpg, flower.jpg). label = source photograph. Test crops '
      f'come from the right-most {PHOTO_TEST_COLUMNS} columns of each '
      'photograph, train crops from the rest: the splits share no pixel.'
      ' `y`, `x` = top-left corner of the crop.'
    )

  def features(self) -> dict:
    return {
      'image': tfds.features.Image(shape=(PHOTO_PATCH_SIZE, PHOTO_PATCH_SIZE, 3), dtype=np.uint8),
      'label': tfds.features.ClassLabel(names=list(PHOTO_NAMES)),
      'y': tfds.features.Scalar(dtype=np.int32),
      'x': tfds.features.Scalar(dtype=np.int32),
    }

  def _split_generators(self, dl_manager):
    del dl_manager  # Bundled with scikit-learn.
    return {split: self._generate_examples(split) for split in embedded.SPLITS}

  def _generate_examples(self, split: str) -> Iterator[tuple[str, dict]]:
    for example in _rows(embedded.photo_patches(split)):
      name = PHOTO_NAMES[example['label']]
      yield f'{name}_{example["y"]}_{example["x"]}', example


class PydocChars(OrderedBuilder):
  """UTF-8 byte windows of the Python reference topics in `pydoc_data`."""

  code_path = _CODE_PATH
  HOMEPAGE = 'https://docs.python.org/3/library/pydoc.html'
  SUPERVISED_KEYS = None

  def description(self) -> str:
    return (
      'Byte-level text (vocabulary 256) from pydoc_data.topics.topics. '
      f"Each topic's UTF-8 text is cut into non-overlapping windows of "
      f'{PYDOC_WINDOW} bytes (the tail is dropped). Topics are sorted by '
      f'key; every {PYDOC_TEST_EVERY}th goes to test, the rest to train. '
      'label = topic index; `window` = position of the window within '
      'its topic.'
    )

  def features(self) -> dict:
    return {
      'tokens': tfds.features.Tensor(shape=(PYDOC_WINDOW,), dtype=np.uint8),
      'label': tfds.features.ClassLabel(names=pydoc_topics()),
      'window': tfds.features.Scalar(dtype=np.int32),
    }

  def _split_generators(self, dl_manager):
    del dl_manager  # Ships with Python.
    return {split: self._generate_examples(split) for split in embedded.SPLITS}

  def _generate_examples(self, split: str) -> Iterator[tuple[str, dict]]:
    names = pydoc_topics()
    for example in _rows(embedded.pydoc_chars(split)):
      yield f'{names[example["label"]]}_{example["window"]}', example
