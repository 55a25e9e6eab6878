"""The hierarchical VAE: shapes, the residual posterior, KLs and IWAE against independent
computations, tempered sampling, spectral norms and weight normalisation."""
import flax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gm_jax import losses
from gm_jax.models import hvae

# Tiny: 8x8 images, groups on 2x2 (one) and 4x4 (two) maps.
MODEL = hvae.HVAE(image_shape=(8, 8, 1), num_levels=5, groups_per_scale=(1, 2), stem_stride=2,
                  channels=8, latent_channels=2, dropout_rate=0.2)
X = jnp.asarray(np.random.default_rng(0).integers(0, 5, (3, 8, 8, 1)), jnp.int32)


@pytest.fixture(scope='module')
def params():
  return hvae.init_params(MODEL, jax.random.key(0), X)


@jax.jit
def _apply(p, x, eps):
  return MODEL.apply(p, x, eps)


def test_static_shapes_and_bad_attributes():
  assert MODEL.num_groups == 3 and MODEL.scale_of_group() == [0, 1, 1]
  assert MODEL.latent_shapes() == [(2, 2, 2), (4, 4, 2), (4, 4, 2)]
  photo = hvae.HVAE(image_shape=(32, 32, 3), num_levels=256, groups_per_scale=(1, 1, 1),
                    stem_stride=4)
  assert photo.latent_shapes() == [(2, 2, 4), (4, 4, 4), (8, 8, 4)]
  with pytest.raises(ValueError, match='normalization'):
    hvae.HVAE(image_shape=(8, 8, 1), num_levels=5, normalization='batch')
  with pytest.raises(ValueError, match='divisible'):
    hvae.HVAE(image_shape=(8, 8, 1), num_levels=5, groups_per_scale=(1, 1, 1, 1))
  with pytest.raises(ValueError, match='stem_stride'):
    hvae.HVAE(image_shape=(8, 8, 1), num_levels=5, stem_stride=3)


def test_posterior_pass_shapes_and_group_kl_is_the_closed_form(params):
  eps = hvae.draw_noise(MODEL, jax.random.key(1), 3)
  out, stats = _apply(params, X, eps)
  assert out.shape == (3, 8, 8, 1, 5)
  kls = np.asarray(hvae.group_kls(stats))
  assert kls.shape == (3, 3) and np.all(kls >= 0)
  for l, g in enumerate(stats):
    assert g['z'].shape == (3,) + MODEL.latent_shapes()[l]
    m, lv, pm, plv = (np.asarray(g[k], np.float64) for k in
                      ('mean', 'log_var', 'prior_mean', 'prior_log_var'))
    closed = 0.5 * (plv - lv + (np.exp(lv) + (m - pm) ** 2) / np.exp(plv) - 1)
    np.testing.assert_allclose(kls[:, l], closed.reshape(3, -1).sum(1), rtol=1e-4, atol=1e-6)
    # z is the reparameterised posterior sample.
    np.testing.assert_allclose(g['z'], m + np.exp(0.5 * lv) * np.asarray(eps[l]), rtol=1e-5,
                               atol=1e-6)


def _zero_posterior_heads(p):
  """Residual parameterisation: with the posterior heads' output at zero, q == p."""
  p = flax.core.unfreeze(jax.tree.map(jnp.asarray, p))
  for name, sub in p['params'].items():
    if name.startswith('post_heads_'):
      sub['scale'] = jnp.zeros_like(sub['scale'])
  return p


def test_residual_posterior_equals_prior_when_heads_are_zero(params):
  p0 = _zero_posterior_heads(params)
  terms = jax.jit(lambda p, x, k: hvae.elbo_terms(MODEL, p, x, k))(p0, X, jax.random.key(2))
  np.testing.assert_allclose(terms['kl_groups'], 0.0, atol=1e-6)
  log_px, log_pz, log_qz = jax.jit(
      lambda p, x, k: hvae.iwae_log_weights(MODEL, p, x, k, 4))(p0, X, jax.random.key(3))
  np.testing.assert_allclose(log_pz, log_qz, rtol=1e-6, atol=1e-4)


def test_sampled_log_ratio_averages_to_the_analytic_kl(params):
  """E_q[log q(z|x) - log p(z)] over many draws equals the mean analytic KL per draw."""
  k = 400
  x = jnp.tile(X[:1], (k, 1, 1, 1))

  @jax.jit
  def both(p, key):
    eps = hvae.draw_noise(MODEL, key, k)
    _, stats = MODEL.apply(p, x, eps)
    analytic = jnp.sum(hvae.group_kls(stats), -1)
    sampled = sum(losses.gaussian_log_prob(g['z'], g['mean'], g['log_var'])
                  - losses.gaussian_log_prob(g['z'], g['prior_mean'], g['prior_log_var'])
                  for g in stats)
    return analytic, sampled

  analytic, sampled = map(np.asarray, both(params, jax.random.key(4)))
  diff = sampled - analytic  # zero-mean noise given z_<l, whatever the parents' draw
  assert abs(diff.mean()) < 4 * diff.std() / np.sqrt(k) + 1e-6
  assert analytic.mean() > 0


