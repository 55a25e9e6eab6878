"""Likelihoods and KL checked against SciPy/NumPy float64 references."""

import functools

import jax.numpy as jnp
from loss_checks import _assert_close_jit
from loss_checks import _assert_finite
from loss_checks import _assert_jit_vmap_match_loop
from loss_checks import _f32
from loss_checks import _jit
import numpy as np
import pytest
from scipy import integrate
from scipy import special
from scipy import stats

from gm_jax import losses

RTOL = 1e-5


def _rng(seed=0):
  return np.random.default_rng(seed)


# ----------------------------------------------------------------- gaussian ---


def test_gaussian_log_prob_matches_scipy():
  rng = _rng(0)
  x, mean = rng.normal(size=(2, 4, 3, 2))
  log_var = rng.normal(size=(4, 3, 2))
  expected = stats.norm.logpdf(x, mean, np.exp(0.5 * log_var)).sum(axis=(1, 2))
  _assert_close_jit(losses.gaussian_log_prob, _f32(x, mean, log_var), expected)


def test_gaussian_log_prob_matches_multivariate_normal_with_shared_log_var():
  rng = _rng(1)
  x, mean = rng.normal(size=(2, 5, 3))
  log_var = rng.normal(size=(3,))  # learned, shared across the batch
  expected = [
    stats.multivariate_normal(mean[i], np.diag(np.exp(log_var))).logpdf(x[i]) for i in range(5)
  ]
  out = _jit(losses.gaussian_log_prob)(*_f32(x, mean, log_var))
  np.testing.assert_allclose(out, expected, rtol=RTOL)


def test_gaussian_log_prob_jit_vmap_grad():
  rng = _rng(2)
  x, mean, log_var = _f32(*rng.normal(size=(3, 3, 4, 2)))
  _assert_jit_vmap_match_loop(losses.gaussian_log_prob, x, mean, log_var)
  extreme = jnp.array([[-30.0, 30.0]])
  _assert_finite(losses.gaussian_log_prob, jnp.zeros((1, 2)), jnp.zeros((1, 2)), extreme)


def test_gaussian_log_prob_rejects_log_var_that_enlarges_x():
  with pytest.raises(ValueError, match='log_var'):
    losses.gaussian_log_prob(jnp.zeros((4, 3)), jnp.zeros((4, 3)), jnp.zeros((2, 4, 3)))


def test_gaussian_kl_matches_numpy_closed_form():
  rng = _rng(3)
  mean, log_var = rng.normal(size=(2, 4, 2, 3))
  expected = 0.5 * np.sum(np.exp(log_var) + mean**2 - 1.0 - log_var, axis=(1, 2))
  _assert_close_jit(losses.gaussian_kl, _f32(mean, log_var), expected)


@pytest.mark.parametrize('mean,log_var', [(0.7, -1.3), (-1.5, 0.8)])
def test_gaussian_kl_matches_numerical_integration(mean, log_var):
  q = stats.norm(mean, np.exp(0.5 * log_var))
  p = stats.norm(0.0, 1.0)
  expected, _ = integrate.quad(lambda z: q.pdf(z) * (q.logpdf(z) - p.logpdf(z)), -30, 30)
  out = _jit(losses.gaussian_kl)(jnp.array([mean]), jnp.array([log_var]))
  np.testing.assert_allclose(out, [expected], rtol=RTOL)


def test_gaussian_kl_zero_at_prior_and_jit_vmap_grad():
  zeros = jnp.zeros((2, 3))
  np.testing.assert_array_equal(_jit(losses.gaussian_kl)(zeros, zeros), [0.0, 0.0])
  rng = _rng(4)
  mean, log_var = _f32(*rng.normal(size=(2, 3, 2, 5)))
  _assert_jit_vmap_match_loop(losses.gaussian_kl, mean, log_var)
  _assert_finite(losses.gaussian_kl, jnp.array([[-50.0, 50.0]]), jnp.array([[-50.0, 20.0]]))


