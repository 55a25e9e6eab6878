"""The hierarchical VAE: shapes, the residual posterior, KLs and IWAE against independent
computations, tempered sampling, spectral norms and weight normalisation."""

import flax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gm_jax.models import hvae

# Tiny: 8x8 images, groups on 2x2 (one) and 4x4 (two) maps, one residual cell (at the
# output). Every test jits once, and shares what it can: on a busy 2-core CPU, compiling
# the model dominates the run time.
MODEL = hvae.HVAE(
  image_shape=(8, 8, 1),
  num_levels=5,
  groups_per_scale=(1, 2),
  stem_stride=2,
  channels=8,
  latent_channels=2,
  cells_per_group=0,
  output_cells=1,
  dropout_rate=0.2,
)
X = jnp.asarray(np.random.default_rng(0).integers(0, 5, (3, 8, 8, 1)), jnp.int32)


@pytest.fixture(scope='module')
def params():
  return hvae.init_params(MODEL, jax.random.key(0), X)


def test_static_shapes_and_bad_attributes():
  assert MODEL.num_groups == 3 and MODEL.scale_of_group() == [0, 1, 1]
  assert MODEL.latent_shapes() == [(2, 2, 2), (4, 4, 2), (4, 4, 2)]
  photo = hvae.HVAE(
    image_shape=(32, 32, 3), num_levels=256, groups_per_scale=(1, 1, 1), stem_stride=4
  )
  assert photo.latent_shapes() == [(2, 2, 4), (4, 4, 4), (8, 8, 4)]
  with pytest.raises(ValueError, match='normalization'):
    hvae.HVAE(image_shape=(8, 8, 1), num_levels=5, normalization='batch')
  with pytest.raises(ValueError, match='divisible'):
    hvae.HVAE(image_shape=(8, 8, 1), num_levels=5, groups_per_scale=(1, 1, 1, 1))
  with pytest.raises(ValueError, match='stem_stride'):
    hvae.HVAE(image_shape=(8, 8, 1), num_levels=5, stem_stride=3)


def _zero_posterior_heads(p):
  """Residual parameterisation: with the posterior heads' output at zero, q == p."""
  p = flax.core.unfreeze(jax.tree.map(jnp.asarray, p))
  for name, sub in p['params'].items():
    if name.startswith('post_heads_'):
      sub['scale'] = jnp.zeros_like(sub['scale'])
  return p


NUM_DRAWS = 400


@pytest.fixture(scope='module')
def posterior(params):
  """Posterior passes: many draws for one image, and q == p with zeroed posterior heads."""

  @jax.jit
  def run(p, p0, key):
    eps = hvae.draw_noise(MODEL, key, NUM_DRAWS)
    out, stats = MODEL.apply(p, jnp.tile(X[:1], (NUM_DRAWS, 1, 1, 1)), eps)
    _, zero_stats = MODEL.apply(p0, X, [e[:3] for e in eps])
    return dict(
      eps=eps,
      out=out,
      stats=stats,
      kls=hvae.group_kls(stats),
      zero_stats=zero_stats,
      zero_kls=hvae.group_kls(zero_stats),
    )

  return run(params, _zero_posterior_heads(params), jax.random.key(1))


def test_posterior_pass_shapes_and_group_kl_is_the_closed_form(posterior):
  out, stats, eps = posterior['out'], posterior['stats'], posterior['eps']
  assert out.shape == (NUM_DRAWS, 8, 8, 1, 5)
  kls = np.asarray(posterior['kls'])
  assert kls.shape == (NUM_DRAWS, 3) and np.all(kls >= 0)
  for l, g in enumerate(stats):
    assert g['z'].shape == (NUM_DRAWS,) + MODEL.latent_shapes()[l]
    m, lv, pm, plv = (
      np.asarray(g[k][:5], np.float64) for k in ('mean', 'log_var', 'prior_mean', 'prior_log_var')
    )
    closed = 0.5 * (plv - lv + (np.exp(lv) + (m - pm) ** 2) / np.exp(plv) - 1)
    np.testing.assert_allclose(kls[:5, l], closed.reshape(5, -1).sum(1), rtol=1e-4, atol=1e-6)
    # z is the reparameterised posterior sample.
    np.testing.assert_allclose(
      g['z'][:5], m + np.exp(0.5 * lv) * np.asarray(eps[l][:5]), rtol=1e-5, atol=1e-6
    )


