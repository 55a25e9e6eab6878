"""VAE with a second stochastic layer (Burda et al. 2016's two-layer model): exact checks."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from scipy import special
from scipy import stats

from gm_jax import data as gm_data
from gm_jax.families import vae as vae_family
from gm_jax.models import vae as vae_lib


def _tiny(latent=1, top=1, scale=0.3):
  model = vae_lib.VAE(
    image_shape=(2, 2, 1),
    num_levels=2,
    latent_dim=latent,
    hidden=(8,),
    likelihood='bernoulli',
    activation='tanh',
    top_latent_dim=top,
    top_hidden=(8,),
  )

  @jax.jit  # one program (eager init compiled every op on its own)
  def init(x):
    params = model.init(jax.random.key(0), x)
    leaves, tree = jax.tree.flatten(params)
    keys = jax.random.split(jax.random.key(1), len(leaves))
    return jax.tree.unflatten(
      tree, [l + scale * jax.random.normal(k, l.shape) for l, k in zip(leaves, keys)]
    )

  return model, init(jnp.zeros((1, 2, 2, 1), jnp.int32))


X = jnp.array([[[[0], [1]], [[1], [1]]], [[[1], [0]], [[0], [0]]]], jnp.int32)


def test_parameters_of_both_layers_exist():
  _, params = _tiny()
  assert {'encoder', 'decoder', 'top'} <= set(params['params'])
  # The second stochastic layer is one named submodule, q(z2 | z) and p(z | z2).
  assert set(params['params']['top']) == {
    'encoder',
    'to_mean',
    'to_log_var',
    'decoder',
    'prior_to_mean',
    'prior_to_log_var',
  }
  # The decoder's output layer is named, not found by counting Dense layers.
  assert 'out' in params['params']['decoder']


def test_log_weights_match_a_numpy_computation_with_the_same_noise():
  model, params = _tiny(latent=2, top=3)
  key, k = jax.random.key(4), 3
  log_px, log_prior, log_q = vae_lib.iwae_log_weights(model, params, X, None, key, k)
  mean, log_var = (
    np.asarray(a, np.float64) for a in model.apply(params, X, method=vae_lib.VAE.encode)
  )
  for i in range(k):
    eps = np.asarray(jax.random.normal(jax.random.fold_in(key, i), (2, 2)), np.float64)
    eps2 = np.asarray(
      jax.random.normal(jax.random.fold_in(jax.random.fold_in(key, i), 1), (2, 3)), np.float64
    )
    z = mean + np.exp(0.5 * log_var) * eps
    m2, lv2 = (
      np.asarray(a, np.float64)
      for a in model.apply(params, jnp.asarray(z, jnp.float32), method=vae_lib.VAE.encode_top)
    )
    z2 = m2 + np.exp(0.5 * lv2) * eps2
    pm, plv = (
      np.asarray(a, np.float64)
      for a in model.apply(params, jnp.asarray(z2, jnp.float32), method=vae_lib.VAE.prior)
    )
    logits = np.asarray(
      model.apply(params, jnp.asarray(z, jnp.float32), method=vae_lib.VAE.decode), np.float64
    )[..., 0, 0]
    p1 = special.expit(logits)
    want_px = np.sum(stats.bernoulli.logpmf(np.asarray(X)[..., 0], p1), axis=(1, 2))
    norm = lambda x, m, lv: np.sum(stats.norm.logpdf(x, m, np.exp(0.5 * lv)), -1)
    want_prior = norm(z, pm, plv) + np.sum(stats.norm.logpdf(z2), -1)
    want_q = norm(z, mean, log_var) + norm(z2, m2, lv2)
    np.testing.assert_allclose(np.asarray(log_px)[i], want_px, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(np.asarray(log_prior)[i], want_prior, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(np.asarray(log_q)[i], want_q, rtol=1e-4, atol=1e-4)


def test_iwae_matches_the_marginal_likelihood_by_quadrature():
  model, params = _tiny(latent=1, top=1)
  # Proposals wider than the posteriors (constant variance e^1 in both layers) keep the
  # importance weights light-tailed, so K = 20,000 and its standard error are reliable.
  for layer in (params['params']['to_log_var'], params['params']['top']['to_log_var']):
    layer['bias'], layer['kernel'] = layer['bias'] + 1.0, layer['kernel'] * 0
  # log p(x) = log of the double integral of p(x|z) p(z|z2) N(z2; 0, 1) over a grid.
  grid = np.linspace(-8, 8, 801)
  step = grid[1] - grid[0]
  pm, plv = (
    np.asarray(a, np.float64)[:, 0]
    for a in model.apply(params, jnp.asarray(grid[:, None], jnp.float32), method=vae_lib.VAE.prior)
  )  # p(z | z2 = grid)
  log_pz_given_z2 = stats.norm.logpdf(grid[None, :], pm[:, None], np.exp(0.5 * plv)[:, None])
  log_pz = special.logsumexp(log_pz_given_z2 + stats.norm.logpdf(grid)[:, None], axis=0) + np.log(
    step
  )  # [z grid]
  logits = np.asarray(
    model.apply(params, jnp.asarray(grid[:, None], jnp.float32), method=vae_lib.VAE.decode),
    np.float64,
  )[..., 0, 0]
  exact = []
  for i in range(2):
    log_px = np.sum(
      stats.bernoulli.logpmf(np.asarray(X)[i, ..., 0][None], special.expit(logits)), axis=(1, 2)
    )
    exact.append(special.logsumexp(log_px + log_pz) + np.log(step))
  k = 20000
  log_w = np.asarray(
    sum(
      w * s
      for w, s in zip(
        vae_lib.iwae_log_weights(model, params, X, None, jax.random.key(2), k), (1, 1, -1)
      )
    ),
    np.float64,
  )
  iwae = special.logsumexp(log_w, axis=0) - np.log(k)
  w = np.exp(log_w - log_w.max(axis=0))
  se = w.std(axis=0) / (w.mean(axis=0) * np.sqrt(k))
  assert np.all(se < 0.03)  # the estimate is informative
  assert np.all(np.abs(iwae - np.array(exact)) < 4 * se + 1e-3), (iwae, exact, se)
  assert np.all(log_w.mean(axis=0) <= np.array(exact) + 1e-3)  # the ELBO is below


def test_chunks_and_one_sample_elbo_agree():
  model, params = _tiny(latent=2, top=2)
  whole = vae_lib.iwae_estimate(
    model, params, X, None, jax.random.key(5), num_samples=200, chunk_size=200
  )
  chunked = vae_lib.iwae_estimate(
    model, params, X, None, jax.random.key(5), num_samples=200, chunk_size=7
  )
  np.testing.assert_allclose(np.asarray(whole), np.asarray(chunked), rtol=1e-5)
  terms = vae_lib.elbo_terms(model, params, X, None, jax.random.key(6), train=True)
  np.testing.assert_allclose(
    np.asarray(terms['elbo']), np.asarray(terms['log_px_given_z'] - terms['kl']), rtol=1e-6
  )
  # Mean of many one-sample ELBOs = mean of the K = 1 log weights (same expectation).
  keys = jax.random.split(jax.random.key(7), 2000)
  elbos = jax.vmap(lambda k: vae_lib.elbo_terms(model, params, X, None, k)['elbo'])(keys)
  lw = vae_lib.iwae_log_weights(model, params, X, None, jax.random.key(8), 2000)
  lw = np.asarray(lw[0] + lw[1] - lw[2])
  se = np.sqrt(np.var(np.asarray(elbos), 0) / 2000 + np.var(lw, 0) / 2000)
  assert np.all(np.abs(np.asarray(elbos).mean(0) - lw.mean(0)) < 4 * se)


def test_gradients_reach_both_layers_and_samples_are_binary():
  model, params = _tiny(latent=2, top=2)
  grads = jax.grad(
    lambda p: (
      -jnp.mean(vae_lib.elbo_terms(model, p, X, None, jax.random.key(1), train=True)['elbo'])
    )
  )(params)
  for name in ('encoder', 'to_mean', 'prior_to_mean', 'prior_to_log_var'):
    assert any(
      np.abs(np.asarray(g)).sum() > 0 for g in jax.tree.leaves(grads['params']['top'][name])
    )
  samples = vae_lib.sample_prior(model, params, jax.random.key(0), 6)
  assert samples.shape == (6, 2, 2, 1) and samples.dtype == jnp.int32
  assert set(np.unique(np.asarray(samples))) <= {0, 1}


@pytest.mark.parametrize(
  'kwargs,match',
  [
    (dict(top_latent_dim=-1), 'top_latent_dim must be >= 0'),
    (dict(top_latent_dim=2, architecture='conv'), "needs architecture='mlp'"),
    (dict(top_latent_dim=2, num_classes=3), 'unconditional'),
  ],
)
def test_bad_two_layer_settings_are_named(kwargs, match):
  with pytest.raises(ValueError, match=match):
    vae_lib.VAE(image_shape=(8, 8, 1), num_levels=17, **kwargs)


def test_config_builds_the_two_layer_model():
  config = ml_collections.ConfigDict(
    dict(
      model='vae',
      latent_dim=100,
      hidden=(100, 100),
      architecture='mlp',
      likelihood='bernoulli',
      dropout_rate=0.0,
      activation='tanh',
      top_latent_dim=50,
      top_hidden=(50, 50),
      posterior='diagonal',
      iaf_steps=2,
      iaf_hidden=(64, 64),
    )
  )
  info = gm_data.DatasetInfo(
    name='binarized_mnist', kind='image', shape=(28, 28, 1), num_levels=2, num_classes=None
  )
  model = vae_family.build_model(config, info)
  assert model.top_latent_dim == 50 and tuple(model.top_hidden) == (50, 50)
  assert model.latent_dim == 100