# ---------------------------------------------------------------- bernoulli ---


def test_bernoulli_log_prob_matches_scipy_binary():
  rng = _rng(5)
  logits = rng.normal(scale=3.0, size=(4, 6))
  x = rng.integers(0, 2, size=(4, 6))
  expected = stats.bernoulli.logpmf(x, special.expit(logits)).sum(axis=1)
  _assert_close_jit(losses.bernoulli_log_prob, _f32(logits, x), expected)


def test_bernoulli_log_prob_continuous_targets_and_extreme_logits():
  logits = np.array([[-100.0, 100.0, 0.3], [100.0, -100.0, -2.0]])
  x = np.array([[0.25, 0.5, 1.0], [1.0, 0.0, 0.9]])
  expected = np.sum(x * special.log_expit(logits) + (1 - x) * special.log_expit(-logits), axis=1)
  out = _jit(losses.bernoulli_log_prob)(*_f32(logits, x))
  np.testing.assert_allclose(out, expected, rtol=RTOL)
  _assert_finite(losses.bernoulli_log_prob, *_f32(logits, x))


def test_bernoulli_log_prob_jit_vmap():
  rng = _rng(6)
  logits = jnp.asarray(rng.normal(size=(3, 2, 4, 4)), jnp.float32)
  x = jnp.asarray(rng.uniform(size=(3, 2, 4, 4)), jnp.float32)
  _assert_jit_vmap_match_loop(losses.bernoulli_log_prob, logits, x)


# -------------------------------------------------------------- categorical ---


def test_categorical_log_prob_matches_log_softmax():
  rng = _rng(7)
  logits = rng.normal(scale=2.0, size=(3, 4, 5))
  labels = rng.integers(0, 5, size=(3, 4))
  log_p = special.log_softmax(logits, axis=-1)
  expected = np.take_along_axis(log_p, labels[..., None], -1)[..., 0].sum(1)
  _assert_close_jit(
    losses.categorical_log_prob, (jnp.asarray(logits, jnp.float32), jnp.asarray(labels)), expected
  )


def test_categorical_log_prob_jit_vmap_grad():
  rng = _rng(8)
  logits = jnp.asarray(rng.normal(size=(3, 2, 4, 6)), jnp.float32)
  labels = jnp.asarray(rng.integers(0, 6, size=(3, 2, 4)))
  _assert_jit_vmap_match_loop(losses.categorical_log_prob, logits, labels)
  extreme = jnp.array([[100.0, -100.0, 0.0], [-100.0, 100.0, -100.0]])
  _assert_finite(lambda l: losses.categorical_log_prob(l, jnp.array([1, 0])), extreme)
  np.testing.assert_allclose(
    _jit(losses.categorical_log_prob)(extreme, jnp.array([0, 1])), [0.0, 0.0], atol=1e-6
  )


def test_categorical_log_prob_validates_shapes_and_dtype():
  with pytest.raises(ValueError, match='labels'):
    losses.categorical_log_prob(jnp.zeros((3, 4, 5)), jnp.zeros((3, 5), int))
  with pytest.raises(ValueError, match='integers'):
    losses.categorical_log_prob(jnp.zeros((3, 5)), jnp.zeros((3,)))


# ----------------------------------------------------- discretized logistic ---


def _np_discretized_logistic(x, mean, scale, num_levels):
  """Float64 reference from scipy's logistic CDF/SF (no shared code)."""
  h = 0.5 / (num_levels - 1)
  dist = stats.logistic(mean, scale)
  # Differences of SFs above the mean and of CDFs below it avoid cancellation.
  interior = np.where(x >= mean, dist.sf(x - h) - dist.sf(x + h), dist.cdf(x + h) - dist.cdf(x - h))
  k = np.rint(x * (num_levels - 1))
  prob = np.where(k == 0, dist.cdf(x + h), np.where(k == num_levels - 1, dist.sf(x - h), interior))
  return np.log(prob)


