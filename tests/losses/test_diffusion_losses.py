"""`diffusion_loss` and `flow_matching_loss` against float64 NumPy formulas."""

import jax
import jax.numpy as jnp
from loss_checks import _assert_close_jit
from loss_checks import _assert_finite
from loss_checks import _assert_jit_vmap_match_loop
from loss_checks import _f32
from loss_checks import _jit
import numpy as np
import pytest

from gm_jax import losses


def _np_sigmoid(a):
  return 1.0 / (1.0 + np.exp(-a))


def _case(seed=0, shape=(4, 3, 2, 2)):
  rng = np.random.default_rng(seed)
  pred, x, noise = rng.normal(size=(3,) + shape)
  lam = rng.uniform(-8.0, 8.0, size=shape[0])
  dlam = -rng.uniform(0.5, 20.0, size=shape[0])
  return pred, x, noise, lam, dlam


def test_eps_loss_is_the_vdm_continuous_term():
  pred, x, noise, lam, dlam = _case()
  expected = 0.5 * -dlam * np.sum((noise - pred) ** 2, axis=(1, 2, 3))
  _assert_close_jit(losses.diffusion_loss, _f32(pred, x, noise, lam, dlam), expected)
  # Without the time derivative: the plain per-level regression.
  _assert_close_jit(
    losses.diffusion_loss,
    _f32(pred, x, noise, lam),
    0.5 * np.sum((noise - pred) ** 2, axis=(1, 2, 3)),
  )


def test_v_prediction_is_the_eps_error_of_the_implied_eps():
  """eps_hat = sigma z + alpha v_hat, computed in float64 from z = alpha x + sigma eps."""
  pred, x, noise, lam, dlam = _case(1)
  a = np.sqrt(_np_sigmoid(lam))[:, None, None, None]
  s = np.sqrt(_np_sigmoid(-lam))[:, None, None, None]
  z = a * x + s * noise
  eps_hat = s * z + a * pred
  expected = 0.5 * -dlam * np.sum((noise - eps_hat) ** 2, axis=(1, 2, 3))
  _assert_close_jit(
    lambda *args: losses.diffusion_loss(*args, prediction_type='v'),
    _f32(pred, x, noise, lam, dlam),
    expected,
    rtol=1e-4,
    atol=1e-5,
  )
  # the exact v target gives zero loss
  v = a * noise - s * x
  out = _jit(lambda *args: losses.diffusion_loss(*args, prediction_type='v'))(
    *_f32(v, x, noise, lam, dlam)
  )
  np.testing.assert_allclose(out, 0.0, atol=1e-4)


def test_sigmoid_weighting():
  pred, x, noise, lam, dlam = _case(2)
  w = _np_sigmoid(1.5 - lam)
  expected = 0.5 * w * -dlam * np.sum((noise - pred) ** 2, axis=(1, 2, 3))
  _assert_close_jit(
    lambda *args: losses.diffusion_loss(*args, weighting='sigmoid', sigmoid_bias=1.5),
    _f32(pred, x, noise, lam, dlam),
    expected,
  )


def test_diffusion_loss_vmap_grad_and_bad_input():
  pred, x, noise, lam, dlam = _case(3, shape=(6, 2, 2, 2))
  args = [a.reshape((2, 3) + a.shape[1:]) for a in _f32(pred, x, noise, lam, dlam)]
  _assert_jit_vmap_match_loop(losses.diffusion_loss, *args)
  _assert_jit_vmap_match_loop(lambda *a: losses.diffusion_loss(*a, prediction_type='v'), *args)
  _assert_finite(
    lambda *a: losses.diffusion_loss(*a, prediction_type='v'),
    *_f32(pred, x, noise, 30.0 * np.sign(lam), dlam),
  )
  # gradient w.r.t. the prediction: -w * (eps - pred), against NumPy
  g = jax.jit(jax.grad(lambda p: jnp.sum(losses.diffusion_loss(p, *_f32(x, noise, lam, dlam)))))(
    jnp.asarray(pred, jnp.float32)
  )
  np.testing.assert_allclose(
    g, -(-dlam)[:, None, None, None] * (noise - pred), rtol=1e-5, atol=1e-5
  )
  with pytest.raises(ValueError, match='prediction_type'):
    losses.diffusion_loss(*_f32(pred, x, noise, lam), prediction_type='x')
  with pytest.raises(ValueError, match='log_snr'):
    losses.diffusion_loss(*_f32(pred, x, noise, lam[:2]))
  with pytest.raises(ValueError, match='weighting'):
    losses.diffusion_loss(*_f32(pred, x, noise, lam), weighting='snr')
  with pytest.raises(TypeError):  # hyper-parameters are keyword-only
    losses.diffusion_loss(*_f32(pred, x, noise, lam, dlam), 'v')


def test_flow_matching_loss_matches_numpy():
  rng = np.random.default_rng(4)
  v, noise, x = rng.normal(size=(3, 5, 2, 3, 1))
  for sigma_min in (0.0, 1e-2):
    expected = np.sum((v - (x - (1 - sigma_min) * noise)) ** 2, axis=(1, 2, 3))
    _assert_close_jit(
      lambda *a, s=sigma_min: losses.flow_matching_loss(*a, sigma_min=s),
      _f32(v, noise, x),
      expected,
    )
  args = [a.reshape((5, 1) + a.shape[1:]) for a in _f32(v, noise, x)]
  _assert_jit_vmap_match_loop(losses.flow_matching_loss, *args)
  _assert_finite(losses.flow_matching_loss, *_f32(v, noise, x))
  g = jax.jit(jax.grad(lambda a: jnp.sum(losses.flow_matching_loss(a, *_f32(noise, x)))))(
    jnp.asarray(v, jnp.float32)
  )
  np.testing.assert_allclose(g, 2 * (v - (x - noise)), rtol=1e-5, atol=1e-5)
  with pytest.raises(ValueError, match='sigma_min'):
    losses.flow_matching_loss(*_f32(v, noise, x), sigma_min=1.0)
  with pytest.raises(ValueError, match='velocity'):
    losses.flow_matching_loss(*_f32(v[:, :1], noise, x))
