"""Adapters from a model's own parametrisation to a denoiser `D(x; sigma)`.

The suite of `gm_jax.sampling._karras` runs on `denoise(x, sigma)` in the variance-
exploding coordinates of Karras et al. 2022, `x = data + sigma * noise`. A model trained
in other coordinates is the same model after a change of variables (Karras et al. 2022,
section 2 and Table 1):

* variance preserving (VDM, DDPM): `z = alpha_t data + sigma_t eps` with
  `alpha_t^2 = sigmoid(lambda_t)`, `sigma_t^2 = sigmoid(-lambda_t)`, so `x = z / alpha_t`
  and `sigma = sigma_t / alpha_t = exp(-lambda_t / 2)`: the network sees
  `z = alpha x`, `alpha = 1 / sqrt(1 + sigma^2)`, at `lambda = -2 log sigma`;
* flow matching (`gm_jax.models.diffusion.FlowMatching`, Lipman et al. 2023, rectified
  flow at `sigma_min = 0`, Liu et al. 2023): noise at `t = 0`, data at `t = 1`,
  `x_t = (1 - (1 - sigma_min) t) eps + t data`, so `x = x_t / t` and
  `sigma = (1 - (1 - sigma_min) t) / t`, `t = 1 / (1 + sigma - sigma_min)`.
"""

from __future__ import annotations

from collections.abc import Callable

import jax.numpy as jnp

from gm_jax.sampling._ode import classifier_free_guidance


def sigma_from_log_snr(log_snr) -> jnp.ndarray:
  """`sigma = sigma_t / alpha_t = exp(-lambda / 2)` of a variance-preserving log-SNR."""
  return jnp.exp(-0.5 * jnp.asarray(log_snr))


def log_snr_from_sigma(sigma) -> jnp.ndarray:
  """`lambda = -2 log sigma`, the inverse of `sigma_from_log_snr`."""
  return -2.0 * jnp.log(jnp.asarray(sigma))


def vp_denoiser(eps_fn: Callable) -> Callable:
  """`D(x; sigma)` of a variance-preserving noise predictor.

  `D = x - sigma eps_hat(alpha x, lambda)`, `alpha = 1 / sqrt(1 + sigma^2)`,
  `lambda = -2 log sigma`: the estimate of the data `(z - sigma_t eps_hat) / alpha_t`
  written in `x = z / alpha_t`.

  Args:
    eps_fn: `(z [B, ...], log_snr scalar) -> eps_hat [B, ...]`, as for
      `diffusion_sample` (a `v` prediction first through
      `gm_jax.models.diffusion.eps_from_prediction`).

  Returns:
    `denoise(x [B, ...], sigma scalar) -> [B, ...]`.
  """

  def denoise(x, sigma):
    sigma = jnp.asarray(sigma, x.dtype)
    alpha = jnp.reciprocal(jnp.sqrt(1.0 + jnp.square(sigma)))
    return x - sigma * eps_fn(alpha * x, log_snr_from_sigma(sigma))

  return denoise


def flow_denoiser(velocity_fn: Callable, *, sigma_min: float = 0.0) -> Callable:
  """`D(x; sigma)` of a flow-matching velocity on the path of `FlowMatching`.

  At `t = 1 / (1 + sigma - sigma_min)` the network sees `x_t = t x`; with the velocity
  `v = data - (1 - sigma_min) eps` the data estimate is
  `(1 - sigma_min) x_t + (1 - (1 - sigma_min) t) v_hat` (Lipman et al. 2023, eqs. 20-23).

  Args:
    velocity_fn: `(x_t [B, ...], t scalar) -> v_hat [B, ...]`, noise at `t = 0`, data at
      `t = 1`, as for `flow_sample`.
    sigma_min: the path's width at the data (`FlowMatching.sigma_min`), in `[0, 1)`.

  Returns:
    `denoise(x [B, ...], sigma scalar) -> [B, ...]`; meaningful for `sigma >= sigma_min`.
  """
  if not 0.0 <= sigma_min < 1.0:
    raise ValueError(f'sigma_min must be in [0, 1), got {sigma_min!r}')

  def denoise(x, sigma):
    sigma = jnp.asarray(sigma, x.dtype)
    t = jnp.reciprocal(1.0 + sigma - sigma_min)
    x_t = t * x
    return (1.0 - sigma_min) * x_t + (sigma * t) * velocity_fn(x_t, t)

  return denoise


def guided_denoiser(denoise_fn: Callable, labels, *, null_label: int, scale) -> Callable:
  """Classifier-free guidance (Ho & Salimans 2022) of a class-conditional denoiser.

  `D_u + scale (D_c - D_u)` with `D_c = denoise_fn(x, sigma, labels)` and `D_u` the null
  label's, both halves in one batch of `2 B` (`classifier_free_guidance`). `D` is affine
  in the noise estimate at a fixed `x` (`D = x - sigma eps_hat`), so this is the same
  guidance as on `eps_hat` (or on a flow's velocity) before the adapters above.

  Args:
    denoise_fn: `(x [B, ...], sigma scalar, labels [B]) -> [B, ...]`.
    labels: int `[B]`.
    null_label: the label the model was trained with for "no class".
    scale: 0 unconditional, 1 conditional, above 1 guided.

  Returns:
    `denoise(x [B, ...], sigma scalar) -> [B, ...]`.
  """
  return classifier_free_guidance(denoise_fn, labels, null_label=null_label, scale=scale)
