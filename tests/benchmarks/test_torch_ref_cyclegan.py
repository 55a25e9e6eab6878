"""The PyTorch CycleGAN replica (benchmarks/torch_ref/cyclegan.py) is the gm_jax CycleGAN."""

import pytest

torch = pytest.importorskip('torch')

import functools

import numpy as np

from benchmarks import train_step
from benchmarks.torch_ref import common
from benchmarks.torch_ref import cyclegan as torch_cyclegan
from gm_jax.families import cyclegan as cyclegan_family
from gm_jax.families import gan as gan_family
from gm_jax.nn.layers import images_to_unit

BATCH = 4
CASES = {c.name: c for c in train_step.CASES if c.family == 'cyclegan'}


@functools.cache
def _setup(name):
  case = CASES[name]
  return (case,) + train_step.build_family(case, BATCH, ())


def test_cases_present():
  assert set(CASES) == {'cyclegan_photos'}


@pytest.mark.parametrize('name', list(CASES))
def test_weight_copy_matches_jax_loss(name):
  case, config, batch, family, params = _setup(name)
  _, module = torch_cyclegan.make_step(config, case.info, batch)
  assert common.torch_signature(module) == train_step.flax_signature(params)
  torch_cyclegan.load_flax_params(module, params)

  jax_loss, _ = gan_family.jit_once(lambda p: family.loss(p, batch, None))(params)
  out = torch_cyclegan.eval_loss(module, config, case.info, batch)
  np.testing.assert_allclose(out['loss'], float(jax_loss), rtol=1e-4)
  # Generator images and patch-discriminator scores themselves.
  gen, disc = cyclegan_family.build_models(config, case.info)
  a = images_to_unit(batch['image_a'], case.info.num_levels)
  np.testing.assert_allclose(
    out['fake_b'].numpy(), np.array(gen.apply(params['g_ab'], a)).transpose(0, 3, 1, 2), atol=1e-4
  )
  np.testing.assert_allclose(
    out['d_a_real'].numpy(), np.array(disc.apply(params['d_a'], a)).transpose(0, 3, 1, 2), atol=1e-4
  )


@pytest.mark.parametrize('name', list(CASES))
def test_train_step_runs_and_learns(name, check_torch_step_learns):
  case, config, batch, _, params = _setup(name)
  torch.manual_seed(0)
  step, module = torch_cyclegan.make_step(config, case.info, batch)
  check_torch_step_learns(step, module, params, num_steps=2)
  assert step.pool_a.count == step.pool_b.count == 2 * BATCH


def test_image_pool_follows_the_reference_rule():
  pool = torch_cyclegan.ImagePool(3, (1, 1, 1))
  first = torch.arange(3.0).view(3, 1, 1, 1)
  assert torch.equal(pool.query(first), first)  # room: stored and returned
  torch.manual_seed(0)
  new = torch.arange(100.0, 300.0).view(200, 1, 1, 1)
  out = pool.query(new)
  swapped = out != new
  assert 60 < int(swapped.sum()) < 140  # about half return a stored image instead
  assert set(out[swapped].tolist()) <= set(range(3)) | set(range(100, 300))
  assert pool.count == 3


def test_learning_rate_schedule_matches_jax():
  config = CASES['cyclegan_photos'].load_config()
  schedule = cyclegan_family.learning_rate_schedule(config)
  for step in (0, 499, 500, 501, 750, 999, 1000, 1200):
    np.testing.assert_allclose(
      torch_cyclegan.lr_at(config, step), float(schedule(step)), rtol=1e-4, atol=1e-10
    )  # optax computes in float32
