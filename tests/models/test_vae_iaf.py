"""The VAE with an IAF posterior: its ELBO and IWAE terms against a recomputation.

The recomputation draws the same noise, pushes it through the encoder, the IAF steps
one by one and the decoder, and takes log q(z|x) from `slogdet` of `jacfwd` of the whole
map eps -> z (float64), the Gaussian densities from SciPy: nothing of `iaf_log_q` or the
flow's summed log-dets.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import special
from scipy import stats

from gm_jax.models import vae as vae_lib


@pytest.fixture(scope='module')
def setup():
  with jax.enable_x64(True):
    model = vae_lib.VAE(
      image_shape=(4, 4, 1),
      num_levels=5,
      latent_dim=3,
      hidden=(16,),
      posterior='iaf',
      iaf_steps=2,
      iaf_hidden=(8,),
    )
    x = jax.random.randint(jax.random.key(0), (2, 4, 4, 1), 0, 5)
    params = model.init(jax.random.key(1), x)
    # Perturb every parameter: the IAF's MADE outputs start at zero (steps near identity).
    leaves, tree = jax.tree.flatten(params)
    keys = jax.random.split(jax.random.key(2), len(leaves))
    leaves = [
      (p + 0.3 * jax.random.normal(k, p.shape)).astype(jnp.float64) for p, k in zip(leaves, keys)
    ]
    yield model, jax.tree.unflatten(tree, leaves), x


@functools.cache
def _programs(model):
  """`(z_and_jac, decode)` compiled once per model (the per-example loops re-use them, instead
  of dispatching every op of the recomputation eagerly)."""
  steps = [f'steps_{t}' for t in range(model.iaf_steps)]

  def to_z(params, e, m, lv, c):  # one example: eps [D] -> z [D], the steps one by one
    z = m + jnp.exp(0.5 * lv) * e
    for t, name in enumerate(steps):
      step = vae_lib.iaf_lib.IAFStep(tuple(model.iaf_hidden), reverse=bool(t % 2))
      z, _ = step.apply({'params': params['params']['iaf'][name]}, z, c)
    return z

  def z_and_jac(params, e, m, lv, c):
    return to_z(params, e, m, lv, c), jax.jacfwd(to_z, argnums=1)(params, e, m, lv, c)

  decode = lambda params, z: model.apply(params, z, method=vae_lib.VAE.decode)
  return jax.jit(z_and_jac), jax.jit(decode)


def _recompute(model, params, x, eps):
  """(log p(x|z), log p(z), log q(z|x)) for the noise eps `[B, D]`, each `[B]` (NumPy)."""
  mean, log_var, context = model.apply(params, x, method=vae_lib.VAE.encode_with_context)
  z_and_jac, decode = _programs(model)
  out = []
  for b in range(x.shape[0]):
    z, jac = z_and_jac(params, eps[b], mean[b], log_var[b], context[b])
    log_q = stats.norm.logpdf(np.asarray(eps[b])).sum() - np.linalg.slogdet(np.asarray(jac))[1]
    log_pz = stats.norm.logpdf(np.asarray(z)).sum()
    dec = decode(params, z[None])
    logits = np.asarray(dec[0, ..., :], np.float64)  # [H, W, C, L]
    log_probs = logits - special.logsumexp(logits, axis=-1, keepdims=True)
    log_px = np.take_along_axis(log_probs, np.asarray(x[b])[..., None], -1).sum()
    out.append((log_px, log_pz, log_q))
  return np.asarray(out).T


def test_iaf_elbo_terms_equal_the_recomputation(setup):
  model, params, x = setup
  key = jax.random.key(3)
  with jax.enable_x64(True):
    terms = vae_lib.elbo_terms(model, params, x, None, key)
    eps_key = jax.random.split(key)[1]
    eps = jax.random.normal(eps_key, (x.shape[0], model.latent_dim), jnp.float64)
    log_px, log_pz, log_q = _recompute(model, params, x, eps)
  np.testing.assert_allclose(terms['log_px_given_z'], log_px, rtol=1e-9)
  np.testing.assert_allclose(terms['kl'], log_q - log_pz, rtol=1e-9)
  np.testing.assert_allclose(terms['elbo'], log_px - (log_q - log_pz), rtol=1e-9)
  assert np.all(np.abs(log_q - stats.norm.logpdf(np.asarray(eps)).sum(-1)) > 1e-3)  # not a no-op


def test_iaf_iwae_weights_and_estimate_equal_the_recomputation(setup):
  model, params, x = setup
  key, num = jax.random.key(4), 3
  with jax.enable_x64(True):
    log_px, log_pz, log_qz = vae_lib.iwae_log_weights(model, params, x, None, key, num)
    estimate = vae_lib.iwae_estimate(model, params, x, None, key, num_samples=num, chunk_size=2)
    rows = [
      _recompute(
        model,
        params,
        x,
        jax.random.normal(jax.random.fold_in(key, i), (x.shape[0], model.latent_dim), jnp.float64),
      )
      for i in range(num)
    ]
  expected = np.stack(rows, 1)  # [3 terms, K, B]
  for got, want in zip((log_px, log_pz, log_qz), expected):
    np.testing.assert_allclose(got, want, rtol=1e-9)
  weights = expected[0] + expected[1] - expected[2]
  np.testing.assert_allclose(estimate, special.logsumexp(weights, axis=0) - np.log(num), rtol=1e-9)


def test_diagonal_posterior_has_no_flow_and_bad_posterior_is_named():
  model = vae_lib.VAE(image_shape=(4, 4, 1), num_levels=5, latent_dim=3, hidden=(8,))
  params = model.init(jax.random.key(0), jnp.zeros((1, 4, 4, 1), jnp.int32))
  assert 'iaf' not in params['params'] and 'to_context' not in params['params']
  with pytest.raises(ValueError, match='posterior'):
    vae_lib.VAE(image_shape=(4, 4, 1), num_levels=5, posterior='nonsense')
