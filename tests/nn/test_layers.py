"""gm_jax.nn.layers.ConvTranspose is flax.linen.ConvTranspose, computed another way."""

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gm_jax.nn import layers

CASES = [  # (H, W, kernel, stride, padding, Cin, Cout)
  (8, 8, 4, 2, 'SAME', 5, 3),  # DCGAN
  (7, 5, 3, 2, 'SAME', 2, 4),  # VAE / CycleGAN, odd sizes
  (4, 4, 3, 2, 'VALID', 3, 2),
  (5, 6, 4, 3, 'SAME', 2, 2),
  (4, 4, 3, 1, 'SAME', 2, 2),
  (3, 3, 2, 2, ((1, 0), (2, 1)), 2, 3),  # explicit padding
  (6, 6, 5, 2, 'SAME', 1, 1),
  (3, 4, 1, 3, 'SAME', 2, 2),  # phases that meet no kernel tap: bias only
  (4, 4, 4, 2, 'SAME', 3, 40),  # 4 x 40 outputs > 128: the per-phase form
]


@pytest.mark.parametrize('h,w,k,s,pad,cin,cout', CASES)
def test_same_outputs_and_gradients_as_flax(h, w, k, s, pad, cin, cout):
  _check_against_flax(nn.ConvTranspose, layers.ConvTranspose, (2, h, w, cin), cout, k, s, pad)


CONV_CASES = [  # (H, W, kernel, stride, padding, Cin, Cout)
  (8, 8, 4, 2, 'SAME', 5, 3),  # DCGAN / PatchGAN discriminators: space-to-depth path
  (9, 7, 4, 2, 'SAME', 2, 3),  # odd sizes
  (10, 10, 4, 2, 'VALID', 3, 2),
  (6, 7, 4, 2, ((1, 0), (2, 1)), 2, 3),  # explicit padding
  (9, 9, 6, 3, 'SAME', 2, 2),
  (7, 5, 3, 2, 'SAME', 2, 4),  # 3x3 / 2: the plain strided path
  (4, 4, 3, 1, 'SAME', 2, 2),
]


@pytest.mark.parametrize('h,w,k,s,pad,cin,cout', CONV_CASES)
def test_conv_same_outputs_and_gradients_as_flax(h, w, k, s, pad, cin, cout):
  _check_against_flax(nn.Conv, layers.Conv, (2, h, w, cin), cout, k, s, pad)


