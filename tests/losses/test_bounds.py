"""ELBO, IWAE, autoregressive/flow NLL and bits/dim against NumPy/SciPy."""

import math

import jax
import jax.numpy as jnp
from loss_checks import _assert_close_jit
from loss_checks import _assert_finite
from loss_checks import _assert_jit_vmap_match_loop
from loss_checks import _f32
from loss_checks import _jit
import numpy as np
import pytest
from scipy import special
from scipy import stats

from gm_jax import losses

RTOL = 1e-5


# --------------------------------------------------------------------- elbo ---


def test_elbo_values_and_beta_is_keyword_only():
  log_px, kl = np.array([-3.0, -10.5]), np.array([0.5, 2.25])
  _assert_close_jit(losses.elbo, _f32(log_px, kl), log_px - kl)
  _assert_close_jit(lambda a, b: losses.elbo(a, b, beta=4.0), _f32(log_px, kl), log_px - 4.0 * kl)
  with pytest.raises(TypeError):  # beta is keyword-only
    losses.elbo(*_f32(log_px, kl), 4.0)


def test_elbo_from_gaussian_terms_matches_scipy():
  """End to end: Gaussian decoder log-lik minus the analytic KL."""
  rng = np.random.default_rng(0)
  x, x_mean, z_mean, z_log_var = rng.normal(size=(4, 3, 5))
  log_px = stats.norm.logpdf(x, x_mean, 1.0).sum(axis=1)
  kl = 0.5 * np.sum(np.exp(z_log_var) + z_mean**2 - 1 - z_log_var, axis=1)
  fn = lambda *a: losses.elbo(losses.gaussian_log_prob(*a[:3]), losses.gaussian_kl(*a[3:]))
  _assert_close_jit(fn, _f32(x, x_mean, np.zeros(5), z_mean, z_log_var), log_px - kl)


# --------------------------------------------------------------------- iwae ---


def test_iwae_bound_matches_scipy_logsumexp():
  rng = np.random.default_rng(1)
  log_px, log_pz, log_qz = rng.normal(scale=30.0, size=(3, 5, 4))
  expected = special.logsumexp(log_px + log_pz - log_qz, axis=0) - np.log(5)
  _assert_close_jit(losses.iwae_bound, _f32(log_px, log_pz, log_qz), expected)


def test_iwae_bound_with_one_sample_equals_elbo():
  rng = np.random.default_rng(2)
  log_px, log_pz, log_qz = _f32(*rng.normal(size=(3, 1, 6)))
  # KL estimated by the single sample: log q(z|x) - log p(z).
  np.testing.assert_allclose(
    _jit(losses.iwae_bound)(log_px, log_pz, log_qz),
    _jit(losses.elbo)(log_px[0], log_qz[0] - log_pz[0]),
    rtol=1e-6,
  )


def test_iwae_bound_with_identical_samples_equals_that_sample():
  rng = np.random.default_rng(3)
  one = rng.normal(scale=10.0, size=(3, 1, 4))
  log_px, log_pz, log_qz = _f32(*np.repeat(one, 7, axis=1))
  np.testing.assert_allclose(
    _jit(losses.iwae_bound)(log_px, log_pz, log_qz), (one[0] + one[1] - one[2])[0], rtol=RTOL
  )


def test_iwae_bound_is_at_least_the_mean_elbo_and_grows_with_k():
  # Jensen: log mean exp(w) >= mean(w); averaging nested sub-bounds too.
  rng = np.random.default_rng(4)
  log_w = rng.normal(scale=3.0, size=(8, 5))
  zeros = np.zeros_like(log_w)
  bound = np.asarray(_jit(losses.iwae_bound)(*_f32(log_w, zeros, zeros)))
  assert np.all(bound >= log_w.mean(axis=0) - 1e-5)
  half = np.asarray(_jit(losses.iwae_bound)(*_f32(log_w[:4], zeros[:4], zeros[:4])))
  other = np.asarray(_jit(losses.iwae_bound)(*_f32(log_w[4:], zeros[4:], zeros[4:])))
  assert np.all(bound >= 0.5 * (half + other) - 1e-5)


def test_iwae_bound_jit_vmap_grad_and_shape_check():
  rng = np.random.default_rng(5)
  log_px, log_pz, log_qz = _f32(*rng.normal(size=(3, 2, 4, 3)))
  _assert_jit_vmap_match_loop(losses.iwae_bound, log_px, log_pz, log_qz)
  extreme = jnp.array([[-1e4, 100.0], [0.0, -100.0], [1e4, -1e4]])
  _assert_finite(losses.iwae_bound, extreme, -extreme, extreme)
  # Gradient w.r.t. log w_k is the normalised importance weight.
  log_w = jnp.array([[0.0], [1.0], [2.0]])
  grad = jax.jit(jax.grad(lambda w: losses.iwae_bound(w, 0 * w, 0 * w).sum()))(log_w)
  np.testing.assert_allclose(grad[:, 0], special.softmax([0.0, 1.0, 2.0]), rtol=RTOL)
  with pytest.raises(ValueError, match='log_pz'):
    losses.iwae_bound(jnp.zeros((2, 3)), jnp.zeros((2, 4)), jnp.zeros((2, 3)))
  with pytest.raises(ValueError, match='rank-2'):
    losses.iwae_bound(jnp.zeros((3,)), jnp.zeros((3,)), jnp.zeros((3,)))


