"""The consistency-training loss (Song & Dhariwal 2023, "Improved Techniques for Training
Consistency Models", section 3.3 and eq. 9).

Arrays in, one value per example out; it never calls a model. The noise levels, the
growing discretisation and the network live in `gm_jax.models.consistency`.
"""

from __future__ import annotations

import math

import jax.numpy as jnp

from gm_jax.losses import _shapes


@_shapes.float32_reductions
def consistency_loss(
  online: jnp.ndarray,
  target: jnp.ndarray,
  sigma: jnp.ndarray,
  sigma_next: jnp.ndarray,
  *,
  huber_c: float | None = None,
) -> jnp.ndarray:
  """`lambda(sigma_i) d(f(x_{i+1}, sigma_{i+1}), f(x_i, sigma_i))` per example.

  `d(a, b) = sqrt(||a - b||^2 + c^2) - c` is the pseudo-Huber metric (eq. 9; no LPIPS)
  and `lambda(sigma_i) = 1 / (sigma_{i+1} - sigma_i)` the weight of section 3.3, which
  evens out the loss over noise levels whose neighbours are far apart.

  Args:
    online: `f(x + sigma_next n, sigma_next)`, the network at the larger noise level,
      `[B, ...]` (gradients flow through it).
    target: `f(x + sigma n, sigma)` at the smaller level, the shape of `online`; the
      caller stops its gradient (improved CT: the same parameters, no EMA teacher).
    sigma: `[B]` (or a scalar) noise levels `sigma_i > 0`.
    sigma_next: `[B]` (or a scalar) levels `sigma_{i+1} > sigma_i`.
    huber_c: `c > 0`; None: `0.00054 sqrt(D)`, `D` the size of one example (the
      paper's choice for data in `[-1, 1]`).

  Returns:
    `[B]` weighted pseudo-Huber distances.
  """
  online = jnp.asarray(online)
  target = jnp.asarray(target)
  _shapes.batch_rank_check('online', online.shape)
  if target.shape != online.shape:
    raise ValueError(
      f'target of shape {target.shape} must have the shape of online, {online.shape}.'
    )
  batch = online.shape[0]
  if huber_c is None:
    huber_c = 0.00054 * math.sqrt(math.prod(online.shape[1:]))
  if not huber_c > 0:
    raise ValueError(f'huber_c must be > 0; got {huber_c!r}.')
  levels = []
  for name, value in (('sigma', sigma), ('sigma_next', sigma_next)):
    value = jnp.asarray(value)
    if value.shape not in ((), (batch,)):
      raise ValueError(
        f'{name} must be a scalar or have shape [B] = ({batch},); got {value.shape}.'
      )
    levels.append(jnp.broadcast_to(value, (batch,)))
  sigma, sigma_next = levels
  distance = jnp.sqrt(_shapes.sum_non_batch(jnp.square(online - target)) + huber_c**2) - huber_c
  return distance / (sigma_next - sigma)
