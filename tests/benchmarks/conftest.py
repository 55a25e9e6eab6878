"""Shared set-up of the benchmark tests."""

import pytest


@pytest.fixture(autouse=True)
def _one_torch_thread():
  """Tiny models on a shared 2-core machine: PyTorch's OpenMP threads only contend."""
  try:
    import torch
  except ImportError:
    yield
    return
  n = torch.get_num_threads()
  torch.set_num_threads(1)
  yield
  torch.set_num_threads(n)


@pytest.fixture
def check_torch_step_learns():
  """`check(step, module, flax_params, num_steps) -> losses`: the PyTorch replica has the
  Flax model's weights (shape multiset), and `num_steps` of its training step give finite,
  changing losses and update every parameter."""
  import numpy as np
  import torch

  from benchmarks import train_step
  from benchmarks.torch_ref import common

  def check(step, module, flax_params, num_steps):
    assert common.torch_signature(module) == train_step.flax_signature(flax_params)
    before = [p.detach().clone() for p in module.parameters()]
    losses = [step() for _ in range(num_steps)]
    assert np.all(np.isfinite(losses)), losses
    assert len(set(losses)) > 1, losses
    assert all(not torch.equal(a, p) for a, p in zip(before, module.parameters()))
    return losses

  return check
