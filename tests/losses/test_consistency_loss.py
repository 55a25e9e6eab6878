"""`consistency_loss` against its float64 NumPy formula, under jit, vmap and grad."""

import jax
import jax.numpy as jnp
from loss_checks import _assert_close_jit
from loss_checks import _assert_finite
from loss_checks import _assert_jit_vmap_match_loop
from loss_checks import _f32
import numpy as np
import pytest

from gm_jax import losses


def _np_ct(online, target, sigma, sigma_next, c):
  sq = np.sum((online - target) ** 2, axis=tuple(range(1, online.ndim)))
  return (np.sqrt(sq + c**2) - c) / (sigma_next - sigma)


def _case(seed=0, shape=(4, 3, 2, 2)):
  rng = np.random.default_rng(seed)
  online, target = rng.normal(size=(2,) + shape)
  sigma = np.exp(rng.normal(-1.1, 2.0, size=shape[0]))
  return online, target, sigma, sigma * (1.0 + rng.uniform(0.05, 0.5, size=shape[0]))


def test_consistency_loss_is_the_weighted_pseudo_huber_distance():
  o, t, s, s2 = _case()
  _assert_close_jit(
    lambda *a: losses.consistency_loss(*a, huber_c=0.3), _f32(o, t, s, s2), _np_ct(o, t, s, s2, 0.3)
  )
  # default c: 0.00054 sqrt(D), D = 12 here; [B, D] data work as well as images
  c = 0.00054 * np.sqrt(12)
  _assert_close_jit(losses.consistency_loss, _f32(o, t, s, s2), _np_ct(o, t, s, s2, c))
  flat = [a.reshape(4, -1) for a in (o, t)]
  _assert_close_jit(losses.consistency_loss, _f32(*flat, s, s2), _np_ct(o, t, s, s2, c))
  # scalar levels are shared; near-equal outputs cost ~ ||.||^2 / (2c) (the Huber quadratic)
  _assert_close_jit(
    losses.consistency_loss, _f32(o, t, 0.5, 0.7), _np_ct(o, t, np.full(4, 0.5), 0.7, c)
  )
  small = t + 1e-4
  out = losses.consistency_loss(*_f32(small, t, s, s2), huber_c=0.01)
  np.testing.assert_allclose(out, 12 * 1e-8 / (2 * 0.01) / (s2 - s), rtol=1e-2)


def test_consistency_loss_vmap_grad_and_precision():
  o, t, s, s2 = _case(1, shape=(2, 3, 2, 2, 1))  # vmapped over the leading 2
  args = _f32(o, t, s.reshape(2, 1).repeat(3, axis=1), s2.reshape(2, 1).repeat(3, axis=1))
  _assert_jit_vmap_match_loop(losses.consistency_loss, *args)
  _assert_finite(losses.consistency_loss, *[a[0] for a in args])
  # grad w.r.t. online: (o - t) / (sqrt(||o - t||^2 + c^2) (s' - s)), against NumPy
  o, t, s, s2 = _case(2)
  fn = lambda o: jnp.sum(losses.consistency_loss(o, *_f32(t, s, s2), huber_c=0.1))
  grad = jax.jit(jax.grad(fn))(*_f32(o))
  norm = np.sqrt(np.sum((o - t) ** 2, axis=(1, 2, 3)) + 0.01)
  np.testing.assert_allclose(grad, (o - t) / (norm * (s2 - s))[:, None, None, None], rtol=1e-4)
  # equal outputs: a zero, finite gradient (the plain L2 norm would give NaN)
  g0 = jax.grad(lambda o: jnp.sum(losses.consistency_loss(o, o, *_f32(s, s2))))(*_f32(t))
  assert np.all(np.asarray(g0) == 0.0)
  out = losses.consistency_loss(*[jnp.asarray(a, jnp.bfloat16) for a in (o, t)], *_f32(s, s2))
  assert out.dtype == jnp.float32


def test_consistency_loss_bad_input_names_the_argument():
  o, t, s, s2 = _f32(*_case())
  with pytest.raises(ValueError, match='target of shape'):
    losses.consistency_loss(o, t[:, :2], s, s2)
  with pytest.raises(ValueError, match=r'sigma_next must be a scalar or have shape \[B\]'):
    losses.consistency_loss(o, t, s, s2[:2])
  with pytest.raises(ValueError, match='online must have a leading batch axis'):
    losses.consistency_loss(jnp.zeros(()), jnp.zeros(()), 1.0, 2.0)
  with pytest.raises(ValueError, match='huber_c must be > 0'):
    losses.consistency_loss(o, t, s, s2, huber_c=-1.0)
