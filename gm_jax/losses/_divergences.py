"""Closed-form divergences between distributions, per example."""

from __future__ import annotations

import jax.numpy as jnp

from gm_jax.losses import _shapes


@_shapes.float32_reductions
def gaussian_kl(
  mean: jnp.ndarray,
  log_var: jnp.ndarray,
  *,
  prior_mean: jnp.ndarray | None = None,
  prior_log_var: jnp.ndarray | None = None,
) -> jnp.ndarray:
  """KL( N(mean, diag(exp(log_var))) || N(prior_mean, diag(exp(prior_log_var))) ).

  Summed per example. With the default prior N(0, I) this is
  `0.5 * sum(exp(log_var) + mean^2 - 1 - log_var)` (Kingma & Welling 2014,
  "Auto-Encoding Variational Bayes", Appendix B); in general, with
  `d = log_var - prior_log_var`,
  `0.5 * sum(exp(d) - 1 - d + (mean - prior_mean)^2 / exp(prior_log_var))`,
  the KL between diagonal Gaussians used per latent group by hierarchical VAEs
  (Vahdat & Kautz 2020, "NVAE", eq. 2, where `d = 2 log delta_sigma`).

  Args:
    mean: posterior means, `[B, ...]`.
    log_var: posterior log-variances.
    prior_mean: prior means (keyword-only); None means 0.
    prior_log_var: prior log-variances (keyword-only); None means 0.
    `mean` or `log_var` has the `[B, ...]` shape and the other three broadcast to
    it without enlarging it; a ValueError names the argument that does not.

  Returns:
    `[B]` KL divergences in nats (non-negative).
  """
  mean, log_var = jnp.asarray(mean), jnp.asarray(log_var)
  try:
    shape = jnp.broadcast_shapes(mean.shape, log_var.shape)
  except ValueError:
    shape = None
  # The posterior fixes the batch shape: one of mean/log_var has it and the other
  # broadcasts to it ([B] against [B, 1] would silently give [B, B]).
  if shape not in (mean.shape, log_var.shape):
    raise ValueError(
      f'gaussian_kl: mean {mean.shape} and log_var {log_var.shape} must share the batch '
      'shape (one may broadcast to the other, as a shared [D] log_var does, without '
      'enlarging it).'
    )
  _shapes.batch_rank_check('mean/log_var', shape)
  priors = {}
  if prior_mean is not None:
    prior_mean = jnp.asarray(prior_mean)
    priors['prior_mean'] = prior_mean.shape
  if prior_log_var is not None:
    prior_log_var = jnp.asarray(prior_log_var)
    priors['prior_log_var'] = prior_log_var.shape
  _shapes.broadcast_to_data('mean/log_var', shape, **priors)
  if prior_mean is None and prior_log_var is None:
    # expm1 keeps exp(log_var) - 1 - log_var accurate when the posterior is
    # close to the prior (log_var ~ 0), where the naive sum cancels.
    kl = 0.5 * (jnp.expm1(log_var) - log_var + jnp.square(mean))
  else:
    diff = mean if prior_mean is None else mean - prior_mean
    log_ratio = log_var if prior_log_var is None else log_var - prior_log_var
    # Scaling the difference by exp(-prior_log_var / 2) before squaring keeps
    # 0 * inf out of the result for tiny prior variances.
    scaled = diff if prior_log_var is None else diff * jnp.exp(-0.5 * prior_log_var)
    kl = 0.5 * (jnp.expm1(log_ratio) - log_ratio + jnp.square(scaled))
  return _shapes.sum_non_batch(jnp.broadcast_to(kl, shape))
