"""Offline tfds builders for the real data that ships with the environment.

Three small datasets need no network: their sources are scikit-learn's bundled
files and the Python standard library. Importing this module registers them
with tfds under the names `digits`, `photo_patches` and `pydoc_chars`, so
`tfds.builder('digits', data_dir=...)` works like any catalogue dataset. They
are written into `data_dir` by `builder.download_and_prepare()`; nothing is
downloaded (their `_split_generators` never use `dl_manager`).

Examples are written in generation order (`disable_shuffling=True`), so split
contents and order are exactly those documented below.
"""
from __future__ import annotations

from collections.abc import Iterator

from etils import epath
import numpy as np
import tensorflow_datasets as tfds

from gm_jax.data._ordered_builder import OrderedBuilder

# `digits`: scikit-learn's order; train is the head, test the tail.
DIGITS_NUM_TRAIN = 1437
DIGITS_NUM_TEST = 360
DIGITS_NUM_LEVELS = 17  # Grey levels 0..16.

# `photo_patches`: crops on a regular grid. Test crops come from the right-most
# `PHOTO_TEST_COLUMNS` columns of each photograph, train crops from the columns
# to their left; a crop never straddles the boundary, so the splits share no
# pixel.
PHOTO_NAMES = ("china", "flower")
PHOTO_PATCH_SIZE = 32
PHOTO_STRIDE = 16
PHOTO_TEST_COLUMNS = 128  # 20% of the 640 columns.

# `pydoc_chars`: byte windows of each pydoc topic; topic `i` (in sorted key
# order) goes to test when `i % PYDOC_TEST_EVERY == PYDOC_TEST_EVERY - 1`.
PYDOC_WINDOW = 128
PYDOC_TEST_EVERY = 10

# tfds derives `code_path` through `importlib_resources`, which tfds 4.9.10
# imports but does not require on Python >= 3.9
# (github.com/tensorflow/datasets/issues/11212). Setting it directly keeps
# preparation independent of that package; tfds only uses it to look for a
# (here absent) `checksums.tsv` next to this file.
_CODE_PATH = epath.Path(__file__)


def _load_photos() -> dict[str, np.ndarray]:
  """Returns {name: uint8 [H, W, 3]} for scikit-learn's sample photographs."""
  from sklearn import datasets  # pylint: disable=g-import-not-at-top

  photos = datasets.load_sample_images()
  by_name = {}
  for filename, image in zip(photos.filenames, photos.images):
    name = filename.replace("\\", "/").rsplit("/", 1)[-1].split(".")[0]
    by_name[name] = np.asarray(image, dtype=np.uint8)
  return {name: by_name[name] for name in PHOTO_NAMES}


def photo_patch_grid(height: int, width: int, split: str) -> list[tuple[int, int]]:
  """Top-left corners `(y, x)` of the `split` crops of an `[height, width]` photo.

  Train crops lie in columns `[0, width - PHOTO_TEST_COLUMNS)`, test crops in
  `[width - PHOTO_TEST_COLUMNS, width)`; both use a stride of `PHOTO_STRIDE`.
  """
  boundary = width - PHOTO_TEST_COLUMNS
  if split == "train":
    x_lo, x_hi = 0, boundary
  elif split == "test":
    x_lo, x_hi = boundary, width
  else:
    raise ValueError(f"split must be 'train' or 'test', got {split!r}.")
  size = PHOTO_PATCH_SIZE
  ys = range(0, height - size + 1, PHOTO_STRIDE)
  xs = range(x_lo, x_hi - size + 1, PHOTO_STRIDE)
  return [(y, x) for y in ys for x in xs]


def pydoc_topics() -> list[str]:
  """Sorted topic names of `pydoc_data.topics.topics`; index = `label`."""
  from pydoc_data import topics  # pylint: disable=g-import-not-at-top

  return sorted(topics.topics)


def pydoc_topic_split(index: int) -> str:
  """The split ('train' or 'test') that topic number `index` belongs to."""
  return "test" if index % PYDOC_TEST_EVERY == PYDOC_TEST_EVERY - 1 else "train"


