"""PixelCNN and CausalConvLM: causality by Jacobian, exact normalisation, input checks.

Parameters are random (N(0, 0.5^2) added to the initialisation), so no dependence is
zero by accident; a zero in a Jacobian below is exactly zero because a mask or a shift
removes the path.
"""

import itertools
import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gm_jax import losses
from gm_jax.models.autoregressive import CausalConvLM
from gm_jax.models.autoregressive import PixelCNN
from gm_jax.nn.layers import images_to_unit

_jit = jax.jit  # compiled fast by the suite's XLA flags (tests/conftest.py)


def _random_params(model, x, seed=0, scale=0.5):
  params = _jit(model.init)(jax.random.key(seed), jnp.asarray(x))
  leaves, tree = jax.tree.flatten(params)
  rng = np.random.RandomState(seed)
  return jax.tree.unflatten(
    tree, [a + scale * rng.standard_normal(a.shape).astype(a.dtype) for a in leaves]
  )


def test_pixelcnn_is_causal_in_raster_and_channel_order_with_no_blind_spot():
  """d logits[i, j, c] / d x[i', j', c'] == 0 exactly iff (i', j', c') is not before
  (i, j, c) in raster-then-RGB order; with 3 layers on 4x4 the receptive field covers
  every earlier position (a plain masked PixelCNN would miss the pixels up-right)."""
  h, w, c, levels = 4, 4, 3, 4
  model = PixelCNN(num_levels=levels, num_channels=c, features=6, num_layers=3)
  x = jnp.zeros((1, h, w, c), jnp.int32)
  params = _random_params(model, x)
  u = images_to_unit(jax.random.randint(jax.random.key(1), (1, h, w, c), 0, levels), levels)
  f = lambda u: model.apply(params, u, method=model.logits_from_unit)
  jac = _jit(jax.jacrev(f))(u)  # [1, H, W, C, L, 1, H, W, C]
  chex.assert_shape(jac, (1, h, w, c, levels, 1, h, w, c))
  dep = np.abs(np.asarray(jac)).sum(axis=4)[0, ..., 0, :, :, :].reshape(h * w * c, h * w * c)
  order = np.arange(h * w * c)
  earlier = order[None, :] < order[:, None]  # [output position, input position]
  assert np.all(dep[~earlier] == 0.0)  # no position, nor a later channel, leaks
  assert np.all(dep[earlier] > 0.0)  # every earlier position is seen: no blind spot


def test_pixelcnn_single_channel_first_pixel_sees_nothing():
  model = PixelCNN(num_levels=17, features=8, num_layers=2)
  x = jnp.zeros((1, 3, 3, 1), jnp.int32)
  params = _random_params(model, x)
  f = lambda u: model.apply(params, u, method=model.logits_from_unit)
  jac = np.asarray(_jit(jax.jacrev(f))(images_to_unit(x, 17)))
  assert np.all(jac[0, 0, 0] == 0.0)  # p(x_0) is a constant distribution
  assert np.all(jac[0, 0, 1][..., 0, 0, 0, :] != 0.0)  # x_1 depends on x_0


def test_causal_conv_lm_is_causal_with_its_receptive_field():
  """d logits[t] / d e[s] == 0 for s >= t and for s < t - R (R = 1 + sum (K-1) d), and
  non-zero for t - R <= s < t."""
  t_len, dilations = 14, (1, 2, 4)
  model = CausalConvLM(vocab_size=5, channels=6, dilations=dilations)
  tokens = jnp.asarray(np.random.RandomState(0).randint(0, 5, (1, t_len)))
  params = _random_params(model, tokens)
  e = _jit(lambda p, t: model.apply(p, t, method=lambda m, t: m.embed(t)))(params, tokens)
  f = lambda e: model.apply(params, e, method=model.logits_from_embeddings)
  jac = np.asarray(_jit(jax.jacrev(f))(e))  # [1, T, V, 1, T, C]
  dep = np.abs(jac).sum(axis=(2, 5))[0, :, 0]  # [t, s]
  reach = 1 + sum(dilations)  # kernel_size 2
  for t in range(t_len):
    for s in range(t_len):
      if t - reach <= s < t:
        assert dep[t, s] > 0, (t, s)
      else:
        assert dep[t, s] == 0.0, (t, s)


