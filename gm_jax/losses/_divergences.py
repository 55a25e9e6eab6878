"""Closed-form divergences between distributions, per example."""
from __future__ import annotations

import jax.numpy as jnp

from gm_jax.losses import _shapes


def gaussian_kl(mean: jnp.ndarray, log_var: jnp.ndarray) -> jnp.ndarray:
  """KL( N(mean, diag(exp(log_var))) || N(0, I) ), summed per example.

  `0.5 * sum(exp(log_var) + mean^2 - 1 - log_var)` (Kingma & Welling 2014,
  "Auto-Encoding Variational Bayes", Appendix B).

  Args:
    mean: posterior means, `[B, ...]`.
    log_var: posterior log-variances; `mean` and `log_var` broadcast together
      to a `[B, ...]` shape.

  Returns:
    `[B]` KL divergences in nats (non-negative).
  """
  mean, log_var = jnp.asarray(mean), jnp.asarray(log_var)
  try:
    shape = jnp.broadcast_shapes(mean.shape, log_var.shape)
  except ValueError:
    raise ValueError(
        f"mean {mean.shape} and log_var {log_var.shape} do not broadcast."
    ) from None
  _shapes.batch_rank_check("mean/log_var", shape)
  # expm1 keeps exp(log_var) - 1 - log_var accurate when the posterior is
  # close to the prior (log_var ~ 0), where the naive sum cancels.
  kl = 0.5 * (jnp.expm1(log_var) - log_var + jnp.square(mean))
  return _shapes.sum_non_batch(jnp.broadcast_to(kl, shape))