def test_iwae_chunks_agree_and_bound_tightens_with_k(params):
  key = jax.random.key(5)
  whole = hvae.iwae_estimate(MODEL, params, X, key, num_samples=12)
  chunked = hvae.iwae_estimate(MODEL, params, X, key, num_samples=12, chunk_size=5)
  np.testing.assert_allclose(whole, chunked, rtol=1e-5)
  # log-weights through the public pieces: logsumexp - log K by hand.
  log_px, log_pz, log_qz = jax.jit(
      lambda p, x, k: hvae.iwae_log_weights(MODEL, p, x, k, 12))(params, X, key)
  log_w = np.asarray(log_px + log_pz - log_qz, np.float64)
  by_hand = np.log(np.mean(np.exp(log_w - log_w.max(0)), 0)) + log_w.max(0)
  np.testing.assert_allclose(whole, by_hand, rtol=1e-5)
  # Jensen: the K-sample bound is above the mean single-sample bound of the same draws.
  assert np.all(np.asarray(whole) >= log_w.mean(0) - 1e-4)
  with pytest.raises(ValueError, match='num_samples'):
    hvae.iwae_estimate(MODEL, params, X, key, num_samples=0)


def test_zero_temperature_samples_the_prior_mean_path(params):
  decode = jax.jit(lambda p, eps, t: MODEL.apply(p, None, eps, method=hvae.HVAE.decode,
                                                 temperatures=t))
  zeros = [0.0] * MODEL.num_groups
  out_a, stats_a = decode(params, hvae.draw_noise(MODEL, jax.random.key(6), 2), zeros)
  out_b, _ = decode(params, hvae.draw_noise(MODEL, jax.random.key(7), 2), zeros)
  np.testing.assert_allclose(out_a, out_b, rtol=1e-6)
  np.testing.assert_allclose(stats_a[0]['z'], stats_a[0]['prior_mean'], rtol=1e-6)
  # Temperature scales the prior's standard deviation, per group.
  eps = hvae.draw_noise(MODEL, jax.random.key(8), 2)
  _, stats_t = decode(params, eps, [0.5, 1.0, 1.0])
  g = stats_t[0]
  np.testing.assert_allclose(g['z'], g['prior_mean'] + 0.5 * jnp.exp(0.5 * g['prior_log_var'])
                             * eps[0], rtol=1e-5, atol=1e-6)
  samples = jax.jit(lambda p, k: hvae.sample_prior(MODEL, p, k, 4, 0.7))(params, jax.random.key(9))
  assert samples.shape == (4, 8, 8, 1) and samples.dtype == jnp.int32
  assert int(samples.min()) >= 0 and int(samples.max()) < 5
  with pytest.raises(ValueError, match='one value per group'):
    hvae.sample_prior(MODEL, params, jax.random.key(9), 4, [1.0])


def test_dropout_only_in_training_and_gradients_finite(params):
  key = jax.random.key(10)
  f = jax.jit(lambda p, k, train: hvae.elbo_terms(MODEL, p, X, k, train=train)['elbo'],
              static_argnums=2)
  np.testing.assert_array_equal(f(params, key, False), f(params, key, False))
  assert not np.allclose(f(params, key, True), f(params, key, False))
  grads = jax.jit(jax.grad(lambda p: -jnp.mean(hvae.elbo_terms(
      MODEL, p, X, key, train=True)['elbo'])))(params)
  assert all(np.all(np.isfinite(g)) for g in jax.tree.leaves(grads))


def test_spectral_norm_estimate_matches_svd():
  w = jnp.asarray(np.random.default_rng(1).normal(size=(36, 8)), jnp.float32)
  est = jax.jit(lambda w: hvae.spectral_norm_estimate(w, num_iters=30))(w)
  np.testing.assert_allclose(est, np.linalg.norm(np.asarray(w, np.float64), 2), rtol=1e-4)
  # d sigma / dW = u1 v1^T.
  u, s, vt = np.linalg.svd(np.asarray(w, np.float64))
  g = jax.jit(jax.grad(lambda w: hvae.spectral_norm_estimate(w, num_iters=30)))(w)
  np.testing.assert_allclose(g, np.outer(u[:, 0], vt[0]), atol=2e-3)  # sign-invariant


@pytest.mark.parametrize('normalization', ['weight', 'spectral', 'none'])
def test_conv_normalisations_against_numpy(normalization):
  conv = hvae.Conv(4, kernel_size=1, normalization=normalization, scale_init=0.5)
  x = jnp.asarray(np.random.default_rng(2).normal(size=(2, 3, 3, 5)), jnp.float32)
  p = conv.init(jax.random.key(0), x)
  y, inter = jax.jit(lambda p, x: conv.apply(p, x, mutable=[hvae.INTERMEDIATES]))(p, x)
  v = np.asarray(p['params']['kernel'], np.float64)[0, 0]  # [5, 4]
  if normalization == 'weight':
    w = v * np.asarray(p['params']['scale']) / np.linalg.norm(v, axis=0)
    np.testing.assert_allclose(np.linalg.norm(w, axis=0), 0.5, rtol=1e-5)
  elif normalization == 'spectral':
    w = 0.5 * v / np.linalg.norm(v, 2)
  else:
    w = 0.5 * v
  np.testing.assert_allclose(y, np.asarray(x, np.float64) @ w, rtol=1e-3, atol=1e-5)
  sigma = jax.tree.leaves(inter)[0]
  np.testing.assert_allclose(sigma, np.linalg.norm(w, 2), rtol=2e-2)


def test_spectral_norms_cover_every_conv(params):
  sig = jax.jit(lambda p: hvae.spectral_norms(MODEL, p))(params)
  num_convs = sum(1 for path, _ in jax.tree_util.tree_leaves_with_path(params)
                  if jax.tree_util.keystr(path).endswith("['kernel']"))
  assert sig.shape == (num_convs,) and np.all(np.asarray(sig) > 0)
