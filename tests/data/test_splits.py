"""gm_jax.data.splits: train/validation/test from one dataset."""

import numpy as np
import pytest

from gm_jax import data


def test_load_splits_validation_is_tail_of_train(digits_splits, data_dir):
  s = digits_splits
  assert s.info == data.get_info('digits')
  assert len(s.train['label']) == 1293 and len(s.validation['label']) == 144
  full = data.load_split('digits', 'train', data_dir=data_dir)
  for key in ('image', 'label'):
    np.testing.assert_array_equal(s.train[key], full[key][:1293])
    np.testing.assert_array_equal(s.validation[key], full[key][1293:])
  assert len(s.test['label']) == 360


def test_load_splits_without_validation(data_dir):
  s = data.load_splits('digits', data_dir=data_dir, validation_fraction=0)
  assert len(s.train['label']) == 1437
  assert s.validation['image'].shape == (0, 8, 8, 1)
  assert s.validation['label'].shape == (0,)
  with pytest.raises(ValueError, match='validation_fraction'):
    data.load_splits('digits', data_dir=data_dir, validation_fraction=1.0)
