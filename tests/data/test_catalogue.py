"""gm_jax.data.catalogue: dataset names, their shapes and levels, split names."""

import os

import numpy as np
import pytest

from gm_jax import data
from gm_jax.data import catalogue


@pytest.mark.parametrize(
  'name, kind, shape, levels, classes',
  [
    ('digits', 'image', (8, 8, 1), 17, 10),
    ('photo_patches', 'image', (32, 32, 3), 256, 2),
    ('mnist', 'image', (28, 28, 1), 256, 10),
    ('binarized_mnist', 'image', (28, 28, 1), 2, None),
    ('cifar10', 'image', (32, 32, 3), 256, 10),
    ('cycle_gan/horse2zebra', 'image', (256, 256, 3), 256, 2),
    ('mnist:3.0.1', 'image', (28, 28, 1), 256, 10),
  ],
)
def test_get_info(name, kind, shape, levels, classes):
  info = data.get_info(name)
  assert (info.kind, info.shape, info.num_levels, info.num_classes) == (
    kind,
    shape,
    levels,
    classes,
  )
  assert info.num_dims == int(np.prod(shape))


def test_get_info_text():
  from pydoc_data import topics

  info = data.get_info('pydoc_chars')
  assert (info.kind, info.shape, info.num_levels) == ('text', (128,), 256)
  assert info.num_classes == len(topics.topics)
  assert info.num_dims == 128


def test_unknown_dataset_is_named_with_the_known_ones(tmp_path):
  with pytest.raises(ValueError, match=r"'mnistt'.*digits.*mnist"):
    data.get_info('mnistt')
  with pytest.raises(ValueError, match="'mnistt'"):
    data.load_split('mnistt', 'train', data_dir=str(tmp_path))
  assert not os.listdir(tmp_path)  # Rejected before touching data_dir.


def test_split_names_include_the_own_validation_split():
  assert catalogue.split_names('digits') == ['train', 'test']
  assert catalogue.split_names('mnist_offline') == ['train', 'validation', 'test']
  assert catalogue.split_names('cycle_gan/horse2zebra') == ['trainA+trainB', 'testA+testB']
  assert data.split_names is catalogue.split_names
