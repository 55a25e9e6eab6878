"""Fixtures shared by the data tests."""

import pytest

from gm_jax import data


@pytest.fixture(scope='session')
def digits_splits(data_dir):
  """`load_splits('digits')`, read once per test process."""
  return data.load_splits('digits', data_dir=data_dir)
