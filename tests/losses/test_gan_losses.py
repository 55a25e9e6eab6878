"""GAN, LSGAN and cycle-consistency losses against NumPy float64 formulas."""

import jax
import jax.numpy as jnp
from loss_checks import _assert_close_jit as _close
from loss_checks import _assert_finite
from loss_checks import _assert_jit_vmap_match_loop
from loss_checks import _f32
from loss_checks import _jit
import numpy as np
import pytest
from scipy import special

from gm_jax import losses

RTOL = 1e-5


def _assert_close_jit(fn, args, expected, rtol=RTOL, atol=1e-6):
  _close(fn, args, expected, rtol=rtol, atol=atol)


EXTREME = np.array([-100.0, -30.0, -1.0, 0.0, 2.5, 30.0, 100.0])


def _np_log_sigmoid(l):
  # log(1 / (1 + e^-l)) written directly, in float64 (finite for |l| <= 100).
  return -np.log1p(np.exp(-l))


def _np_log_one_minus_sigmoid(l):
  return -np.log1p(np.exp(l))


# ------------------------------------------------------- per-logit values ---


def test_discriminator_loss_matches_numpy():
  real, fake = EXTREME, EXTREME[::-1]
  expected = -_np_log_sigmoid(real) - _np_log_one_minus_sigmoid(fake)
  _assert_close_jit(losses.discriminator_loss, _f32(real, fake), expected)


def test_generator_minimax_loss_is_log_one_minus_d_equals_minus_softplus():
  expected = _np_log_one_minus_sigmoid(EXTREME)
  np.testing.assert_allclose(expected, -np.logaddexp(0.0, EXTREME), rtol=1e-12)
  _assert_close_jit(losses.generator_minimax_loss, _f32(EXTREME), expected)
  # Moderate logits: compare with log(1 - expit(l)) literally.
  moderate = np.linspace(-5.0, 5.0, 11)
  _assert_close_jit(
    losses.generator_minimax_loss, _f32(moderate), np.log(1.0 - special.expit(moderate))
  )


def test_generator_nonsaturating_loss_matches_numpy():
  _assert_close_jit(losses.generator_nonsaturating_loss, _f32(EXTREME), -_np_log_sigmoid(EXTREME))


def test_lsgan_losses_match_numpy():
  real, fake = EXTREME / 10, EXTREME[::-1] / 7
  _assert_close_jit(
    losses.lsgan_discriminator_loss, _f32(real, fake), 0.5 * ((real - 1.0) ** 2 + fake**2)
  )
  _assert_close_jit(losses.lsgan_generator_loss, _f32(fake), 0.5 * (fake - 1.0) ** 2)


def test_minimax_discriminator_optimum_and_saturation():
  # D*(x) = 1/2 everywhere at the global optimum: loss = 2 log 2 (Goodfellow
  # et al. 2014, Theorem 1).
  # (Called eagerly, without jit, on purpose: the op-by-op path works too.)
  np.testing.assert_allclose(
    losses.discriminator_loss(jnp.zeros(3), jnp.zeros(3)), np.full(3, 2 * np.log(2.0)), rtol=RTOL
  )
  # When D confidently rejects a fake, the minimax generator's gradient
  # vanishes but the non-saturating one's does not.
  l = jnp.array([-20.0])
  grad = lambda f: jax.jit(jax.grad(lambda x: f(x).sum()))(l)
  g_minimax = grad(losses.generator_minimax_loss)
  g_nonsat = grad(losses.generator_nonsaturating_loss)
  assert abs(float(g_minimax[0])) < 1e-8
  np.testing.assert_allclose(g_nonsat, [-1.0], rtol=RTOL)


# ----------------------------------------------------------- patch maps ---