def _pixelcnn_cached_nll(model, params, x):
  """-log p(x) from the cached per-pixel decoder (a separate code path)."""
  return _jit(lambda p, x: _cached_nll(model, p, x))(params, x)


def _cached_nll(model, params, x):
  b, h, w, c = x.shape
  cache = model.apply(params, b, w, method=model.init_cache)
  nll = jnp.zeros(b)
  for i in range(h):
    for j in range(w):
      pixel = jnp.zeros((b, c), jnp.int32)
      for ch in range(c):
        logits, inputs = model.apply(params, cache, pixel, j, method=model.pixel_logits)
        logp = jax.nn.log_softmax(logits[:, ch])
        nll -= jnp.take_along_axis(logp, x[:, i, j, ch, None], axis=1)[:, 0]
        pixel = pixel.at[:, ch].set(x[:, i, j, ch])
      cache = model.apply(params, cache, pixel, inputs, method=model.push_pixel)
    cache = model.apply(params, cache, x[:, i], method=model.end_row)
  return nll


@pytest.mark.parametrize('shape,levels', [((2, 2, 1), 3), ((1, 2, 3), 2)])
def test_pixelcnn_probabilities_sum_to_one_and_match_cached_decoder(shape, levels):
  """Brute force over every image: sum_x exp(-NLL(x)) == 1, and the NLL equals the sum
  of per-position conditionals from the cached decoder."""
  c = shape[-1]
  model = PixelCNN(num_levels=levels, num_channels=c, features=2 * c, num_layers=2)
  images = np.array(
    list(itertools.product(range(levels), repeat=math.prod(shape))), np.int32
  ).reshape((-1,) + shape)
  params = _random_params(model, images[:1])
  nll = _jit(lambda p, x: losses.autoregressive_nll(model.apply(p, x), x))(params, images)
  nll = np.asarray(nll, np.float64)
  np.testing.assert_allclose(np.exp(-nll).sum(), 1.0, rtol=1e-5)
  np.testing.assert_allclose(
    _pixelcnn_cached_nll(model, params, jnp.asarray(images)), nll, rtol=1e-4, atol=1e-4
  )


def test_causal_conv_lm_probabilities_sum_to_one_and_match_cached_decoder():
  vocab, t_len = 3, 4
  model = CausalConvLM(vocab_size=vocab, channels=4, dilations=(1, 2))
  seqs = np.array(list(itertools.product(range(vocab), repeat=t_len)), np.int32)
  params = _random_params(model, seqs[:1])
  nll = _jit(lambda p, x: losses.autoregressive_nll(model.apply(p, x), x))(params, seqs)
  nll = np.asarray(nll, np.float64)
  np.testing.assert_allclose(np.exp(-nll).sum(), 1.0, rtol=1e-5)

  @_jit
  def cached_nll(params, seqs):  # per-step decoder with its queues: a separate code path
    cache = model.apply(params, len(seqs), method=model.init_cache)
    out, prev = jnp.zeros(len(seqs)), jnp.zeros((len(seqs),), jnp.int32)
    for t in range(t_len):
      logits, cache = model.apply(params, cache, prev, t, method=model.decode_step)
      out -= jnp.take_along_axis(jax.nn.log_softmax(logits), seqs[:, t, None], axis=1)[:, 0]
      prev = seqs[:, t]
    return out

  np.testing.assert_allclose(cached_nll(params, jnp.asarray(seqs)), nll, rtol=1e-4, atol=1e-4)


