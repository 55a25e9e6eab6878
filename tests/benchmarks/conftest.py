"""Shared set-up of the benchmark tests."""

import pytest


@pytest.fixture(autouse=True)
def _one_torch_thread():
  """Tiny models on a shared 2-core machine: PyTorch's OpenMP threads only contend."""
  try:
    import torch  # pylint: disable=g-import-not-at-top
  except ImportError:
    yield
    return
  n = torch.get_num_threads()
  torch.set_num_threads(1)
  yield
  torch.set_num_threads(n)
