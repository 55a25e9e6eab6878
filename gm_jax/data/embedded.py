"""The embedded datasets as NumPy arrays, built from their sources without TensorFlow.

`digits`, `photo_patches` and `pydoc_chars` need no network: their sources are
scikit-learn's bundled files and the Python standard library. This module is the one
place that turns those sources into examples. `examples(name, split)` returns every
feature of a split as arrays, in the order the examples are defined:

  * the tfds builders (`gm_jax.data.builders`, for `tfds.load('digits')`) write
    exactly these rows, in this order, into their tfds files;
  * `gm_jax.data.load_split` reads them straight from here, so the embedded data
    train with the core install only (no TensorFlow, no tfds).

`read_split` also understands the tfds split strings `load_split` accepts
('train', 'test[:100]', 'train[:90%]', 'train+test', 'all'), with tfds's rounding.
"""

from __future__ import annotations

from collections.abc import Callable
import functools
import re

import numpy as np

NAMES = ('digits', 'photo_patches', 'pydoc_chars')
SPLITS = ('train', 'test')

# `digits`: scikit-learn's order; train is the head, test the tail.
DIGITS_NUM_TRAIN = 1437
DIGITS_NUM_TEST = 360
DIGITS_NUM_LEVELS = 17  # Grey levels 0..16.

# `photo_patches`: crops on a regular grid. Test crops come from the right-most
# `PHOTO_TEST_COLUMNS` columns of each photograph, train crops from the columns
# to their left; a crop never straddles the boundary, so the splits share no
# pixel.
PHOTO_NAMES = ('china', 'flower')
PHOTO_PATCH_SIZE = 32
PHOTO_STRIDE = 16
PHOTO_TEST_COLUMNS = 128  # 20% of the 640 columns.

# `pydoc_chars`: byte windows of each pydoc topic; topic `i` (in sorted key
# order) goes to test when `i % PYDOC_TEST_EVERY == PYDOC_TEST_EVERY - 1`.
PYDOC_WINDOW = 128
PYDOC_TEST_EVERY = 10


def _check_split(split: str) -> None:
  if split not in SPLITS:
    raise ValueError(f"split must be 'train' or 'test', got {split!r}.")


def digits(split: str) -> dict[str, np.ndarray]:
  """scikit-learn's 8x8 digits: train = the first 1437, test = the last 360.

  Returns:
    `{'image': uint8 [N, 8, 8, 1] in [0, 17), 'label': int64 [N]}` in
    `sklearn.datasets.load_digits()` order.
  """
  _check_split(split)
  images, labels = _digits_source()
  rows = slice(0, DIGITS_NUM_TRAIN) if split == 'train' else slice(DIGITS_NUM_TRAIN, None)
  return {'image': images[rows].copy(), 'label': labels[rows].copy()}


@functools.cache
def _digits_source() -> tuple[np.ndarray, np.ndarray]:
  """`load_digits()` parsed once per process (it decompresses and parses a CSV: ~0.2 s a call,
  which every run on the digits paid twice); callers get copies."""
  from sklearn import datasets

  source = datasets.load_digits()
  images = source.images.astype(np.uint8)[..., None]
  labels = source.target.astype(np.int64)
  if len(images) != DIGITS_NUM_TRAIN + DIGITS_NUM_TEST:
    raise ValueError(
      f'load_digits() returned {len(images)} images, expected {DIGITS_NUM_TRAIN + DIGITS_NUM_TEST}.'
    )
  images.flags.writeable = False
  labels.flags.writeable = False
  return images, labels


@functools.cache
def _load_photos() -> dict[str, np.ndarray]:
  """Returns {name: uint8 [H, W, 3]} for scikit-learn's sample photographs (decoded once per
  process, read-only)."""
  from sklearn import datasets

  photos = datasets.load_sample_images()
  by_name = {}
  for filename, image in zip(photos.filenames, photos.images):
    name = filename.replace('\\', '/').rsplit('/', 1)[-1].split('.')[0]
    by_name[name] = np.asarray(image, dtype=np.uint8)
    by_name[name].flags.writeable = False
  return {name: by_name[name] for name in PHOTO_NAMES}


def photo_patch_grid(height: int, width: int, split: str) -> list[tuple[int, int]]:
  """Top-left corners `(y, x)` of the `split` crops of an `[height, width]` photo.

  Train crops lie in columns `[0, width - PHOTO_TEST_COLUMNS)`, test crops in
  `[width - PHOTO_TEST_COLUMNS, width)`; both use a stride of `PHOTO_STRIDE`.
  """
  _check_split(split)
  boundary = width - PHOTO_TEST_COLUMNS
  x_lo, x_hi = (0, boundary) if split == 'train' else (boundary, width)
  size = PHOTO_PATCH_SIZE
  ys = range(0, height - size + 1, PHOTO_STRIDE)
  xs = range(x_lo, x_hi - size + 1, PHOTO_STRIDE)
  return [(y, x) for y in ys for x in xs]


def photo_patches(split: str) -> dict[str, np.ndarray]:
  """32x32 crops of china.jpg (label 0), then flower.jpg (label 1), row-major.

  Returns:
    `{'image': uint8 [N, 32, 32, 3], 'label': int64 [N], 'y': int32 [N],
    'x': int32 [N]}`; `(y, x)` is the crop's top-left corner in its photograph.
  """
  _check_split(split)
  size = PHOTO_PATCH_SIZE
  images, labels, corners = [], [], []
  for label, photo in enumerate(_load_photos().values()):
    grid = photo_patch_grid(photo.shape[0], photo.shape[1], split)
    images += [photo[y : y + size, x : x + size] for y, x in grid]
    labels += [label] * len(grid)
    corners += grid
  yx = np.asarray(corners, np.int32).reshape(-1, 2)
  return {
    'image': np.stack(images),
    'label': np.asarray(labels, np.int64),
    'y': yx[:, 0],
    'x': yx[:, 1],
  }


