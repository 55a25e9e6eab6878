"""`tfds.testing.mock_data` with the shapes, levels and split names of the real datasets.

tfds's default mock (policy `USE_CODE`, what works offline: tfds 4.9 ships no metadata
for these datasets) accepts any split name, ignores slices such as `train[:90%]` or a
process's part, yields the same rows for every split, draws pixels in [0, 255] whatever
the dataset (`binarized_mnist` is 0/1) and gives `cycle_gan/*` images of random sizes
(the real ones are 256x256). `mock_tfds` replaces the generator (the `as_dataset_fn`
hook of `mock_data`) with one that

* knows each dataset's real split names and rejects any other, as tfds does with the
  real metadata (`Unknown split 'train'`);
* honours tfds split strings (slices, `+`, `tfds.even_splits` parts) against small
  split sizes (`SIZES`);
* gives every row of every split its own deterministic content, with the dataset's
  shape and levels (`gm_jax.data.get_info`); `cycle_gan` labels are the domain of the
  split (`trainA` -> A).

Everything else is tfds's own code path: the builder, `download_and_prepare` (a no-op
under the mock), `as_dataset` with its read config.
"""

from __future__ import annotations

import contextlib
import zlib

import numpy as np

from gm_jax import data as gm_data
from gm_jax.data import _tfds as _tfds_lib

# Rows per split: small, and not multiples of each other so that slices are visible.
SIZES = {
  'mnist': {'train': 40, 'test': 12},
  'fashion_mnist': {'train': 40, 'test': 12},
  'binarized_mnist': {'train': 40, 'validation': 10, 'test': 12},
  'cifar10': {'train': 40, 'test': 12},
  'cycle_gan': {'trainA': 6, 'trainB': 5, 'testA': 3, 'testB': 4},
}
NAMES = ('mnist', 'fashion_mnist', 'binarized_mnist', 'cifar10', 'cycle_gan/horse2zebra')


def rows(name: str, split: str, indices) -> dict[str, np.ndarray]:
  """The mock's rows `indices` of real split `split` of dataset `name` (tfds features)."""
  info = gm_data.get_info(name)
  base = name.split('/')[0]
  images, labels = [], []
  for i in indices:
    rng = np.random.default_rng([zlib.crc32(f'{base}/{split}'.encode()), int(i)])
    images.append(rng.integers(0, info.num_levels, info.shape, dtype=np.uint8))
    if base == 'cycle_gan':
      labels.append(0 if split.endswith('A') else 1)
    elif info.num_classes:
      labels.append(int(rng.integers(info.num_classes)))
  out = {'image': np.stack(images).reshape((-1,) + info.shape).astype(np.uint8)}
  if info.num_classes:
    out['label'] = np.asarray(labels, np.int64).reshape(-1)
  return out


def _split_dict(tfds, base: str):
  from tensorflow_datasets.core import splits as splits_lib

  return splits_lib.SplitDict(
    [tfds.core.SplitInfo(name=k, shard_lengths=[n], num_bytes=0) for k, n in SIZES[base].items()]
  )


def resolve(tfds, name: str, split) -> list[tuple[str, range]]:
  """`split` (any tfds split argument) as `(real split, row range)` pieces."""
  from tensorflow_datasets.core import splits as splits_lib

  base = name.split('/')[0]
  sizes = SIZES[base]
  out = []
  for inst in splits_lib.AbstractSplit.from_spec(split).to_absolute(_split_dict(tfds, base)):
    n = sizes[inst.splitname]
    start = 0 if inst.from_ is None else inst.from_
    stop = n if inst.to is None else inst.to
    out.append((inst.splitname, range(start, stop)))
  return out


@contextlib.contextmanager
def mock_tfds():
  """`tfds.testing.mock_data` serving `rows` for the names in `SIZES`."""
  tfds = _tfds_lib.import_tfds()
  import tensorflow as tf

  def as_dataset(self, split, decoders=None, read_config=None, shuffle_files=False, **kw):
    del decoders, read_config, shuffle_files, kw
    name = self.info.full_name.split('/')[0]
    if self.builder_config is not None:
      name = f'{name}/{self.builder_config.name}'
    pieces = [rows(name, s, r) for s, r in resolve(tfds, name, split)]
    arrays = {k: np.concatenate([p[k] for p in pieces]) for k in pieces[0]}
    return tf.data.Dataset.from_tensor_slices(arrays)

  with tfds.testing.mock_data(policy=tfds.testing.MockPolicy.USE_CODE, as_dataset_fn=as_dataset):
    yield
