"""`edm_loss` against its float64 NumPy formula, under jit, vmap and grad."""

import jax
import jax.numpy as jnp
from loss_checks import _assert_close_jit
from loss_checks import _assert_finite
from loss_checks import _assert_jit_vmap_match_loop
from loss_checks import _f32
import numpy as np
import pytest

from gm_jax import losses


def _np_edm(denoised, clean, sigma, sigma_data=0.5):
  weight = (sigma**2 + sigma_data**2) / (sigma * sigma_data) ** 2
  return weight * np.sum((denoised - clean) ** 2, axis=tuple(range(1, clean.ndim)))


def _case(seed=0, shape=(4, 3, 2, 2)):
  rng = np.random.default_rng(seed)
  denoised, clean = rng.normal(size=(2,) + shape)
  sigma = np.exp(rng.normal(-1.2, 1.2, size=shape[0]))
  return denoised, clean, sigma


def test_edm_loss_is_the_weighted_squared_error():
  denoised, clean, sigma = _case()
  _assert_close_jit(losses.edm_loss, _f32(denoised, clean, sigma), _np_edm(denoised, clean, sigma))
  _assert_close_jit(
    lambda *a: losses.edm_loss(*a, sigma_data=1.5),
    _f32(denoised, clean, sigma),
    _np_edm(denoised, clean, sigma, 1.5),
  )
  # a scalar sigma is shared by the batch; [B, D] data work as well as images
  _assert_close_jit(
    losses.edm_loss, _f32(denoised, clean, 0.3), _np_edm(denoised, clean, np.full(4, 0.3))
  )
  flat = [a.reshape(4, -1) for a in (denoised, clean)]
  _assert_close_jit(losses.edm_loss, _f32(*flat, sigma), _np_edm(denoised, clean, sigma))
  # the weight is 1 / c_out^2 (Table 1): lambda c_out^2 = 1 at every sigma
  c_out = sigma * 0.5 / np.sqrt(sigma**2 + 0.25)
  ones = np.ones((4, 1))
  np.testing.assert_allclose(
    losses.edm_loss(*_f32(ones + c_out[:, None], ones, sigma)), 1.0, rtol=1e-5
  )


def test_edm_loss_vmap_grad_and_precision():
  denoised, clean, sigma = _case(1, shape=(2, 3, 2, 2, 1))  # vmapped over the leading 2
  args = _f32(denoised, clean, sigma.reshape(2, 1).repeat(3, axis=1))
  _assert_jit_vmap_match_loop(losses.edm_loss, *args)
  _assert_finite(losses.edm_loss, *[a[0] for a in args])
  # grad w.r.t. denoised: 2 lambda (D - y), against NumPy
  d, y, s = _case(2)
  grad = jax.jit(jax.grad(lambda d: jnp.sum(losses.edm_loss(d, *_f32(y, s)))))(*_f32(d))
  weight = (s**2 + 0.25) / (s * 0.5) ** 2
  np.testing.assert_allclose(grad, 2 * weight[:, None, None, None] * (d - y), rtol=1e-5)
  # bfloat16 inputs are reduced in float32
  out = losses.edm_loss(*[jnp.asarray(a, jnp.bfloat16) for a in (d, y)], jnp.asarray(s))
  assert out.dtype == jnp.float32


def test_edm_loss_bad_input_names_the_argument():
  d, y, s = _f32(*_case())
  with pytest.raises(ValueError, match='denoised of shape'):
    losses.edm_loss(d[:, :2], y, s)
  with pytest.raises(ValueError, match=r'sigma must be a scalar or have shape \[B\]'):
    losses.edm_loss(d, y, s[:2])
  with pytest.raises(ValueError, match='clean must have a leading batch axis'):
    losses.edm_loss(jnp.zeros(()), jnp.zeros(()), 1.0)
  with pytest.raises(ValueError, match='sigma_data must be > 0'):
    losses.edm_loss(d, y, s, sigma_data=0.0)
