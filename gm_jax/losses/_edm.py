"""The EDM training loss (Karras et al. 2022, "Elucidating the Design Space of
Diffusion-Based Generative Models", eq. 2 with the weight of Table 1).

Arrays in, one value per example out; it never calls a model. The noise levels,
preconditioning and network live in `gm_jax.models.edm`.
"""

from __future__ import annotations

import jax.numpy as jnp

from gm_jax.losses import _shapes


@_shapes.float32_reductions
def edm_loss(
  denoised: jnp.ndarray, clean: jnp.ndarray, sigma: jnp.ndarray, *, sigma_data: float = 0.5
) -> jnp.ndarray:
  """`lambda(sigma) ||D(y + n; sigma) - y||^2` per example, summed over the non-batch axes.

  EDM's weight `lambda(sigma) = (sigma^2 + sigma_data^2) / (sigma sigma_data)^2` is
  `1 / c_out(sigma)^2`, so with the preconditioned denoiser `D = c_skip x + c_out F` the
  loss is `||F - (y - c_skip x) / c_out||^2`: the network's regression target has unit
  weight at every noise level (Karras et al. 2022, eq. 8 and section 5).

  Args:
    denoised: `D(y + n; sigma)`, the model's estimate of the clean data, `[B, ...]`.
    clean: the clean data `y`, `[B, ...]` (the shape of `denoised`).
    sigma: `[B]` (or a scalar) noise levels `> 0` at which `denoised` was computed.
    sigma_data: the data's standard deviation (> 0; 0.5 for data in `[-1, 1]`).

  Returns:
    `[B]` weighted squared errors.
  """
  if not sigma_data > 0:
    raise ValueError(f'sigma_data must be > 0; got {sigma_data!r}.')
  clean = jnp.asarray(clean)
  denoised = jnp.asarray(denoised)
  _shapes.batch_rank_check('clean', clean.shape)
  if denoised.shape != clean.shape:
    raise ValueError(
      f'denoised of shape {denoised.shape} must have the shape of clean, {clean.shape}.'
    )
  batch = clean.shape[0]
  sigma = jnp.asarray(sigma)
  if sigma.shape not in ((), (batch,)):
    raise ValueError(f'sigma must be a scalar or have shape [B] = ({batch},); got {sigma.shape}.')
  sigma = jnp.broadcast_to(sigma, (batch,))
  weight = (jnp.square(sigma) + sigma_data**2) / jnp.square(sigma * sigma_data)
  return weight * _shapes.sum_non_batch(jnp.square(denoised - clean))
