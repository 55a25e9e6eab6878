"""The PyTorch VAE replica (benchmarks/torch_ref/vae.py) is the gm_jax VAE."""

import pytest

torch = pytest.importorskip('torch')

import functools

import jax
import numpy as np

from benchmarks import train_step
from benchmarks.torch_ref import common
from benchmarks.torch_ref import vae as torch_vae

BATCH = 4
CASES = {c.name: c for c in train_step.CASES if c.family == 'vae'}
# The cases, plus the conditional conv VAE (one-hot label maps concatenated to the image,
# one-hot concatenated to z).
VARIANTS = [(name, ()) for name in CASES] + [('vae_conv_mnist', (('model', 'cvae'),))]


@functools.cache
def _setup(name, extra=()):
  case = CASES[name]
  return (case,) + train_step.build_family(case, BATCH, extra)


def test_cases_present():
  assert set(CASES) == {'vae_mlp_digits', 'vae_conv_mnist'}


@pytest.mark.parametrize(
  'name,extra', VARIANTS, ids=[n + ('_cvae' if e else '') for n, e in VARIANTS]
)
def test_weight_copy_matches_jax_loss(name, extra):
  case, config, batch, family, params = _setup(name, extra)
  module = torch_vae.build_module(config, case.info)
  assert common.torch_signature(module) == train_step.flax_signature(params)

  key = jax.random.key(3)
  jax_loss, _ = family.loss(params, batch, key, train=False)
  # elbo_terms draws eps from the second half of split(key); reuse it in PyTorch.
  eps = np.array(jax.random.normal(jax.random.split(key)[1], (BATCH, int(config.latent_dim))))
  torch_vae.load_flax_params(module, params).eval()
  x = module.prepare(batch['image'])
  labels = torch.tensor(batch['label']).long() if module.num_classes else None
  with torch.no_grad():
    torch_loss = float(module.loss(x, labels, train=False, eps=torch.tensor(eps)))
  np.testing.assert_allclose(torch_loss, float(jax_loss), rtol=1e-4)


@pytest.mark.parametrize('name', list(CASES))
def test_train_step_runs_and_learns(name):
  case, config, batch, _, params = _setup(name)
  config = config.copy_and_resolve_references()
  with config.unlocked():
    config.warmup_steps = 0  # full learning rate from the first step
  torch.manual_seed(0)
  step, module = torch_vae.make_step(config, case.info, batch)
  assert common.torch_signature(module) == train_step.flax_signature(params)

  x = module.prepare(batch['image'])
  eps = torch.randn(BATCH, int(config.latent_dim))

  def eval_loss():
    with torch.no_grad():
      return float(module.loss(x, train=False, eps=eps))

  before = eval_loss()
  losses = [step() for _ in range(3)]
  assert np.all(np.isfinite(losses)), losses
  # Step-0 loss near the uniform-decoder value D log(levels) (+ a small KL), as in JAX.
  num_dims = int(np.prod(case.info.shape))
  assert abs(losses[0] - num_dims * np.log(case.info.num_levels)) < 0.2 * losses[0]
  assert eval_loss() < before