def test_output_shapes():
  model = PixelCNN(num_levels=256, num_channels=3, features=6, num_layers=1)
  x = jnp.zeros((2, 5, 7, 3), jnp.uint8)
  logits = jax.eval_shape(lambda: model.apply(model.init(jax.random.key(0), x), x))
  assert logits.shape == (2, 5, 7, 3, 256)
  lm = CausalConvLM(vocab_size=11, channels=4, dilations=(1,))
  t = jnp.zeros((3, 9), jnp.int32)
  assert jax.eval_shape(lambda: lm.apply(lm.init(jax.random.key(0), t), t)).shape == (3, 9, 11)


def _zero_params(model, *args):
  """Parameters of the right names and shapes without running `init` (eager Flax init
  compiles every op on its own): for the input checks, which come before any use of them."""
  shapes = jax.eval_shape(model.init, jax.random.key(0), *args)
  return jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)


def test_bad_inputs_name_the_problem():
  model = PixelCNN(num_levels=17, features=4, num_layers=1)
  x = jnp.zeros((1, 4, 4, 1), jnp.int32)
  params = _zero_params(model, x)
  with pytest.raises(TypeError, match='integer array.*float32'):
    model.apply(params, x.astype(jnp.float32))
  with pytest.raises(ValueError, match='rank 4'):
    model.apply(params, x[0])
  with pytest.raises(ValueError, match=r'\[0, 17\).*found values in \[0, 17\]'):
    model.apply(params, x.at[0, 0, 0, 0].set(17))
  with pytest.raises(ValueError, match='num_channels=1'):
    model.apply(params, jnp.zeros((1, 4, 4, 3), jnp.int32))
  with pytest.raises(ValueError, match='kernel_size must be odd'):
    PixelCNN(num_levels=17, kernel_size=4).init(jax.random.key(0), x)
  with pytest.raises(ValueError, match='multiple of num_channels'):
    PixelCNN(num_levels=4, num_channels=3, features=8).init(jax.random.key(0), x)
  lm = CausalConvLM(vocab_size=5, channels=4, dilations=(1,))
  t = jnp.zeros((1, 6), jnp.int32)
  lm_params = _zero_params(lm, t)
  with pytest.raises(ValueError, match=r'\[0, 5\).*\[-1, 0\]'):
    lm.apply(lm_params, t.at[0, 0].set(-1))
  with pytest.raises(ValueError, match='dilations'):
    CausalConvLM(vocab_size=5, dilations=()).init(jax.random.key(0), t)


@pytest.mark.parametrize('kernel_size', [(1, 1), (1, 2), (2, 3)])
def test_masked_conv_paths_equal_the_masked_lax_convolution(kernel_size):
  """MaskedConv2D picks a dot (1x1), tap-wise GEMM gradients (1x2) or XLA's convolution;
  all three are the VALID convolution with the masked kernel, in value and gradient."""
  from gm_jax.nn import autoregressive as ar

  kh, kw = kernel_size
  conv = ar.MaskedConv2D(6, kernel_size, 'B', 3)
  x = jax.random.normal(jax.random.key(0), (2, 4 + kh - 1, 5 + kw - 1, 3))
  params = conv.init(jax.random.key(1), x)
  params = jax.tree.map(lambda a: jax.random.normal(jax.random.key(2), a.shape), params)

  def reference(p, x):
    mask = np.ones((kh, kw, 3, 6), np.float32)
    mask[-1, -1] = ar.channel_mask(ar.channel_groups(3, 3), ar.channel_groups(6, 3), mask_type='B')
    y = jax.lax.conv_general_dilated(
      x, p['params']['kernel'] * mask, (1, 1), 'VALID', dimension_numbers=('NHWC', 'HWIO', 'NHWC')
    )
    return y + p['params']['bias']

  np.testing.assert_allclose(conv.apply(params, x), reference(params, x), atol=1e-4)
  loss = lambda f: lambda p, x: jnp.sum(jnp.tanh(f(p, x)))
  got = jax.grad(loss(conv.apply), argnums=(0, 1))(params, x)
  want = jax.grad(loss(reference), argnums=(0, 1))(params, x)
  for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
    np.testing.assert_allclose(a, b, atol=1e-4)
