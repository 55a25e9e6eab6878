"""Active units (Burda et al. 2016): counts against cases computed independently."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gm_jax.evaluate import activity
from gm_jax.models import vae as vae_lib

RNG = np.random.default_rng(0)
X = jnp.asarray(RNG.integers(0, 2, (64, 4, 4, 1)), jnp.int32)


def _vae(top=0):
  model = vae_lib.VAE(
    image_shape=(4, 4, 1),
    num_levels=2,
    latent_dim=3,
    hidden=(16,),
    likelihood='bernoulli',
    activation='tanh',
    top_latent_dim=top,
    top_hidden=(8,),
  )
  params = model.init(jax.random.key(0), X[:1])
  return model, jax.tree.map(lambda p: p, params)  # a mutable copy of the dicts


def _set(params, path, value):
  node = params['params']
  for name in path[:-1]:
    node = node[name]
  node[path[-1]] = value


def test_activity_is_the_variance_over_examples():
  m = RNG.normal(size=(50, 4)) * np.array([0.0, 0.05, 0.2, 3.0])
  np.testing.assert_allclose(activity.unit_activity(m), np.var(m, axis=0))
  counts = activity.active_units({'z': m})
  assert counts == {'z': 2, 'z_units': 4}  # var 0.05^2 = 0.0025 < 0.01 < 0.04


def test_one_layer_means_are_the_encoder_means_and_a_dead_unit_is_inactive():
  model, params = _vae()
  kernel = params['params']['to_mean']['kernel']
  _set(params, ('to_mean', 'kernel'), kernel.at[:, 1].set(0.0))  # unit 1 ignores x
  _set(params, ('to_mean', 'kernel'), params['params']['to_mean']['kernel'] * 10.0)
  means = activity.vae_expected_means(model, params, X, jax.random.key(1), batch_size=24)
  assert set(means) == {'z'}
  direct = model.apply(params, X, method=vae_lib.VAE.encode)[0]
  np.testing.assert_allclose(means['z'], direct, rtol=1e-6, atol=1e-6)
  a = activity.unit_activity(means['z'])
  assert a[1] == pytest.approx(0.0, abs=1e-12)
  assert activity.active_units(means) == {'z': int(np.sum(a > 0.01)), 'z_units': 3}
  assert activity.active_units(means)['z'] == 2


def test_second_layer_averages_over_draws_of_z():
  model, params = _vae(top=2)
  # Posterior of z almost a point mass: E_q[z2 | x] is then the top mean at z = E[z | x].
  log_var = params['params']['to_log_var']
  _set(params, ('to_log_var', 'kernel'), jnp.zeros_like(log_var['kernel']))
  _set(params, ('to_log_var', 'bias'), jnp.full_like(log_var['bias'], -40.0))
  means = activity.vae_expected_means(model, params, X, jax.random.key(2), num_samples=4)
  z = model.apply(params, X, method=vae_lib.VAE.encode)[0]
  top = model.apply(params, z, method=vae_lib.VAE.encode_top)[0]
  np.testing.assert_allclose(means['z2'], top, rtol=1e-5, atol=1e-5)
  # With a wide posterior the draws matter: the estimate moves towards its large-S limit.
  _set(params, ('to_log_var', 'bias'), jnp.full_like(log_var['bias'], 1.0))
  few = activity.vae_expected_means(model, params, X, jax.random.key(3), num_samples=1)
  many = activity.vae_expected_means(model, params, X, jax.random.key(4), num_samples=4000)
  z = model.apply(params, X, method=vae_lib.VAE.encode)[0]
  eps = jax.random.normal(jax.random.key(5), (4000,) + z.shape)
  draws = np.asarray(
    model.apply(params, (z + jnp.exp(0.5) * eps).reshape(-1, 3), method=vae_lib.VAE.encode_top)[0]
  ).reshape(4000, len(X), 2)
  ref = draws.mean(0)
  # Two independent 4,000-draw means: their difference has standard error sqrt(2) sd / 63.
  se = np.sqrt(2.0) * draws.std(0) / np.sqrt(4000)
  err_many = np.abs(many['z2'] - ref).max()
  assert np.all(np.abs(many['z2'] - ref) < 5 * se)
  assert np.abs(few['z2'] - ref).max() > err_many


@pytest.mark.parametrize(
  'bad, match',
  [
    (np.zeros((1, 3)), r'\[N >= 2, D\]'),
    (np.zeros(5), r'\[N >= 2, D\]'),
    (np.array([[0.0, np.nan], [1.0, 2.0]]), 'NaN'),
  ],
)
def test_bad_means_are_named(bad, match):
  with pytest.raises(ValueError, match=match):
    activity.unit_activity(bad)


def test_num_samples_must_be_positive():
  model, params = _vae(top=2)
  with pytest.raises(ValueError, match='num_samples'):
    activity.vae_expected_means(model, params, X, jax.random.key(0), num_samples=0)


def test_a_conditional_vae_is_refused():
  model = vae_lib.ConditionalVAE(
    image_shape=(4, 4, 1),
    num_levels=2,
    latent_dim=3,
    hidden=(16,),
    likelihood='bernoulli',
    num_classes=2,
  )
  with pytest.raises(ValueError, match='unconditional'):
    activity.vae_expected_means(model, {}, X, jax.random.key(0))