def _log_normal(z, mean, log_var):
  z, mean, log_var = (np.asarray(a, np.float64) for a in (z, mean, log_var))
  lp = -0.5 * (np.log(2 * np.pi) + log_var + (z - mean) ** 2 / np.exp(log_var))
  return lp.reshape(lp.shape[0], -1).sum(1)


def test_residual_posterior_equals_prior_when_heads_are_zero(posterior):
  np.testing.assert_allclose(posterior['zero_kls'], 0.0, atol=1e-6)
  for g in posterior['zero_stats']:
    np.testing.assert_allclose(g['mean'], g['prior_mean'], atol=1e-6)
    np.testing.assert_allclose(g['log_var'], g['prior_log_var'], atol=1e-6)


def test_sampled_log_ratio_averages_to_the_analytic_kl(posterior):
  """E_q[log q(z|x) - log p(z)] over many draws equals the mean analytic KL per draw."""
  analytic = np.asarray(posterior['kls'], np.float64).sum(1)
  sampled = sum(
    _log_normal(g['z'], g['mean'], g['log_var'])
    - _log_normal(g['z'], g['prior_mean'], g['prior_log_var'])
    for g in posterior['stats']
  )
  diff = sampled - analytic  # zero-mean noise given z_<l, whatever the parents' draw
  assert abs(diff.mean()) < 4 * diff.std() / np.sqrt(NUM_DRAWS) + 1e-6
  assert analytic.mean() > 0


def test_iwae_chunks_agree_with_a_hand_logsumexp(params):
  key = jax.random.key(5)
  fn = jax.jit(lambda p, x, k, start: hvae.iwae_log_weights(MODEL, p, x, k, 4, start))
  parts = [fn(params, X, key, start) for start in (0, 4, 8, 2)]
  log_w = np.concatenate([np.asarray(a + b - c, np.float64) for a, b, c in parts[:3]])
  # Draw k depends on k only, not on how the draws are chunked.
  shifted = np.asarray(parts[3][0] + parts[3][1] - parts[3][2])
  np.testing.assert_allclose(shifted, log_w[2:6], rtol=1e-6)
  estimate = hvae.iwae_estimate(MODEL, params, X, key, num_samples=12, chunk_size=4)
  by_hand = np.log(np.mean(np.exp(log_w - log_w.max(0)), 0)) + log_w.max(0)
  np.testing.assert_allclose(estimate, by_hand, rtol=1e-5)
  # Chunks that do not divide K: the last one's surplus draws are dropped.
  for chunk in (5, 12, 100):
    np.testing.assert_allclose(
      hvae.iwae_estimate(MODEL, params, X, key, num_samples=12, chunk_size=chunk),
      by_hand,
      rtol=1e-5,
    )
  # Jensen: the K-sample bound is above the mean single-sample bound of the same draws.
  assert np.all(np.asarray(estimate) >= log_w.mean(0) - 1e-4)
  with pytest.raises(ValueError, match='num_samples'):
    hvae.iwae_estimate(MODEL, params, X, key, num_samples=0)


def test_iwae_chunk_size_fits_the_budget_and_grows_off_cpu(monkeypatch):
  mnist = hvae.HVAE(
    image_shape=(28, 28, 1), num_levels=2, stem_stride=2, channels=32, likelihood='bernoulli'
  )
  per_pair = 4 * (784 * 32 * 10 + 784 * 1 * 1 * 3)  # ~1 MB of activations per pair
  assert hvae.iwae_chunk_size(mnist, 120, 1000, memory_budget_bytes=per_pair * 120 * 30) == 30
  assert hvae.iwae_chunk_size(mnist, 120, 7, memory_budget_bytes=1) == 1
  assert hvae.iwae_chunk_size(MODEL, 3, 12, memory_budget_bytes=1 << 40) == 12
  # A 96 MiB CPU budget gives a 28x28 batch of 120 one draw per call; an accelerator more.
  assert jax.default_backend() == 'cpu'
  assert hvae.iwae_chunk_size(mnist, 120, 1000) == 1
  monkeypatch.setattr(jax, 'default_backend', lambda: 'gpu')
  assert hvae.iwae_chunk_size(mnist, 120, 1000) == 17  # 2 GiB / (120 x ~1 MB)