@pytest.mark.parametrize('k,s,pad', [(3, 2, 'SAME'), (4, 2, 'SAME'), (5, 3, 'VALID')])
def test_space_to_depth_function_equals_strided_convolution(k, s, pad):
  x = jax.random.normal(jax.random.key(0), (2, 11, 9, 3))
  w = jax.random.normal(jax.random.key(1), (k, k, 3, 4))
  ref = jax.lax.conv_general_dilated(x, w, (s, s), pad, dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
  np.testing.assert_allclose(layers.conv_space_to_depth(x, w, (s, s), pad), ref, atol=1e-4)


def _check_against_flax(ref_cls, our_cls, x_shape, cout, k, s, pad):
  # One jitted program per case (outputs and both gradients of both layers): op-by-op
  # dispatch compiled every primitive for every case's shapes (measured 2.0 -> 0.8 CPU-s).
  ref = ref_cls(cout, (k, k), strides=(s, s), padding=pad)
  ours = our_cls(cout, (k, k), strides=(s, s), padding=pad)
  x_spec = jax.ShapeDtypeStruct(x_shape, jnp.float32)
  shapes = jax.eval_shape(ref.init, jax.random.key(1), x_spec)
  assert jax.tree.map(lambda a: a.shape, jax.eval_shape(ours.init, jax.random.key(1), x_spec)) == (
    jax.tree.map(lambda a: a.shape, shapes)
  )  # same names and shapes: checkpoints carry over

  @jax.jit
  def outputs_and_gradients():
    x = jax.random.normal(jax.random.key(0), x_shape)
    params = jax.tree.map(lambda a: jax.random.normal(jax.random.key(2), a.shape), shapes)
    loss = lambda m: lambda p, x: jnp.sum(jnp.sin(m.apply(p, x)))
    return (
      (ours.apply(params, x), ref.apply(params, x)),
      jax.grad(loss(ours), argnums=(0, 1))(params, x),
      jax.grad(loss(ref), argnums=(0, 1))(params, x),
    )

  (y_ours, y_ref), g_ours, g_ref = outputs_and_gradients()
  np.testing.assert_allclose(y_ours, y_ref, atol=1e-4)
  assert jax.tree.structure(g_ours) == jax.tree.structure(g_ref)
  for a, b in zip(jax.tree.leaves(g_ours), jax.tree.leaves(g_ref)):
    np.testing.assert_allclose(a, b, atol=1e-4)


@pytest.mark.parametrize('h,w,k,s,pad,cin,cout', CASES)
def test_both_transpose_forms_equal_lax(h, w, k, s, pad, cin, cout):
  @jax.jit
  def forms_and_reference():
    x = jax.random.normal(jax.random.key(0), (2, h, w, cin))
    kernel = jax.random.normal(jax.random.key(1), (k, k, cin, cout))
    ref = jax.lax.conv_transpose(x, kernel, (s, s), pad, dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
    forms = (layers.conv_transpose_subpixel, layers.conv_transpose_fused)
    return [form(x, kernel, (s, s), pad) for form in forms], ref

  forms, ref = forms_and_reference()  # one program per case, not one per primitive
  for got in forms:
    np.testing.assert_allclose(got, ref, atol=1e-4)


def _conv_valid_reference(x, kernel):
  return jax.lax.conv_general_dilated(
    x, kernel, (1, 1), 'VALID', dimension_numbers=('NHWC', 'HWIO', 'NHWC')
  )


@pytest.mark.parametrize('kh,kw', [(1, 1), (1, 2), (2, 1), (2, 3)])
def test_tapwise_grad_conv_equals_lax_in_value_and_both_gradients(kh, kw):
  x = jax.random.normal(jax.random.key(0), (3, 6, 7, 4))
  kernel = jax.random.normal(jax.random.key(1), (kh, kw, 4, 5))
  loss = lambda f: lambda x, k: jnp.sum(jnp.sin(f(x, k)) * jnp.arange(5.0))

  @jax.jit
  def values_and_gradients(x, kernel):
    return [
      (f(x, kernel), jax.grad(loss(f), argnums=(0, 1))(x, kernel))
      for f in (layers.conv_tapwise_grad, _conv_valid_reference)
    ]

  (y, got), (y_ref, want) = values_and_gradients(x, kernel)
  np.testing.assert_allclose(y, y_ref, atol=1e-4)
  for a, b in zip(got, want):
    assert a.shape == b.shape
    np.testing.assert_allclose(a, b, atol=1e-4)


def test_tapwise_grad_conv_kernel_gradient_by_hand():
  """Independent check: d/dk sum(y * c) for one tap is sum over positions of x * c."""
  x = jax.random.normal(jax.random.key(0), (2, 3, 4, 1))
  c = jax.random.normal(jax.random.key(2), (2, 3, 3, 1))
  grad = jax.grad(lambda k: jnp.sum(layers.conv_tapwise_grad(x, k) * c))(jnp.ones((1, 2, 1, 1)))
  for j in range(2):
    np.testing.assert_allclose(
      grad[0, j, 0, 0], np.sum(np.asarray(x)[:, :, j : j + 3] * c), rtol=1e-5
    )


def test_pointwise_conv_equals_a_1x1_convolution_and_checks_shapes():
  x = jax.random.normal(jax.random.key(0), (2, 5, 3, 4))
  kernel = jax.random.normal(jax.random.key(1), (1, 1, 4, 6))
  np.testing.assert_allclose(
    layers.pointwise_conv(x, kernel), _conv_valid_reference(x, kernel), atol=1e-5
  )
  with pytest.raises(ValueError, match=r'\[1, 1, Cin, Cout\]'):
    layers.pointwise_conv(x, jnp.ones((2, 1, 4, 6)))
  with pytest.raises(ValueError, match='3 channels|4 channels'):
    layers.pointwise_conv(x[..., :3], kernel)


def test_rejects_non_image_input():
  with pytest.raises(ValueError, match=r'\[B, H, W, C\]'):
    layers.ConvTranspose(2, (3, 3)).init(jax.random.key(0), jnp.ones((4, 3)))
  with pytest.raises(ValueError, match=r'\[B, H, W, C\]'):
    layers.Conv(2, (3, 3)).init(jax.random.key(0), jnp.ones((4, 3)))


def test_dropout_keeps_the_rounded_rate_and_the_mean():
  x = jnp.ones((200_000,))
  y = layers.dropout(jax.random.key(0), x, 0.3)
  t = round(0.7 * 256)  # 179: the rate is rounded to a multiple of 1/256
  kept = np.asarray(y) > 0
  assert abs(kept.mean() - t / 256) < 4 * np.sqrt(0.21 / x.size)
  np.testing.assert_allclose(np.asarray(y)[kept], 256 / t, rtol=1e-6)
  assert abs(float(y.mean()) - 1.0) < 0.01  # inverted dropout: unbiased
  assert not np.array_equal(np.asarray(layers.dropout(jax.random.key(1), x, 0.3)), np.asarray(y))
  assert layers.dropout(jax.random.key(0), x, 0.0) is x
  with pytest.raises(ValueError, match='rate'):
    layers.dropout(jax.random.key(0), x, 1.0)


def test_dropout_module_has_flax_semantics():
  m = layers.Dropout(0.5)
  x = jnp.arange(1.0, 41.0).reshape(4, 10)
  np.testing.assert_array_equal(m.apply({}, x, deterministic=True), x)
  y = m.apply({}, x, deterministic=False, rngs={'dropout': jax.random.key(3)})
  assert y.shape == x.shape and set(np.unique(np.asarray(y) / np.asarray(x))) <= {0.0, 2.0}
  with pytest.raises(flax.errors.InvalidRngError):  # a random mask needs the 'dropout' RNG stream
    m.apply({}, x, deterministic=False)
