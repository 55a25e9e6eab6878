"""VQ-VAE on digit-shaped images: the bound's terms recomputed in NumPy, the loss's
gradients (straight-through to the encoder, codebook only from its loss), jit/vmap."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.special

from gm_jax.models import vqvae as vqvae_lib

LEVELS = 17


@pytest.fixture(scope='module')
def small():
  model = vqvae_lib.VQVAE(num_levels=LEVELS, num_codes=8, embed_dim=4, hidden=8)
  images = jnp.asarray(np.random.RandomState(0).randint(0, LEVELS, (3, 8, 8, 1)), jnp.uint8)
  params = jax.jit(model.init)(jax.random.key(0), images)
  return model, params, images


def test_shapes_and_the_bound_against_numpy(small):
  model, params, images = small
  out = jax.jit(model.apply)(params, images)
  assert out['logits'].shape == (3, 8, 8, 1, LEVELS)
  assert out['z_e'].shape == out['z_q'].shape == (3, 4, 4, 4)
  assert out['codes'].shape == (3, 4, 4) and out['codebook_loss'].shape == (3,)
  rng = np.random.RandomState(1)
  prior_logits = rng.standard_normal((3, 4, 4, 8))
  codes = np.asarray(out['codes'])
  log_prior = np.sum(
    np.take_along_axis(scipy.special.log_softmax(prior_logits, -1), codes[..., None], -1),
    axis=(1, 2, 3),
  )
  terms = vqvae_lib.vq_bound(out['logits'], images, jnp.asarray(log_prior, jnp.float32))
  logits = np.asarray(out['logits'], np.float64)
  log_px = np.take_along_axis(
    scipy.special.log_softmax(logits, -1), np.asarray(images, np.int64)[..., None], -1
  )
  recon = -np.sum(log_px, axis=(1, 2, 3, 4))
  np.testing.assert_allclose(terms['recon_nll'], recon, rtol=1e-5)
  np.testing.assert_allclose(terms['prior_nll'], -log_prior, rtol=1e-6)
  np.testing.assert_allclose(terms['bound'], recon - log_prior, rtol=1e-5)
  uniform = vqvae_lib.uniform_prior_log_prob(out['codes'], 8)
  np.testing.assert_allclose(uniform, -16 * math.log(8), rtol=1e-6)
  # the codes are the nearest codebook vectors of z_e, and z_q their values
  cb = np.asarray(params['params']['codebook'])
  dist = np.sum((np.asarray(out['z_e'])[..., None, :] - cb) ** 2, -1)
  np.testing.assert_array_equal(codes, dist.argmin(-1))
  np.testing.assert_allclose(out['z_q'], cb[codes], atol=1e-5)
  np.testing.assert_allclose(out['commitment_loss'], dist.min(-1).sum((1, 2)), rtol=1e-4)
  # decoding the codes is decoding z_q
  np.testing.assert_allclose(
    model.apply(params, out['codes'], method=model.decode_codes),
    out['logits'],
    rtol=1e-5,
    atol=1e-5,
  )


@pytest.mark.parametrize('ema', [False, True])
def test_loss_gradients_and_vmap(small, ema):
  model, params, images = small

  def loss(params, images):
    return vqvae_lib.vqvae_loss(model.apply(params, images), images, beta=0.25, ema=ema)

  @jax.jit
  def run(params, images):
    grads = jax.grad(lambda p: jnp.mean(loss(p, images)))(params)
    return loss(params, images), jax.vmap(lambda x: loss(params, x[None])[0])(images), grads

  per_example, vmapped, grads = run(params, images)
  assert per_example.shape == (3,)
  np.testing.assert_allclose(vmapped, per_example, rtol=1e-5)
  g = grads['params']
  assert all(np.all(np.isfinite(v)) for v in jax.tree.leaves(grads))
  # the straight-through estimate brings the decoder's gradient to the encoder
  assert float(jnp.max(jnp.abs(g['encoder']['Conv_0']['kernel']))) > 0
  codebook_grad = float(jnp.max(jnp.abs(g['codebook'])))
  if ema:
    assert codebook_grad == 0.0  # the EMA update moves the codebook, not the gradient
  else:
    assert codebook_grad > 0.0


@pytest.mark.parametrize(
  'kwargs, shape, match',
  [
    ({'num_codes': 1}, (1, 8, 8, 1), 'num_codes'),
    ({'num_levels': 1}, (1, 8, 8, 1), 'num_levels'),
    ({}, (1, 7, 8, 1), 'divisible by 2'),
  ],
)
def test_bad_settings_raise_named_errors(kwargs, shape, match):
  model = vqvae_lib.VQVAE(**{'num_levels': LEVELS, 'hidden': 4, **kwargs})
  with pytest.raises(ValueError, match=match):
    model.init(jax.random.key(0), jnp.zeros(shape, jnp.int32))
