"""MADE masks and the MAF / spline flow layers, in float64.

Independent checks: the masks' connectivity recomputed from the degree rule by brute
force over paths; `jax.jacfwd` of the MADE (exactly zero where the order forbids a
dependence); the layers' log-dets against `slogdet(jacfwd)` and their round trips, with
random (non-initial) parameters.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gm_jax.nn import autoregressive_flows as arf
from gm_jax.nn import made as made_lib


@pytest.fixture(autouse=True)
def _x64():
  with jax.enable_x64(True):
    yield


def _random_params(module, *args, seed=0, scale=0.3):
  shapes = jax.eval_shape(lambda *a: module.init(jax.random.key(0), *a), *args)
  rng = np.random.RandomState(seed)
  return jax.tree.map(lambda a: jnp.asarray(scale * rng.standard_normal(a.shape), a.dtype), shapes)


def test_masks_connect_exactly_the_earlier_inputs():
  d, hidden, p = 5, (7, 6), 3
  order = [3, 1, 5, 2, 4]
  degrees = made_lib.made_degrees(d, hidden, order=order)
  masks = made_lib.made_masks(degrees, p)
  assert [m.shape for m in masks] == [(5, 7), (7, 6), (6, 15)]
  # brute force over paths: input j reaches output (i, .) iff some chain of allowed
  # weights links them
  reach = (masks[0] @ masks[1] @ masks[2]).reshape(d, d, p) > 0  # [in j, out i, p]
  expected = np.array([[order[j] < order[i] for i in range(d)] for j in range(d)])
  np.testing.assert_array_equal(reach, np.repeat(expected[..., None], p, -1))
  # no hidden layer: the direct mask is the strict order
  direct = made_lib.made_masks(made_lib.made_degrees(d, (), order=order), 1)
  np.testing.assert_array_equal(direct[0] > 0, expected)


@pytest.mark.parametrize('order', [None, (4, 2, 6, 1, 5, 3)])
def test_made_jacobian_is_triangular_in_its_order(order):
  d, p = 6, 2
  made = made_lib.MADE((16, 16), p, order=order)
  x = jnp.asarray(np.random.RandomState(0).standard_normal((d,)))
  params = _random_params(made, x, seed=1, scale=0.5)
  jac = jax.jit(jax.jacfwd(lambda v: made.apply(params, v)))(x)  # [D, P, D]
  deg = np.arange(1, d + 1) if order is None else np.asarray(order)
  allowed = deg[None, :] < deg[:, None]  # out i depends on in j
  jac = np.asarray(jac)
  for k in range(p):
    np.testing.assert_array_equal(jac[:, k, :][~allowed], 0.0)  # exactly zero
    assert np.mean(jac[:, k, :][allowed] != 0) > 0.9  # and the allowed ones are used
  # per example and batched agree (the MADE acts on the last axis)
  batch = jnp.stack([x, -x])
  np.testing.assert_allclose(made.apply(params, batch)[0], made.apply(params, x), rtol=1e-13)


def test_context_reaches_every_output_and_keeps_the_order():
  made = made_lib.MADE((8, 8), 1)
  x, h = jnp.asarray([0.3, -0.2, 0.5]), jnp.asarray([1.0, -1.0])
  params = _random_params(made, x, h, seed=2)
  jac = jax.jacfwd(lambda c: made.apply(params, x, c))(h)  # [D, 1, C]
  assert np.all(np.abs(np.asarray(jac)).sum(-1) > 0)  # the first dimension's included
  jac_x = np.asarray(jax.jacfwd(lambda v: made.apply(params, v, h))(x))[:, 0, :]
  np.testing.assert_array_equal(jac_x[np.triu_indices(3)], 0.0)
  assert np.all(jac_x[np.tril_indices(3, -1)] != 0)


def _check_layer(layer, x, *, seed, scale, tol=1e-8):
  params = _random_params(layer, x, seed=seed, scale=scale)
  fwd = jax.jit(lambda v: layer.apply(params, v, method=layer.forward_and_log_det))
  inv = jax.jit(lambda v: layer.apply(params, v, method=layer.inverse_and_log_det))
  z, log_det = fwd(x)
  x_back, inv_log_det = inv(z)
  np.testing.assert_allclose(x_back, x, rtol=0, atol=tol)
  np.testing.assert_allclose(log_det + inv_log_det, 0.0, atol=tol)
  flat = lambda v: fwd(v.reshape(x.shape))[0].reshape(-1)
  jac = np.asarray(jax.jit(jax.jacfwd(flat))(x.reshape(-1)))
  n = x.shape[0]
  jac = jac.reshape(n, -1, n, jac.shape[-1] // n)
  for i in range(n):
    sign, expected = np.linalg.slogdet(jac[i, :, i, :])
    assert sign != 0
    np.testing.assert_allclose(log_det[i], expected, rtol=1e-8, atol=1e-10)
    assert np.max(np.abs(jac[i, :, i, :] - np.diag(np.diag(jac[i, :, i, :])))) > 1e-3
  return jac


@pytest.mark.parametrize(
  'layer',
  [
    arf.MaskedAffineAutoregressive((12, 12)),
    arf.MaskedSplineAutoregressive((12, 12), num_bins=4, tail_bound=2.0),
  ],
)
def test_autoregressive_layers(layer):
  x = jnp.asarray(np.random.RandomState(3).standard_normal((2, 6)) * 1.5)  # some in the tails
  jac = _check_layer(layer, x, seed=4, scale=0.4)
  # triangular in the natural order: z_i depends on x_j only for j <= i
  block = jac[0, :, 0, :]
  np.testing.assert_array_equal(block[np.triu_indices(6, 1)], 0.0)


@pytest.mark.parametrize('mask, parity', [('checkerboard', 0), ('channel', 1)])
def test_spline_coupling(mask, parity):
  layer = arf.SplineCoupling(mask, parity, hidden=8, num_bins=5, tail_bound=2.5)
  x = jnp.asarray(np.random.RandomState(5).standard_normal((2, 4, 4, 3)))
  _check_layer(layer, x, seed=6, scale=0.3)


def test_layers_start_as_the_identity():
  x = jnp.asarray(np.random.RandomState(7).standard_normal((2, 5)))
  for layer in (arf.MaskedAffineAutoregressive((8,)), arf.MaskedSplineAutoregressive((8,))):
    params = layer.init(jax.random.key(0), x, method=layer.forward_and_log_det)
    z, ld = layer.apply(params, x, method=layer.forward_and_log_det)
    np.testing.assert_allclose(z, x, atol=1e-12)
    np.testing.assert_allclose(ld, 0.0, atol=1e-12)


def test_permute():
  x = jnp.arange(10.0).reshape(2, 5)
  rev = arf.Permute('reverse')
  y, ld = rev.apply({}, x, method=rev.forward_and_log_det)
  np.testing.assert_array_equal(y, x[:, ::-1])
  np.testing.assert_array_equal(ld, 0.0)
  rnd = arf.Permute('random', seed=3)
  y, _ = rnd.apply({}, x, method=rnd.forward_and_log_det)
  np.testing.assert_array_equal(y, x[:, np.random.RandomState(3).permutation(5)])
  np.testing.assert_array_equal(rnd.apply({}, y, method=rnd.inverse_and_log_det)[0], x)


@pytest.mark.parametrize(
  'make, match',
  [
    (lambda: made_lib.made_degrees(3, (4,), order=(1, 2, 2)), 'order'),
    (lambda: made_lib.made_degrees(0, (4,)), 'num_inputs'),
    (lambda: made_lib.made_degrees(3, (0,)), 'hidden_sizes'),
    (lambda: arf.permutation(3, 'sorted'), 'permutation'),
    (
      lambda: arf.MaskedSplineAutoregressive((4,), num_bins=1).init(
        jax.random.key(0), jnp.zeros((1, 3))
      ),
      'num_bins',
    ),
    (
      lambda: arf.MaskedAffineAutoregressive((4,)).init(jax.random.key(0), jnp.zeros((1, 2, 3))),
      r'\[B, D\]',
    ),
  ],
)
def test_bad_input_raises_named_errors(make, match):
  with pytest.raises(ValueError, match=match):
    make()


def test_made_dropout_only_in_training():
  layer = arf.MaskedAffineAutoregressive((16,), dropout_rate=0.5)
  x = jnp.asarray(np.random.RandomState(8).standard_normal((2, 4)))
  params = _random_params(layer, x, seed=9)
  fwd = lambda train, seed: layer.apply(
    params, x, train=train, rngs={'dropout': jax.random.key(seed)}, method=layer.forward_and_log_det
  )[0]
  assert not np.allclose(fwd(True, 0), fwd(True, 1))
  np.testing.assert_array_equal(fwd(False, 0), fwd(False, 1))
  z = layer.apply(params, x, method=layer.forward_and_log_det)[0]
  np.testing.assert_array_equal(z, fwd(False, 0))
  back, _ = layer.apply(params, z, method=layer.inverse_and_log_det)  # no dropout rng
  np.testing.assert_allclose(back, x, atol=1e-10)
