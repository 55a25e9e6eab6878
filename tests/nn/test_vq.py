"""Vector quantisation against NumPy: nearest codes, losses, straight-through gradients,
the EMA codebook update (van den Oord et al. 2017, appendix A.1), dead-code restarts and
codebook usage, under jit/vmap/grad."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gm_jax.nn import vq

K, D = 6, 3


def _data(seed, shape=(4, 5)):
  rng = np.random.RandomState(seed)
  return (
    rng.standard_normal(shape + (D,)).astype(np.float32),
    rng.standard_normal((K, D)).astype(np.float32),
  )


def test_quantize_matches_numpy_under_jit_and_vmap():
  z, codebook = _data(0)
  dist = np.sum((z[..., None, :] - codebook) ** 2, -1)  # brute force [4, 5, K]
  codes = np.argmin(dist, -1)
  out = jax.jit(vq.vector_quantize)(z, codebook)
  np.testing.assert_array_equal(out.codes, codes)
  np.testing.assert_allclose(out.z_q, codebook[codes], rtol=1e-6, atol=1e-6)
  np.testing.assert_allclose(out.codebook_loss, dist.min(-1), rtol=1e-5)
  np.testing.assert_allclose(out.commitment_loss, dist.min(-1), rtol=1e-5)
  per_example = jax.vmap(vq.vector_quantize, in_axes=(0, None))(z, codebook)
  np.testing.assert_array_equal(per_example.codes, codes)
  np.testing.assert_allclose(per_example.codebook_loss, out.codebook_loss, rtol=1e-6)


def test_straight_through_and_loss_gradients():
  z, codebook = _data(1)
  w = np.random.RandomState(2).standard_normal(z.shape).astype(np.float32)
  codes = vq.vector_quantize(z, codebook).codes
  e = codebook[np.asarray(codes)]
  # the decoder's gradient passes to z_e unchanged, and none reaches the codebook
  g_z, g_e = jax.jit(
    jax.grad(lambda z, c: jnp.sum(w * vq.vector_quantize(z, c).z_q), argnums=(0, 1))
  )(z, codebook)
  np.testing.assert_allclose(g_z, w, rtol=1e-6)
  np.testing.assert_array_equal(g_e, 0.0)
  # codebook loss: gradient 2 (e - z_e) to the chosen codes only, none to z_e
  g_z, g_e = jax.grad(lambda z, c: jnp.sum(vq.vector_quantize(z, c).codebook_loss), argnums=(0, 1))(
    z, codebook
  )
  np.testing.assert_array_equal(g_z, 0.0)
  expected = np.zeros_like(codebook)
  np.add.at(expected, np.asarray(codes).reshape(-1), 2 * (e - z).reshape(-1, D))
  np.testing.assert_allclose(g_e, expected, rtol=1e-5, atol=1e-5)
  # commitment loss: gradient 2 (z_e - e) to z_e, none to the codebook
  g_z, g_e = jax.grad(
    lambda z, c: jnp.sum(vq.vector_quantize(z, c).commitment_loss), argnums=(0, 1)
  )(z, codebook)
  np.testing.assert_allclose(g_z, 2 * (z - e), rtol=1e-5, atol=1e-6)
  np.testing.assert_array_equal(g_e, 0.0)


def test_ema_update_matches_numpy():
  _, codebook = _data(3)
  state = vq.ema_init(jnp.asarray(codebook))
  counts, sums = np.ones(K), codebook.astype(np.float64).copy()
  decay, eps = 0.9, 1e-5
  rng = np.random.RandomState(4)
  for step in range(3):
    zb = rng.standard_normal((7, D)).astype(np.float32)
    codes = np.asarray(vq.nearest_codes(jnp.asarray(zb), state.codebook))
    state = jax.jit(lambda s, z, c: vq.ema_update(s, z, c, decay=decay, eps=eps))(state, zb, codes)
    n = np.array([np.sum(codes == i) for i in range(K)], np.float64)
    m = np.stack([zb[codes == i].sum(0) for i in range(K)])
    counts = decay * counts + (1 - decay) * n
    sums = decay * sums + (1 - decay) * m
    total = counts.sum()
    smoothed = (counts + eps) / (total + K * eps) * total
    np.testing.assert_allclose(state.counts, counts, rtol=1e-5)
    np.testing.assert_allclose(state.sums, sums, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(state.codebook, sums / smoothed[:, None], rtol=1e-4, atol=1e-6)
    assert step < 1 or n.min() == 0  # some code unused: the smoothing keeps it finite
  assert np.all(np.isfinite(np.asarray(state.codebook)))


def test_restart_dead_codes():
  z, codebook = _data(5)
  state = vq.ema_init(jnp.asarray(codebook))
  counts = np.array([0.5, 1e-4, 2.0, 0.0, 3.0, 1e-3], np.float32)
  state = state._replace(counts=jnp.asarray(counts))
  new, dead = jax.jit(lambda k, s, z: vq.restart_dead_codes(k, s, z, threshold=1e-2))(
    jax.random.key(0), state, z
  )
  np.testing.assert_array_equal(dead, counts < 1e-2)
  rows = z.reshape(-1, D)
  for i in range(K):
    if counts[i] < 1e-2:
      assert np.any(np.all(np.isclose(rows, new.codebook[i]), -1))  # a batch vector
      np.testing.assert_allclose(new.sums[i], new.codebook[i])
      assert float(new.counts[i]) == 1.0
    else:
      np.testing.assert_array_equal(new.codebook[i], codebook[i])
      assert float(new.counts[i]) == counts[i]


def test_codebook_usage_matches_numpy():
  codes = np.array([[0, 0, 1, 3], [3, 3, 3, 0]])
  perplexity, used = jax.jit(vq.codebook_usage, static_argnums=1)(codes, K)
  p = np.bincount(codes.reshape(-1), minlength=K) / codes.size
  nz = p[p > 0]
  np.testing.assert_allclose(perplexity, np.exp(-np.sum(nz * np.log(nz))), rtol=1e-6)
  assert int(used) == 3
  np.testing.assert_allclose(vq.codebook_usage(np.arange(K), K)[0], K, rtol=1e-6)


@pytest.mark.parametrize(
  'make, match',
  [
    (lambda: vq.vector_quantize(jnp.zeros((2, D)), jnp.zeros((1, D))), 'codebook size'),
    (lambda: vq.vector_quantize(jnp.zeros((2, D)), jnp.zeros((K, D + 1))), 'codebook'),
    (
      lambda: vq.ema_update(
        vq.ema_init(jnp.zeros((K, D))), jnp.zeros((2, D)), jnp.zeros((2,), jnp.int32), decay=1.0
      ),
      'decay',
    ),
    (lambda: vq.check_codebook_size(1), 'num_codes'),
  ],
)
def test_bad_input_names_the_field(make, match):
  with pytest.raises(ValueError, match=match):
    make()
