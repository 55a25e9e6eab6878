"""Shared test set-up: CPU only, quiet TensorFlow, deterministic XLA."""
import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

import pytest  # noqa: E402


@pytest.fixture(scope='session')
def tfds_dir(tmp_path_factory):
  """A tfds data_dir private to the test session (embedded datasets prepare on first use)."""
  return str(tmp_path_factory.mktemp('tensorflow_datasets'))