class Digits(OrderedBuilder):
  """scikit-learn's 8x8 handwritten digits (UCI optdigits test set), 17 levels."""

  code_path = _CODE_PATH
  HOMEPAGE = "https://archive.ics.uci.edu/dataset/80"

  def description(self) -> str:
    return ("1,797 8x8 grey images of handwritten digits with 17 grey levels "
            "(0..16), from sklearn.datasets.load_digits(). train = the first "
            f"{DIGITS_NUM_TRAIN} in scikit-learn's order, test = the last "
            f"{DIGITS_NUM_TEST}.")

  def features(self) -> dict:
    return {"image": tfds.features.Image(shape=(8, 8, 1), dtype=np.uint8),
            "label": tfds.features.ClassLabel(num_classes=10)}

  def _split_generators(self, dl_manager):
    del dl_manager  # Bundled with scikit-learn.
    from sklearn import datasets  # pylint: disable=g-import-not-at-top

    digits = datasets.load_digits()
    images = digits.images.astype(np.uint8)[..., None]
    labels = digits.target.astype(np.int64)
    if len(images) != DIGITS_NUM_TRAIN + DIGITS_NUM_TEST:
      raise ValueError(
          f"load_digits() returned {len(images)} images, expected "
          f"{DIGITS_NUM_TRAIN + DIGITS_NUM_TEST}."
      )
    train = slice(0, DIGITS_NUM_TRAIN)
    test = slice(DIGITS_NUM_TRAIN, None)
    return {
        "train": self._generate_examples(images[train], labels[train], 0),
        "test": self._generate_examples(
            images[test], labels[test], DIGITS_NUM_TRAIN
        ),
    }

  def _generate_examples(
      self, images: np.ndarray, labels: np.ndarray, offset: int
  ) -> Iterator[tuple[int, dict]]:
    for i, (image, label) in enumerate(zip(images, labels)):
      # Key = index in load_digits(); unique across splits.
      yield offset + i, {"image": image, "label": label}


class PhotoPatches(OrderedBuilder):
  """32x32 RGB crops of scikit-learn's two sample photographs."""

  code_path = _CODE_PATH
  HOMEPAGE = ("https://scikit-learn.org/stable/modules/generated/"
              "sklearn.datasets.load_sample_images.html")

  def description(self) -> str:
    return (f"{PHOTO_PATCH_SIZE}x{PHOTO_PATCH_SIZE} RGB crops (stride "
            f"{PHOTO_STRIDE}) of sklearn.datasets.load_sample_images() "
            "(china.jpg, flower.jpg). label = source photograph. Test crops "
            f"come from the right-most {PHOTO_TEST_COLUMNS} columns of each "
            "photograph, train crops from the rest: the splits share no pixel."
            " `y`, `x` = top-left corner of the crop.")

  def features(self) -> dict:
    return {"image": tfds.features.Image(shape=(PHOTO_PATCH_SIZE, PHOTO_PATCH_SIZE, 3),
                                         dtype=np.uint8),
            "label": tfds.features.ClassLabel(names=list(PHOTO_NAMES)),
            "y": tfds.features.Scalar(dtype=np.int32),
            "x": tfds.features.Scalar(dtype=np.int32)}

  def _split_generators(self, dl_manager):
    del dl_manager  # Bundled with scikit-learn.
    photos = _load_photos()
    return {
        split: self._generate_examples(photos, split)
        for split in ("train", "test")
    }

  def _generate_examples(
      self, photos: dict[str, np.ndarray], split: str
  ) -> Iterator[tuple[str, dict]]:
    size = PHOTO_PATCH_SIZE
    for label, name in enumerate(PHOTO_NAMES):
      photo = photos[name]
      for y, x in photo_patch_grid(photo.shape[0], photo.shape[1], split):
        yield f"{name}_{y}_{x}", {
            "image": photo[y : y + size, x : x + size],
            "label": label,
            "y": y,
            "x": x,
        }


class PydocChars(OrderedBuilder):
  """UTF-8 byte windows of the Python reference topics in `pydoc_data`."""

  code_path = _CODE_PATH
  HOMEPAGE = "https://docs.python.org/3/library/pydoc.html"
  SUPERVISED_KEYS = None

  def description(self) -> str:
    return ("Byte-level text (vocabulary 256) from pydoc_data.topics.topics. "
            f"Each topic's UTF-8 text is cut into non-overlapping windows of "
            f"{PYDOC_WINDOW} bytes (the tail is dropped). Topics are sorted by "
            f"key; every {PYDOC_TEST_EVERY}th goes to test, the rest to train. "
            "label = topic index; `window` = position of the window within "
            "its topic.")

  def features(self) -> dict:
    return {"tokens": tfds.features.Tensor(shape=(PYDOC_WINDOW,), dtype=np.uint8),
            "label": tfds.features.ClassLabel(names=pydoc_topics()),
            "window": tfds.features.Scalar(dtype=np.int32)}

  def _split_generators(self, dl_manager):
    del dl_manager  # Ships with Python.
    return {
        split: self._generate_examples(split) for split in ("train", "test")
    }

  def _generate_examples(self, split: str) -> Iterator[tuple[str, dict]]:
    from pydoc_data import topics  # pylint: disable=g-import-not-at-top

    for label, topic in enumerate(pydoc_topics()):
      if pydoc_topic_split(label) != split:
        continue
      data = np.frombuffer(topics.topics[topic].encode("utf-8"), np.uint8)
      num_windows = len(data) // PYDOC_WINDOW
      windows = data[: num_windows * PYDOC_WINDOW].reshape(-1, PYDOC_WINDOW)
      for w, tokens in enumerate(windows):
        yield f"{topic}_{w}", {"tokens": tokens, "label": label, "window": w}
