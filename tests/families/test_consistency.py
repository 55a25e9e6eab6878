"""Consistency training's pieces against independent formulas: the iCT curriculum, the
Karras grid (against `sampling.karras_sigmas`), the noise-index distribution (SciPy's
erf), the boundary condition, and multistep sampling (Song et al. 2023, Alg. 1) with the
exact consistency function of Gaussian data. Training, resuming and evaluating run in
tests/families/test_contract.py."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import special

from gm_jax import data as gm_data
from gm_jax import families
from gm_jax import sampling
from gm_jax.families import consistency as consistency_family
from gm_jax.models import consistency as cm
from gm_jax.models import diffusion as dm


def test_discretization_doubles_in_equal_stages():
  # iCT's schedule: K = 400k, s0 = 10, s1 = 1280 -> K' = 50k, 8 stages
  steps = np.array([0, 49_999, 50_000, 100_000, 349_999, 350_000, 400_000])
  got = np.asarray(cm.discretization_steps(steps, total_steps=400_000, s0=10, s1=1280))
  np.testing.assert_array_equal(got, [11, 11, 21, 41, 641, 1281, 1281])
  # the digits config: 1000 steps, 10 -> 80 (4 stages of 250)
  got = [int(cm.discretization_steps(k, total_steps=1000, s0=10, s1=80)) for k in (249, 250, 999)]
  assert got == [11, 21, 81]
  with pytest.raises(ValueError, match='s0 <= s1'):
    cm.discretization_steps(0, total_steps=10, s0=20, s1=10)


def test_grid_is_the_karras_grid_and_indices_follow_the_lognormal():
  n = 17
  grid = np.asarray(cm.karras_level(jnp.arange(n), n, sigma_min=0.002, sigma_max=80.0))
  ref = np.asarray(sampling.karras_sigmas(n, sigma_min=0.002, sigma_max=80.0))
  np.testing.assert_allclose(grid, ref[::-1][1:], rtol=1e-5)  # ref ends with its 0
  logits = cm.noise_index_logits(
    n, max_levels=33, sigma_min=0.002, sigma_max=80.0, rho=7.0, p_mean=-1.1, p_std=2.0
  )
  cdf = special.erf((np.log(grid.astype(np.float64)) + 1.1) / (np.sqrt(2.0) * 2.0))
  want = np.diff(cdf) / np.sum(np.diff(cdf))
  got = np.asarray(jax.nn.softmax(logits))
  np.testing.assert_allclose(got[: n - 1], want, rtol=1e-4)
  assert np.all(got[n - 1 :] == 0.0)  # beyond the current grid: never drawn


def test_scalings_and_the_boundary_condition():
  sigma = np.array([0.002, 0.1, 1.0, 80.0])
  c_skip, c_out, c_in, c_noise = (np.asarray(c) for c in cm.consistency_scalings(sigma))
  np.testing.assert_allclose(c_skip, 0.25 / ((sigma - 0.002) ** 2 + 0.25), rtol=1e-6)
  np.testing.assert_allclose(c_out, (sigma - 0.002) * 0.5 / np.sqrt(sigma**2 + 0.25), rtol=1e-5)
  np.testing.assert_allclose(c_in, 1 / np.sqrt(sigma**2 + 0.25), rtol=1e-6)
  np.testing.assert_allclose(c_noise, np.log(sigma) / 4, rtol=1e-6)
  model = cm.ConsistencyModel(net=dm.UNet(channels=8, channel_mults=(1,), num_res_blocks=1))
  x = jax.random.normal(jax.random.key(0), (3, 8, 8, 1))
  params = model.init(jax.random.key(1), x, jnp.ones((3,)))
  np.testing.assert_array_equal(model.apply(params, x, cm.SIGMA_MIN), x)  # f(x, sigma_min) = x


def test_multistep_sampling_with_the_exact_consistency_function():
  # Gaussian data N(mu, s^2): the probability-flow ODE maps x at sigma to
  # mu + (x - mu) s / sqrt(s^2 + sigma^2) at sigma = 0
  mu, s, sigma_min = 0.3, 0.5, 0.002
  f = lambda x, sigma: mu + (x - mu) * s / jnp.sqrt(s**2 + jnp.square(sigma))
  key, shape = jax.random.key(3), (4096, 2)
  sigmas = cm.step_sigmas(4, sigma_min=sigma_min, sigma_max=80.0)
  # the first 4 of the 5-level grid: the last step is not at sigma_min, where f is the identity
  ref_sigmas = np.asarray(sampling.karras_sigmas(5, sigma_min=sigma_min, sigma_max=80.0))
  np.testing.assert_allclose(sigmas, ref_sigmas[:4], rtol=1e-5)
  got = np.asarray(
    jax.jit(lambda k: cm.multistep_sample(f, k, shape, sigmas, sigma_min=sigma_min))(key)
  )
  # Algorithm 1 by hand in NumPy, with the same noise
  keys = jax.random.split(key, 4)
  z = [np.asarray(jax.random.normal(k, shape), np.float64) for k in keys]
  fn = lambda x, sigma: mu + (x - mu) * s / np.sqrt(s**2 + sigma**2)
  x = fn(sigmas[0] * z[0], sigmas[0])
  for zk, tau in zip(z[1:], sigmas[1:]):
    x = fn(x + np.sqrt(tau**2 - sigma_min**2) * zk, tau)
  np.testing.assert_allclose(got, x, rtol=1e-4, atol=1e-5)
  # and the samples have the data's law
  assert abs(got.mean() - mu) < 0.03 and abs(got.std() - s) < 0.03
  assert cm.step_sigmas(1) == [80.0]


def test_check_config_names_the_field():
  config = families.complete(families.module_for('consistency') and _config())
  info = gm_data.get_info('digits')
  consistency_family.check_config(config, info)
  for field, value in (
    ('ct_final_scales', 5),
    ('sigma_min', 0.0),
    ('fid_steps', (1, 0)),
    ('sample_steps', 0),
  ):
    bad = families.complete(_config())
    bad[field] = value
    with pytest.raises(ValueError, match=rf'config\.{field}\b'):
      consistency_family.check_config(bad, info)


def _config():
  from configs import consistency

  return consistency.get_config()