def pydoc_topics() -> list[str]:
  """Sorted topic names of `pydoc_data.topics.topics`; index = `label`."""
  from pydoc_data import topics

  return sorted(topics.topics)


def pydoc_topic_split(index: int) -> str:
  """The split ('train' or 'test') that topic number `index` belongs to."""
  return 'test' if index % PYDOC_TEST_EVERY == PYDOC_TEST_EVERY - 1 else 'train'


def pydoc_chars(split: str) -> dict[str, np.ndarray]:
  """Non-overlapping 128-byte windows of each topic's UTF-8 text (tail dropped).

  Returns:
    `{'tokens': uint8 [N, 128], 'label': int64 [N] (topic index),
    'window': int32 [N] (window index within its topic)}`, topic by topic in
    sorted order.
  """
  _check_split(split)
  from pydoc_data import topics

  tokens, labels, windows = [], [], []
  for label, topic in enumerate(pydoc_topics()):
    if pydoc_topic_split(label) != split:
      continue
    data = np.frombuffer(topics.topics[topic].encode('utf-8'), np.uint8)
    num_windows = len(data) // PYDOC_WINDOW
    tokens.append(data[: num_windows * PYDOC_WINDOW].reshape(-1, PYDOC_WINDOW))
    labels.append(np.full(num_windows, label, np.int64))
    windows.append(np.arange(num_windows, dtype=np.int32))
  return {
    'tokens': np.concatenate(tokens),
    'label': np.concatenate(labels),
    'window': np.concatenate(windows),
  }


_GENERATORS: dict[str, Callable[[str], dict[str, np.ndarray]]] = {
  'digits': digits,
  'photo_patches': photo_patches,
  'pydoc_chars': pydoc_chars,
}


def examples(name: str, split: str) -> dict[str, np.ndarray]:
  """Every feature of split 'train' or 'test' of embedded dataset `name`, in order.

  Args:
    name: 'digits', 'photo_patches' or 'pydoc_chars'.
    split: 'train' or 'test'.

  Returns:
    `{feature: [N, ...]}` with the dtypes of the tfds features (see `digits`,
    `photo_patches`, `pydoc_chars`); freshly built arrays the caller may modify.
  """
  if name not in _GENERATORS:
    raise ValueError(f'{name!r} is not an embedded dataset ({", ".join(NAMES)}).')
  return _GENERATORS[name](split)


# tfds's split grammar (tensorflow_datasets/core/splits.py): `name[from:to]`, each
# bound an integer (negative counts from the end) or a percentage, terms joined by '+'.
_TERM_RE = re.compile(r'^(?P<split>[\w-]+)(\[(?P<selector>[\d\w%:.-]+)\])?$')
_BOUND_RE = re.compile(r'^((?P<value>-?[\d_.]+)(?P<unit>%)?)?$')


def _rows(term: str, get: Callable[[str], dict[str, np.ndarray]], spec: str) -> tuple[str, slice]:
  """`(split, rows)` of one term of a split string, bounds resolved as tfds does."""

  def error(why):
    return ValueError(
      f'Unsupported split {spec!r} ({why}); embedded datasets accept '
      "'train', 'test', 'all', slices such as 'train[:100]', "
      "'train[-10%:]', and sums such as 'train+test'."
    )

  match = _TERM_RE.match(term)
  if not match:
    raise error(f'cannot parse {term!r}')
  split, selector = match['split'], match['selector']
  if split not in SPLITS:
    raise error(f'unknown split {split!r}; the splits are {", ".join(SPLITS)}')
  n = len(next(iter(get(split).values())))
  if selector is None:
    return split, slice(None)
  parts = selector.split(':')
  bounds = [m for m in map(_BOUND_RE.match, parts) if m is not None]
  if len(parts) != 2 or len(bounds) != 2 or not any(b[0] for b in bounds):
    raise error(f'cannot parse {term!r}')
  percent = any(b['unit'] for b in bounds)
  resolved = []
  for bound, default in zip(bounds, (0, n)):
    if bound['value'] is None:
      resolved.append(default)
    elif percent:
      # tfds's default 'closest' rounding: int(round(pct * n / 100)).
      resolved.append(int(round(float(bound['value']) * n / 100.0)))
    else:
      resolved.append(int(bound['value']))
  if any(abs(b) > n for b in resolved):
    raise error(f'slice [{selector}] is incompatible with {n} examples')
  start, stop = (b + n if b < 0 else b for b in resolved)
  return split, slice(start, stop)


def read_split(name: str, spec: str) -> dict[str, np.ndarray]:
  """The rows of a tfds split string of embedded dataset `name`, all features.

  Args:
    name: 'digits', 'photo_patches' or 'pydoc_chars'.
    spec: a tfds split string: 'train', 'test', 'all' (= 'train+test'),
      'train[:100]', 'train[10%:-5%]', 'train[:50%]+test', ...

  Returns:
    `{feature: [N, ...]}` as `examples` gives them; the same rows, in the same
    order, as `tfds.load(name, split=spec)` reads from the builder's files.

  Raises:
    ValueError: a split string outside that grammar, an unknown split, or a slice
      beyond the split's end (tfds's shard slices, 'train[0shard]', are not
      supported).
  """
  get = functools.cache(lambda split: examples(name, split))  # each split built once
  terms = re.split(r'\s*\+\s*', str(spec).strip())
  if terms == ['all']:
    terms = list(SPLITS)
  parts = []
  for term in terms:
    split, rows = _rows(term, get, spec)
    parts.append({k: v[rows] for k, v in get(split).items()})
  if len(parts) == 1:
    return parts[0]
  return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