def test_temperature_scales_the_prior_std_per_group(params):
  eps = hvae.draw_noise(MODEL, jax.random.key(8), 4)
  temps = jnp.array([0.5, 1.0, 1.0])

  @jax.jit
  def run(p, temps):
    decode = lambda t: MODEL.apply(p, None, eps, method=hvae.HVAE.decode, temperatures=t)
    return dict(
      cold=decode(jnp.zeros(3)),
      mixed=decode(temps)[1],
      samples=hvae.sample_prior(MODEL, p, jax.random.key(9), 4, 0.7),
    )

  r = run(params, temps)
  out, stats = r['cold']
  np.testing.assert_allclose(out, np.broadcast_to(out[:1], out.shape), atol=1e-5)  # t = 0
  np.testing.assert_allclose(stats[0]['z'], stats[0]['prior_mean'], rtol=1e-6)
  g = r['mixed'][0]
  np.testing.assert_allclose(
    g['z'], g['prior_mean'] + 0.5 * jnp.exp(0.5 * g['prior_log_var']) * eps[0], rtol=1e-5, atol=1e-6
  )
  assert r['samples'].shape == (4, 8, 8, 1) and r['samples'].dtype == jnp.int32
  assert int(r['samples'].min()) >= 0 and int(r['samples'].max()) < 5
  with pytest.raises(ValueError, match='one value per group'):
    hvae.sample_prior(MODEL, params, jax.random.key(9), 4, [1.0])


def test_dropout_only_in_training_gradients_finite_and_spectral_norms(params):
  key = jax.random.key(10)

  @jax.jit
  def run(p):
    train, grads = jax.value_and_grad(
      lambda q: jnp.mean(hvae.elbo_terms(MODEL, q, X, key, train=True)['elbo'])
    )(p)
    evaluate = jnp.mean(hvae.elbo_terms(MODEL, p, X, key)['elbo'])
    return evaluate, train, grads, hvae.spectral_norms(MODEL, p)

  evaluate, train, grads, sig = run(params)
  assert np.isfinite(evaluate) and not np.allclose(train, evaluate)
  assert all(np.all(np.isfinite(g)) for g in jax.tree.leaves(grads))
  num_convs = sum(
    1
    for path, _ in jax.tree_util.tree_leaves_with_path(params)
    if jax.tree_util.keystr(path).endswith("['kernel']")
  )
  assert sig.shape == (num_convs,) and np.all(np.asarray(sig) > 0)


def test_spectral_norm_estimate_matches_svd():
  w = jnp.asarray(np.random.default_rng(1).normal(size=(36, 8)), jnp.float32)
  est = jax.jit(lambda w: hvae.spectral_norm_estimate(w, num_iters=30))(w)
  np.testing.assert_allclose(est, np.linalg.norm(np.asarray(w, np.float64), 2), rtol=1e-4)
  # d sigma / dW = u1 v1^T.
  u, _, vt = np.linalg.svd(np.asarray(w, np.float64))
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
    w = 0.5 * v / float(jax.jit(hvae.spectral_norm_estimate)(jnp.asarray(v, jnp.float32)))
    assert 0.5 <= np.linalg.norm(w, 2) <= 0.5 / 0.85  # the estimate is a little low
  else:
    w = 0.5 * v
  np.testing.assert_allclose(y, np.asarray(x, np.float64) @ w, rtol=1e-3, atol=1e-5)
  # Power iteration from a fixed start, no carried state: a slight underestimate.
  sigma, true = float(jax.tree.leaves(inter)[0]), np.linalg.norm(w, 2)
  assert 0.85 * true <= sigma <= true * (1 + 1e-5)
