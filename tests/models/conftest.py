"""Fixtures shared by the model tests."""

import numpy as np
import pytest
from sklearn import datasets


@pytest.fixture(scope='session')
def digits():
  """The project split: first 1,437 of sklearn's digits for train, last 360 test."""
  x, y = datasets.load_digits(return_X_y=True)
  return (
    x[:1437].astype(np.int32),
    y[:1437].astype(np.int32),
    x[1437:].astype(np.int32),
    y[1437:].astype(np.int32),
  )