@pytest.mark.parametrize('mean,log_scale', [(0.3, -3.0), (0.52, -6.0), (-0.4, 0.5), (1.2, -2.0)])
def test_discretized_logistic_all_bins_sum_to_one_and_match_scipy(mean, log_scale):
  num_levels = 256
  x = np.arange(num_levels) / (num_levels - 1)
  out = _jit(losses.discretized_logistic_log_prob)(
    *_f32(x[:, None], np.full((num_levels, 1), mean), np.full((num_levels, 1), log_scale)),
    num_levels=num_levels,
  )
  assert out.shape == (num_levels,)
  np.testing.assert_allclose(np.exp(np.asarray(out, np.float64)).sum(), 1.0, atol=1e-5)
  expected = _np_discretized_logistic(x, mean, np.exp(log_scale), num_levels)
  # Compare where bins carry mass; the far-tail test below covers the rest.
  mask = expected > -30
  np.testing.assert_allclose(np.asarray(out)[mask], expected[mask], rtol=RTOL, atol=1e-6)


def test_discretized_logistic_one_bin_and_edges_against_scipy_cdf():
  num_levels, mean, scale = 5, 0.4, 0.3
  h = 1.0 / 8.0
  x = np.array([[0.0, 0.5, 1.0]])
  cdf = lambda v: stats.logistic.cdf(v, mean, scale)
  expected = np.log(cdf(0.0 + h)) + np.log(cdf(0.5 + h) - cdf(0.5 - h)) + np.log(1.0 - cdf(1.0 - h))
  _assert_close_jit(
    functools.partial(losses.discretized_logistic_log_prob, num_levels=num_levels),
    _f32(x, np.full_like(x, mean), np.full_like(x, np.log(scale))),
    [expected],
  )


def test_discretized_logistic_far_tail_bin_is_accurate():
  # Mass ~ e^-40 per bin: the naive sigmoid difference would be 0 in float32.
  num_levels, mean, log_scale = 256, 0.1, np.log(0.01)
  x = np.array([[0.5, 0.6]])
  out = _jit(losses.discretized_logistic_log_prob)(
    *_f32(x, np.full_like(x, mean), np.full_like(x, log_scale)), num_levels=num_levels
  )
  expected = _np_discretized_logistic(x, mean, np.exp(log_scale), num_levels).sum()
  assert expected < -60
  np.testing.assert_allclose(out, [expected], rtol=RTOL)


def test_discretized_logistic_tiny_bin_fallback_uses_density_times_width():
  num_levels, mean, log_scale = 256, 0.45, 20.0  # bin is ~1e-11 scales wide
  x = np.array([[100 / 255, 200 / 255]])
  out = _jit(losses.discretized_logistic_log_prob)(
    *_f32(x, np.full_like(x, mean), np.full_like(x, log_scale)), num_levels=num_levels
  )
  expected = np.sum(
    stats.logistic.logpdf(x, mean, np.exp(log_scale)) + np.log(1.0 / (num_levels - 1))
  )
  np.testing.assert_allclose(out, [expected], rtol=RTOL)


def test_discretized_logistic_jit_vmap_and_finite_grads_at_extremes():
  num_levels = 16
  rng = _rng(9)
  x = jnp.asarray(rng.integers(0, num_levels, size=(3, 2, 4)) / (num_levels - 1), jnp.float32)
  mean, log_scale = _f32(*rng.normal(size=(2, 3, 2, 4)))
  fn = functools.partial(losses.discretized_logistic_log_prob, num_levels=num_levels)
  _assert_jit_vmap_match_loop(fn, x, mean, log_scale)
  # Every (mean, log_scale) extreme at the lowest, an interior and the highest
  # level, one example per combination.
  mu, log_s = np.meshgrid([-100.0, 0.5, 100.0], [-100.0, -20.0, 20.0, 100.0])
  grid = np.array([0.0, 1 / 15, 8 / 15, 1.0])
  shape = (mu.size, grid.size)
  _assert_finite(
    fn,
    *_f32(
      np.broadcast_to(grid, shape),
      np.broadcast_to(mu.reshape(-1, 1), shape),
      np.broadcast_to(log_s.reshape(-1, 1), shape),
    ),
  )


