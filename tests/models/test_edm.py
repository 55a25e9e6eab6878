"""EDM: Table 1's preconditioning, the assembled denoiser, its skip limit, the loss weight."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gm_jax import losses
from gm_jax.models import diffusion as dm
from gm_jax.models import edm

SIGMAS = np.array([0.002, 0.05, 0.5, 1.0, 7.0, 80.0])


def test_preconditioning_is_table_1():
  for sd in (0.5, 1.3):
    c_skip, c_out, c_in, c_noise = (
      np.asarray(c)
      for c in edm.edm_preconditioning(jnp.asarray(SIGMAS, jnp.float32), sigma_data=sd)
    )
    s = SIGMAS.astype(np.float64)
    np.testing.assert_allclose(c_skip, sd**2 / (s**2 + sd**2), rtol=1e-6)
    np.testing.assert_allclose(c_out, s * sd / np.sqrt(sd**2 + s**2), rtol=1e-6)
    np.testing.assert_allclose(c_in, 1 / np.sqrt(s**2 + sd**2), rtol=1e-6)
    np.testing.assert_allclose(c_noise, np.log(s) / 4, rtol=1e-6)
    # The design goals of appendix B.6: unit-variance input, unit-variance target
    # (y - c_skip (y + n)) / c_out for y of variance sd^2, and the loss weight 1 / c_out^2.
    np.testing.assert_allclose(c_in**2 * (sd**2 + s**2), 1.0, rtol=1e-5)
    target_var = ((1 - c_skip) ** 2 * sd**2 + c_skip**2 * s**2) / c_out**2
    np.testing.assert_allclose(target_var, 1.0, rtol=1e-4)
  # sigma = sigma_data: half skip, half network.
  c_skip, c_out, c_in, _ = edm.edm_preconditioning(0.5, sigma_data=0.5)
  np.testing.assert_allclose([c_skip, c_out, c_in], [0.5, 0.5 / np.sqrt(2), np.sqrt(2)], rtol=1e-6)
  with pytest.raises(ValueError, match='sigma_data must be > 0'):
    edm.edm_preconditioning(1.0, sigma_data=0.0)


@pytest.fixture(scope='module')
def model_and_params():
  """A tiny class-conditional EDM whose network output is not zero (the U-Net's last
  convolution starts at zero: its parameters are perturbed)."""
  model = edm.EDM(dm.UNet(channels=8, channel_mults=(1,), num_classes=3))
  x = jnp.zeros((2, 4, 4, 1))
  params = jax.jit(model.init)(jax.random.key(0), x, jnp.ones((2,)), jnp.zeros((2,), jnp.int32))
  params = jax.tree.map(lambda a: a + 0.1 * jax.random.normal(jax.random.key(1), a.shape), params)
  return model, params


def test_denoiser_is_skip_plus_scaled_network(model_and_params):
  """D equals c_skip x + c_out F(c_in x, c_noise) assembled from the bare U-Net, and
  tends to x as sigma -> 0."""
  model, params = model_and_params
  x = jax.random.normal(jax.random.key(2), (2, 4, 4, 1))
  labels = jnp.array([0, 2], jnp.int32)
  apply = jax.jit(lambda x, s, c: model.apply(params, x, s, c))
  net_apply = jax.jit(
    lambda x, s: model.net.apply({'params': params['params']['net']}, x, s, labels)
  )
  sd = 0.5
  for sigma in (1e-4, 0.3, 20.0):
    s = np.full((2,), sigma)
    f = np.asarray(net_apply(x / np.sqrt(sigma**2 + sd**2), jnp.asarray(np.log(s) / 4)))
    assert np.abs(f).max() > 1e-2  # the network part is really there
    expected = (
      sd**2 / (sigma**2 + sd**2) * np.asarray(x) + sigma * sd / np.sqrt(sigma**2 + sd**2) * f
    )
    out = np.asarray(apply(x, jnp.asarray(s, jnp.float32), labels))
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)
  # Skip limit: |D - x| <= (1 - c_skip) |x| + c_out |F| = O(sigma) at small sigma.
  small = np.asarray(apply(x, jnp.full((2,), 1e-5), labels))
  np.testing.assert_allclose(small, x, atol=1e-4)
  # The labels matter.
  at_03 = np.asarray(apply(x, jnp.full((2,), 0.3), labels))
  other = np.asarray(apply(x, jnp.full((2,), 0.3), jnp.array([1, 1], jnp.int32)))
  assert np.abs(other - at_03).max() > 1e-4
  # As a denoiser of the sampler suite: a scalar sigma, broadcast over the batch.
  denoise = jax.jit(edm.edm_denoiser(model, params, labels))
  np.testing.assert_allclose(denoise(x, jnp.asarray(0.3)), at_03, rtol=1e-6, atol=1e-6)


def test_loss_weight_makes_the_network_target_unit_weight(model_and_params):
  """edm_terms' loss is lambda(sigma) ||D - y||^2 = ||F - (y - c_skip x) / c_out||^2: with
  lambda = 1 / c_out^2 every noise level regresses F on its target with weight 1."""
  model, params = model_and_params
  images = jax.random.randint(jax.random.key(3), (3, 4, 4, 1), 0, 16)
  labels = jnp.array([0, 1, 2], jnp.int32)
  sig = jnp.array([0.01, 0.7, 30.0])
  key = jax.random.key(4)
  terms = jax.jit(
    lambda p: edm.edm_terms(model, p, images, labels, key, num_levels=16, sigmas=sig)
  )(params)
  # Rebuild the same draws (edm_terms' key split) and compute the target in float64.
  _, noise_key, deq_key, _, _ = jax.random.split(key, 5)
  y = np.asarray(dm.dequantize(deq_key, images, num_levels=16), np.float64)
  s = np.asarray(sig, np.float64)[:, None, None, None]
  x = y + s * np.asarray(jax.random.normal(noise_key, y.shape), np.float64)
  assert np.all((y > -1) & (y < 1))
  sd = 0.5
  net_apply = jax.jit(
    lambda x, s: model.net.apply({'params': params['params']['net']}, x, s, labels)
  )
  f = np.asarray(
    net_apply(jnp.asarray(x / np.sqrt(s**2 + sd**2), jnp.float32), jnp.asarray(np.log(sig) / 4)),
    np.float64,
  )
  c_skip, c_out = sd**2 / (s**2 + sd**2), s * sd / np.sqrt(s**2 + sd**2)
  expected = np.sum((f - (y - c_skip * x) / c_out) ** 2, axis=(1, 2, 3))
  np.testing.assert_allclose(terms['loss'], expected, rtol=2e-4)
  np.testing.assert_array_equal(terms['sigma'], sig)
  # and the same through losses.edm_loss on D directly
  d = c_skip * x + c_out * f
  np.testing.assert_allclose(losses.edm_loss(d, y, s[:, 0, 0, 0]), expected, rtol=2e-4)


def test_log_normal_sigmas():
  s = np.asarray(edm.log_normal_sigmas(jax.random.key(0), (20_000,)))
  assert s.dtype == np.float32 and np.all(s > 0)
  log_s = np.log(s)
  # mean and standard deviation of ln sigma within 5 standard errors of (-1.2, 1.2)
  assert abs(log_s.mean() - edm.P_MEAN) < 5 * edm.P_STD / np.sqrt(s.size)
  assert abs(log_s.std() - edm.P_STD) < 5 * edm.P_STD / np.sqrt(2 * s.size)
  s2 = np.log(
    np.asarray(edm.log_normal_sigmas(jax.random.key(1), (4, 5000), p_mean=0.5, p_std=0.1))
  )
  assert s2.shape == (4, 5000) and abs(s2.mean() - 0.5) < 0.01 and abs(s2.std() - 0.1) < 0.01