# ---------------------------------------------------------- autoregressive ---


def test_autoregressive_nll_is_cross_entropy():
  rng = np.random.default_rng(6)
  logits = rng.normal(scale=3.0, size=(2, 7, 10))
  targets = rng.integers(0, 10, size=(2, 7))
  log_p = special.log_softmax(logits, axis=-1)
  expected = -np.take_along_axis(log_p, targets[..., None], -1).sum(axis=(1, 2))
  _assert_close_jit(
    losses.autoregressive_nll, (jnp.asarray(logits, jnp.float32), jnp.asarray(targets)), expected
  )


def test_autoregressive_nll_jit_vmap_grad():
  rng = np.random.default_rng(7)
  logits = jnp.asarray(rng.normal(size=(3, 2, 5, 4)), jnp.float32)
  targets = jnp.asarray(rng.integers(0, 4, size=(3, 2, 5)))
  _assert_jit_vmap_match_loop(losses.autoregressive_nll, logits, targets)
  _assert_finite(lambda l: losses.autoregressive_nll(l, targets[0]), 100.0 * jnp.sign(logits[0]))
  with pytest.raises(ValueError, match='labels'):
    losses.autoregressive_nll(logits[0], targets[0, :, :4])


# --------------------------------------------------------------------- flow ---


def test_flow_nll_matches_scipy_multivariate_normal():
  rng = np.random.default_rng(8)
  z = rng.normal(size=(4, 2, 3))
  log_det = rng.normal(size=(4,))
  log_pz = stats.multivariate_normal(np.zeros(6)).logpdf(z.reshape(4, 6))
  _assert_close_jit(losses.flow_nll, _f32(z, log_det), -(log_pz + log_det))


def test_flow_nll_of_affine_flow_matches_gaussian_density():
  """x = mu + sigma * z has density N(x; mu, sigma^2): checks the sign of
  log_det (here log|dz/dx| = -sum log sigma)."""
  rng = np.random.default_rng(9)
  x = rng.normal(size=(5, 3))
  mu, log_sigma = rng.normal(size=(2, 3))
  z = (x - mu) * np.exp(-log_sigma)
  log_det = np.full(5, -log_sigma.sum())
  expected = -stats.norm.logpdf(x, mu, np.exp(log_sigma)).sum(axis=1)
  np.testing.assert_allclose(_jit(losses.flow_nll)(*_f32(z, log_det)), expected, rtol=RTOL)


def test_flow_nll_jit_vmap_grad_and_shape_check():
  rng = np.random.default_rng(10)
  (z,) = _f32(rng.normal(size=(3, 2, 4, 4)))
  (log_det,) = _f32(rng.normal(size=(3, 2)))
  _assert_jit_vmap_match_loop(losses.flow_nll, z, log_det)
  _assert_finite(losses.flow_nll, jnp.array([[1e3, -1e3]]), jnp.array([1e3]))
  with pytest.raises(ValueError, match='log_det'):
    losses.flow_nll(z[0], log_det[0, :1])


# ------------------------------------------------------------ bits per dim ---


def test_bits_per_dim_values_any_shape():
  nll = np.array([[3072 * math.log(2.0), 0.0], [100.0, 5.5]])
  expected = nll / (3072 * np.log(2.0))
  _assert_close_jit(lambda n: losses.bits_per_dim(n, num_dims=3072), _f32(nll), expected)
  assert float(
    _jit(losses.bits_per_dim)(jnp.float32(784 * math.log(2.0)), num_dims=784)
  ) == pytest.approx(1.0)


def test_bits_per_dim_uniform_model_gives_bits_per_symbol():
  # A uniform model over 256 levels needs exactly 8 bits per dimension.
  nll = _jit(losses.autoregressive_nll)(jnp.zeros((2, 12, 256)), jnp.zeros((2, 12), jnp.int32))
  np.testing.assert_allclose(_jit(losses.bits_per_dim)(nll, num_dims=12), [8.0, 8.0], rtol=RTOL)


def test_bits_per_dim_vmap_grad_and_validation():
  (nll,) = _f32(np.arange(6.0).reshape(3, 2))
  fn = lambda n: losses.bits_per_dim(n, num_dims=10)
  _assert_jit_vmap_match_loop(fn, nll)
  grad = jax.jit(jax.grad(lambda n: fn(n).sum()))(nll)
  np.testing.assert_allclose(grad, np.full((3, 2), 1 / (10 * np.log(2.0))), rtol=RTOL)
  with pytest.raises(ValueError, match='num_dims'):
    losses.bits_per_dim(nll, num_dims=0)