def test_patch_map_losses_average_non_batch_axes():
  rng = np.random.default_rng(0)
  real, fake = rng.normal(scale=3.0, size=(2, 3, 4, 5, 1))
  mean = lambda v: v.reshape(3, -1).mean(axis=1)
  cases = [
    (
      losses.discriminator_loss,
      (real, fake),
      mean(-_np_log_sigmoid(real)) + mean(-_np_log_one_minus_sigmoid(fake)),
    ),
    (losses.generator_minimax_loss, (fake,), mean(_np_log_one_minus_sigmoid(fake))),
    (losses.generator_nonsaturating_loss, (fake,), mean(-_np_log_sigmoid(fake))),
    (losses.lsgan_discriminator_loss, (real, fake), 0.5 * (mean((real - 1) ** 2) + mean(fake**2))),
    (losses.lsgan_generator_loss, (fake,), 0.5 * mean((fake - 1) ** 2)),
  ]
  for fn, args, expected in cases:
    _assert_close_jit(fn, _f32(*args), expected)


def test_patch_and_global_real_fake_shapes_may_differ():
  # A [B] real score against a [B, h, w, 1] fake map: each is averaged alone.
  real, fake = np.array([1.0, -2.0]), np.full((2, 3, 3, 1), 0.5)
  np.testing.assert_allclose(
    _jit(losses.lsgan_discriminator_loss)(*_f32(real, fake)),
    0.5 * ((real - 1) ** 2 + 0.25),
    rtol=RTOL,
  )
  with pytest.raises(ValueError, match='fake_logits'):
    losses.discriminator_loss(jnp.zeros(2), jnp.zeros(3))
  with pytest.raises(ValueError, match='real_logits'):
    losses.discriminator_loss(jnp.float32(0.0), jnp.zeros(3))


# ------------------------------------------------ transforms and extremes ---


@pytest.mark.parametrize(
  'name',
  [
    'discriminator_loss',
    'generator_minimax_loss',
    'generator_nonsaturating_loss',
    'lsgan_discriminator_loss',
    'lsgan_generator_loss',
    'cycle_consistency_loss',
  ],
)
def test_gan_losses_jit_vmap_and_finite_at_extreme_logits(name):
  fn = getattr(losses, name)
  num_args = 1 if 'generator' in name else 2
  rng = np.random.default_rng(1)
  args = _f32(*rng.normal(scale=5.0, size=(num_args, 3, 2, 4, 4, 1)))
  _assert_jit_vmap_match_loop(fn, *args)
  patch = np.broadcast_to(EXTREME[:, None, None, None], (7, 2, 2, 1))
  for extreme in (EXTREME, patch):  # [B] logits and [B, h, w, 1] patch maps
    others = [extreme[::-1]] * (num_args - 1)  # fake/cycled side reversed
    _assert_finite(fn, *_f32(extreme, *others))


def test_gan_losses_grads_match_numpy_derivatives():
  l = jnp.asarray(EXTREME, jnp.float32)
  grad = lambda f: jax.jit(jax.grad(lambda x: f(x).sum()))(l)
  sig = special.expit(EXTREME)
  # d/dl [-softplus(l)] = -sigmoid(l); d/dl softplus(-l) = sigmoid(l) - 1.
  np.testing.assert_allclose(grad(losses.generator_minimax_loss), -sig, rtol=RTOL, atol=1e-30)
  np.testing.assert_allclose(
    grad(losses.generator_nonsaturating_loss), sig - 1.0, rtol=RTOL, atol=1e-7
  )


# ----------------------------------------------------------------- cycle ---


def test_cycle_consistency_loss_is_mean_absolute_error():
  rng = np.random.default_rng(2)
  x, x_cycled = rng.normal(size=(2, 3, 4, 4, 3))
  expected = np.abs(x - x_cycled).reshape(3, -1).mean(axis=1)
  _assert_close_jit(losses.cycle_consistency_loss, _f32(x, x_cycled), expected)
  _assert_close_jit(
    losses.cycle_consistency_loss,
    _f32(x[:, 0, 0, 0], x_cycled[:, 0, 0, 0]),
    np.abs(x - x_cycled)[:, 0, 0, 0],
  )
  with pytest.raises(ValueError, match='x_cycled'):
    losses.cycle_consistency_loss(jnp.zeros((3, 4)), jnp.zeros((3, 5)))
