"""Per-example training objectives built from log-likelihoods: ELBO, IWAE,
autoregressive and flow negative log-likelihoods, and bits per dimension."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from gm_jax.losses import _likelihoods
from gm_jax.losses import _shapes

_LOG_2PI = math.log(2.0 * math.pi)


@_shapes.float32_reductions
def elbo(log_px_given_z: jnp.ndarray, kl: jnp.ndarray, *, beta: float = 1.0) -> jnp.ndarray:
  """Evidence lower bound `log p(x|z) - beta * KL(q(z|x) || p(z))`.

  Kingma & Welling 2014, eq. 3 (`beta = 1`); `beta != 1` is the beta-VAE
  objective of Higgins et al. 2017, eq. 4. To be maximised; negate for a loss.

  Args:
    log_px_given_z: `[B]` reconstruction log-likelihoods (one sample of z).
    kl: `[B]` KL divergences, e.g. from `gaussian_kl`; the same shape as
      `log_px_given_z` (a ValueError names the argument otherwise: `[B]` against
      `[B, 1]` would broadcast to `[B, B]`).
    beta: weight of the KL term (keyword-only).

  Returns:
    `[B]` per-example bounds, in nats.
  """
  log_px_given_z, kl = jnp.asarray(log_px_given_z), jnp.asarray(kl)
  _shapes.same_shape('elbo', log_px_given_z=log_px_given_z.shape, kl=kl.shape)
  return log_px_given_z - beta * kl


@_shapes.float32_reductions
def iwae_bound(
  log_px_given_z: jnp.ndarray, log_pz: jnp.ndarray, log_qz_given_x: jnp.ndarray
) -> jnp.ndarray:
  """Importance-weighted bound with K samples per example.

  `log (1/K) sum_k p(x, z_k) / q(z_k | x)` computed as
  `logsumexp_k(log p(x|z_k) + log p(z_k) - log q(z_k|x)) - log K`
  (Burda et al. 2016, "Importance Weighted Autoencoders", eq. 8). With `K = 1`
  it is the single-sample ELBO. To be maximised.

  Args:
    log_px_given_z: `[K, B]` log p(x | z_k) for samples z_k ~ q(z | x).
    log_pz: `[K, B]` prior log-densities log p(z_k).
    log_qz_given_x: `[K, B]` posterior log-densities log q(z_k | x).

  Returns:
    `[B]` per-example bounds, in nats.

  Raises:
    ValueError: if the shapes differ or are not rank 2, or if K < 1.
  """
  log_px_given_z, log_pz, log_qz_given_x = map(
    jnp.asarray, (log_px_given_z, log_pz, log_qz_given_x)
  )
  shapes = {
    'log_px_given_z': log_px_given_z.shape,
    'log_pz': log_pz.shape,
    'log_qz_given_x': log_qz_given_x.shape,
  }
  for name, shape in shapes.items():
    if len(shape) != 2 or shape != log_px_given_z.shape:
      raise ValueError(
        f'iwae_bound needs rank-2 [K, B] inputs of equal shape; {name} has '
        f'shape {shape} (all shapes: {shapes}).'
      )
  num_samples = log_px_given_z.shape[0]
  if num_samples < 1:
    raise ValueError(
      f'iwae_bound needs K >= 1 samples per example (axis 0 of the [K, B] '
      f'inputs); got K = {num_samples}.'
    )
  log_w = log_px_given_z + log_pz - log_qz_given_x
  return jax.nn.logsumexp(log_w, axis=0) - math.log(num_samples)


@_shapes.float32_reductions
def autoregressive_nll(logits: jnp.ndarray, targets: jnp.ndarray) -> jnp.ndarray:
  """Negative log-likelihood of an autoregressive model's targets.

  `-sum_t log p(x_t | x_<t)`, the per-example cross-entropy of the next-token
  (or next-pixel) predictions.

  Args:
    logits: `[B, ..., num_classes]`, position `t` predicting `targets[:, t]`
      (the caller does any shifting).
    targets: integer `[B, ...]`, `targets.shape == logits.shape[:-1]`.

  Returns:
    `[B]` negative log-likelihoods in nats.
  """
  return -_likelihoods.categorical_log_prob(logits, targets)


@_shapes.float32_reductions
def flow_nll(z: jnp.ndarray, log_det: jnp.ndarray) -> jnp.ndarray:
  """Negative log-likelihood of a normalising flow with a N(0, I) base.

  `-(log N(f(x); 0, I) + log |det df/dx|)` (change of variables; Dinh et al.
  2017, "Density estimation using Real NVP", eq. 3).

  Args:
    z: `[B, ...]` latents `f(x)`.
    log_det: `[B]` log |det Jacobian| of `x -> z`, summed over all layers.

  Returns:
    `[B]` negative log-likelihoods in nats.
  """
  z, log_det = jnp.asarray(z), jnp.asarray(log_det)
  _shapes.batch_rank_check('z', z.shape)
  if log_det.shape != z.shape[:1]:
    raise ValueError(
      f'log_det must have shape [B] = {z.shape[:1]} for z of shape {z.shape}; got {log_det.shape}.'
    )
  log_pz = _shapes.sum_non_batch(-0.5 * (jnp.square(z) + _LOG_2PI))
  return -(log_pz + log_det)


@_shapes.float32_reductions
def bits_per_dim(nll_nats: jnp.ndarray, *, num_dims: int) -> jnp.ndarray:
  """Converts a negative log-likelihood in nats to bits per dimension.

  `nll_nats / (num_dims * log 2)`. For continuous models of discrete data the
  caller accounts for dequantisation first (e.g. adds
  `num_dims * log(num_levels)` to the NLL of a density on [0, 1]^D whose data
  were dequantised into bins of width `1 / num_levels`).

  Args:
    nll_nats: negative log-likelihoods in nats, any shape (usually `[B]`).
    num_dims: number of dimensions per example (e.g. `H * W * C`).

  Returns:
    bits per dimension, same shape as `nll_nats`.
  """
  if isinstance(num_dims, (int, float)) and num_dims <= 0:
    raise ValueError(f'num_dims must be positive; got {num_dims}.')
  return jnp.asarray(nll_nats) / (num_dims * math.log(2.0))