def test_discretized_logistic_validates_num_levels():
  with pytest.raises(ValueError, match='num_levels'):
    losses.discretized_logistic_log_prob(jnp.zeros((2, 3)), 0.0, 0.0, num_levels=1)


def _np_mixture(x, logit_weights, means, log_scales, num_levels):
  log_w = special.log_softmax(logit_weights, axis=-1)
  log_comp = _np_discretized_logistic(x[..., None], means, np.exp(log_scales), num_levels)
  per_dim = special.logsumexp(log_w + log_comp, axis=-1)
  return per_dim.reshape(x.shape[0], -1).sum(axis=1)


def test_discretized_logistic_mixture_matches_numpy_reference():
  num_levels, num_mix = 32, 3
  rng = _rng(10)
  x = rng.integers(0, num_levels, size=(4, 2, 3)) / (num_levels - 1)
  logit_weights = rng.normal(size=(4, 2, 3, num_mix))
  means = rng.uniform(size=(4, 2, 3, num_mix))
  log_scales = rng.uniform(-4.0, -1.0, size=(4, 2, 3, num_mix))
  expected = _np_mixture(x, logit_weights, means, log_scales, num_levels)
  _assert_close_jit(
    functools.partial(losses.discretized_logistic_mixture_log_prob, num_levels=num_levels),
    _f32(x, logit_weights, means, log_scales),
    expected,
  )


def test_discretized_logistic_mixture_sums_to_one_and_reduces_to_single():
  num_levels = 64
  x = (np.arange(num_levels) / (num_levels - 1))[:, None]
  params = np.broadcast_to(np.array([0.5, -1.0, 2.0]), (num_levels, 1, 3))
  means = np.broadcast_to(np.array([0.1, 0.5, 0.95]), (num_levels, 1, 3))
  log_scales = np.broadcast_to(np.array([-3.0, -1.0, -5.0]), (num_levels, 1, 3))
  out = _jit(losses.discretized_logistic_mixture_log_prob)(
    *_f32(x, params, means, log_scales), num_levels=num_levels
  )
  np.testing.assert_allclose(np.exp(np.asarray(out, np.float64)).sum(), 1.0, atol=1e-5)
  single = _jit(losses.discretized_logistic_log_prob)(
    *_f32(x, means[..., 1], log_scales[..., 1]), num_levels=num_levels
  )
  one_component = _jit(losses.discretized_logistic_mixture_log_prob)(
    *_f32(x, params[..., 1:2], means[..., 1:2], log_scales[..., 1:2]), num_levels=num_levels
  )
  np.testing.assert_allclose(one_component, single, rtol=1e-6)


def test_discretized_logistic_mixture_jit_vmap_grad_and_shape_check():
  num_levels = 8
  rng = _rng(11)
  x = jnp.asarray(rng.integers(0, num_levels, size=(3, 2, 5)) / (num_levels - 1), jnp.float32)
  w, m, s = _f32(*rng.normal(size=(3, 3, 2, 5, 4)))
  fn = functools.partial(losses.discretized_logistic_mixture_log_prob, num_levels=num_levels)
  _assert_jit_vmap_match_loop(fn, x, w, m, s)
  extreme = jnp.array([-100.0, 100.0, 0.0, 20.0])
  _assert_finite(
    fn,
    x[0],
    jnp.broadcast_to(extreme, w[0].shape),
    jnp.broadcast_to(extreme, m[0].shape),
    jnp.broadcast_to(extreme, s[0].shape),
  )
  with pytest.raises(ValueError, match='logit_weights'):
    fn(x[0], w[0, ..., 0], m[0], s[0])
  with pytest.raises(ValueError, match='means'):
    fn(x[0], w[0], m[0, :, :3], s[0])
