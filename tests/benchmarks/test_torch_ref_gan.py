"""The PyTorch DCGAN replica (benchmarks/torch_ref/gan.py) is the gm_jax DCGAN."""

import pytest

torch = pytest.importorskip('torch')

import functools

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks import train_step
from benchmarks.torch_ref import common
from benchmarks.torch_ref import gan as torch_gan
from gm_jax.families import gan as gan_family
from gm_jax.train import loop

BATCH = 4
CASES = {c.name: c for c in train_step.CASES if c.family == 'gan'}
# The cases, plus the class-conditional DCGAN (one-hot joined to z, label maps to D).
VARIANTS = [(name, ()) for name in CASES] + [('dcgan_digits', (('conditional', True),))]


@functools.cache
def _setup(name, extra=()):
  case = CASES[name]
  return (case,) + train_step.build_family(case, BATCH, extra)


def _trained(params):
  """The trained leaves only: `{'generator': ..., 'discriminator': ...}` without
  `batch_stats` (which `train_step.flax_signature(params)` would also count)."""
  return {k: v['params'] for k, v in params.items()}


def test_cases_present():
  assert set(CASES) == {'dcgan_digits', 'dcgan_photos'}


@pytest.mark.parametrize(
  'name,extra', VARIANTS, ids=[n + ('_conditional' if e else '') for n, e in VARIANTS]
)
def test_weight_copy_matches_jax_loss(name, extra):
  case, config, batch, family, params = _setup(name, extra)
  torch.manual_seed(0)
  _, module = torch_gan.make_step(config, case.info, batch)
  assert common.torch_signature(module) == train_step.flax_signature(_trained(params))
  torch_gan.load_flax_params(module, params)

  key = jax.random.key(3)
  jax_loss, _ = gan_family.jit_once(lambda p, k: family.loss(p, batch, k))(params, key)
  z = jax.random.normal(key, (BATCH, int(config.latent_dim)))  # what family.loss draws
  out = torch_gan.eval_loss(module, config, case.info, batch, torch.tensor(np.array(z)))
  np.testing.assert_allclose(out['loss'], float(jax_loss), rtol=1e-4)
  # Generator images and discriminator logits themselves.
  g, d = gan_family.build_models(config, case.info)
  labels = jnp.asarray(batch['label']) if config.conditional else None
  fake = g.apply(params['generator'], z, labels, train=False)
  np.testing.assert_allclose(out['fake'].numpy(), np.array(fake).transpose(0, 3, 1, 2), atol=1e-4)
  np.testing.assert_allclose(
    out['fake_out'].numpy(),
    np.array(d.apply(params['discriminator'], fake, labels, train=False)),
    atol=1e-4,
  )


def test_train_steps_match_jax_with_copied_weights():
  """Train mode (batch statistics), D then G update, both Adams: the trainer's step and
  the replica's agree on the same weights and the same noise, for two steps."""
  case, config, batch, family, params = _setup('dcgan_digits')
  train_key = jax.random.key(7)
  state = {
    'step': jnp.asarray(0, jnp.int32),
    'params': params,
    'opt_state': family.train_update.init(params),
  }
  jax_step = gan_family.jit_once(loop.make_train_step(family, None, train_key, group_size=BATCH))
  step, module = torch_gan.make_step(config, case.info, batch)
  torch_gan.load_flax_params(module, params)
  for i in range(2):
    z = gan_family.per_example_normal(
      jax.random.fold_in(train_key, i), BATCH, int(config.latent_dim)
    )
    state, metrics = jax_step(state, batch)
    np.testing.assert_allclose(step(torch.tensor(np.array(z))), float(metrics['loss']), rtol=1e-4)


@pytest.mark.parametrize('name', list(CASES))
def test_train_step_runs_and_learns(name, check_torch_step_learns):
  case, config, batch, _, params = _setup(name)
  torch.manual_seed(0)
  step, module = torch_gan.make_step(config, case.info, batch)
  check_torch_step_learns(step, module, _trained(params), num_steps=3)
