"""Per-example log-likelihoods of common observation models.

Every function takes arrays whose axis 0 is the batch and returns the
log-probability summed over all other axes, shape `[B]`.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from gm_jax.losses import _shapes

_LOG_2PI = math.log(2.0 * math.pi)

# Below this bin width (in units of the logistic scale) the bin probability is
# computed as density x width (PixelCNN++'s fallback); the midpoint rule's
# relative error there is O(width^2) < 1e-10, and it stays finite when the
# width underflows (very large `log_scale`).
_MIN_STANDARDIZED_BIN_WIDTH = 1e-5

# exp(-log_scale) overflows float32 near log_scale = -88; clipping here keeps
# values and gradients finite. A scale of e^-40 is ~1e17 times smaller than
# any bin, so the clip changes no probability a model can meaningfully output
# (PixelCNN++ itself clips much earlier, at -7, as a modelling choice).
_MIN_LOG_SCALE = -40.0


@_shapes.float32_reductions
def gaussian_log_prob(x: jnp.ndarray, mean: jnp.ndarray, log_var: jnp.ndarray) -> jnp.ndarray:
  """Log-density of `x` under a diagonal Gaussian, summed per example.

  `log N(x; mean, diag(exp(log_var)))
   = -0.5 * sum(log(2 pi) + log_var + (x - mean)^2 / exp(log_var))`.

  Args:
    x: data, `[B, ...]`.
    mean: `[B, ...]` or anything that broadcasts to `x.shape`.
    log_var: log-variance, `[B, ...]` or anything that broadcasts to `x.shape`
      (e.g. a learned, shared `[D]` vector or a scalar).

  Returns:
    `[B]` log-densities in nats.
  """
  x, mean, log_var = map(jnp.asarray, (x, mean, log_var))
  _shapes.broadcast_to_data('x', x.shape, mean=mean.shape, log_var=log_var.shape)
  # Scaling by exp(-log_var / 2) before squaring, rather than multiplying the
  # square by exp(-log_var), keeps 0 * inf out of the result for tiny variances.
  z = (x - mean) * jnp.exp(-0.5 * log_var)
  log_prob = -0.5 * (_LOG_2PI + log_var + jnp.square(z))
  return _shapes.sum_non_batch(jnp.broadcast_to(log_prob, x.shape))


@_shapes.float32_reductions
def bernoulli_log_prob(logits: jnp.ndarray, x: jnp.ndarray) -> jnp.ndarray:
  """Log-probability of `x` under independent Bernoullis, summed per example.

  `x * log sigmoid(l) + (1 - x) * log sigmoid(-l)`, i.e. minus the binary
  cross-entropy with logits. For `x` in `[0, 1]` (not only `{0, 1}`) this is the
  continuous-target cross-entropy commonly used for grey-scale images; it is not
  a normalised density there.

  Args:
    logits: `[B, ...]` logits of `p(x = 1)`; any real value, `+-100` included.
    x: targets in `[0, 1]`, same shape as `logits` (or broadcastable to it).

  Returns:
    `[B]` log-probabilities in nats.
  """
  logits, x = jnp.asarray(logits), jnp.asarray(x)
  _shapes.broadcast_to_data('logits', logits.shape, x=x.shape)
  log_prob = x * jax.nn.log_sigmoid(logits) + (1.0 - x) * jax.nn.log_sigmoid(-logits)
  return _shapes.sum_non_batch(log_prob)


@_shapes.float32_reductions
def categorical_log_prob(logits: jnp.ndarray, labels: jnp.ndarray) -> jnp.ndarray:
  """Log-probability of integer `labels` under softmax(`logits`), per example.

  Args:
    logits: `[B, ..., num_classes]` unnormalised log-probabilities.
    labels: integer `[B, ...]` class indices in `[0, num_classes)`, with
      `labels.shape == logits.shape[:-1]`. Concrete labels (a call outside
      `jit`) out of that range raise a ValueError naming the offending value.
      Traced labels (under `jit`/`vmap`/`grad`) cannot be checked without a
      device round trip; an out-of-range label then gives NaN for its example,
      so it cannot pass for a likelihood.

  Returns:
    `[B]` log-probabilities in nats, summed over all positions `...`.
  """
  logits, labels = jnp.asarray(logits), jnp.asarray(labels)
  if logits.ndim < 2 or labels.shape != logits.shape[:-1]:
    raise ValueError(
      'categorical_log_prob expects logits [B, ..., num_classes] and labels '
      f'[B, ...] with labels.shape == logits.shape[:-1]; got logits '
      f'{logits.shape} and labels {labels.shape}.'
    )
  if not jnp.issubdtype(labels.dtype, jnp.integer):
    raise ValueError(f'labels must be integers; got dtype {labels.dtype}.')
  num_classes = logits.shape[-1]
  if not isinstance(labels, jax.core.Tracer) and labels.size:
    # NumPy, not jnp: under an enclosing jit even a concrete array's jnp.min is staged.
    concrete = np.asarray(labels)
    low, high = int(concrete.min()), int(concrete.max())
    if low < 0 or high >= num_classes:
      bad = low if low < 0 else high
      raise ValueError(
        f'categorical_log_prob: labels must lie in [0, num_classes) = '
        f'[0, {num_classes}); got a label {bad}.'
      )
  # logit[label] - logsumexp(logits): no [..., num_classes] log-softmax is kept for the
  # backward pass, and the one-hot product's gradient is elementwise where a gather's is
  # a scatter (measured, [64, 28, 28, 256] logits, forward + backward on 2 CPU cores:
  # 81 ms with log_softmax + take_along_axis, 48 ms this way).
  one_hot = jax.nn.one_hot(labels, logits.shape[-1], dtype=logits.dtype)
  picked = jnp.sum(logits * one_hot, axis=-1) - jax.nn.logsumexp(logits, axis=-1)
  # one_hot of an out-of-range label is all zeros, which would read as a finite
  # log-probability; NaN marks it where the check above could not run (traced labels).
  # int32 first: `uint8 < 256` would wrap 256 to 0 and mark every 8-bit label out of range.
  wide = labels.astype(jnp.int32)
  in_range = (wide >= 0) & (wide < num_classes)
  picked = jnp.where(in_range, picked, jnp.nan)
  return _shapes.sum_non_batch(picked)


def _log_sigmoid_diff(a: jnp.ndarray, b: jnp.ndarray, d: jnp.ndarray) -> jnp.ndarray:
  """`log(sigmoid(a) - sigmoid(b))` for `d = a - b > 0`, without cancellation.

  Uses sigmoid(a) - sigmoid(b) = sigmoid(a) sigmoid(-b) (1 - exp(-(a - b))),
  which follows from 1 - sigmoid(b) = sigmoid(-b); each factor is computed in
  log space, so far-tail bins keep full relative precision.
  """
  # log(1 - exp(-d)), Maechler (2012) "Accurately computing log(1 - exp(-|a|))".
  log1mexp = jnp.where(d < math.log(2.0), jnp.log(-jnp.expm1(-d)), jnp.log1p(-jnp.exp(-d)))
  return jax.nn.log_sigmoid(a) + jax.nn.log_sigmoid(-b) + log1mexp


def _discretized_logistic_log_prob_per_dim(x, mean, log_scale, num_levels):
  """Unreduced per-dimension log-probabilities; shapes broadcast."""
  half_width = 0.5 / (num_levels - 1)
  log_scale = jnp.maximum(log_scale, _MIN_LOG_SCALE)
  inv_scale = jnp.exp(-log_scale)
  centered = x - mean
  upper = inv_scale * (centered + half_width)  # standardized right bin edge
  lower = inv_scale * (centered - half_width)  # standardized left bin edge
  width = (2.0 * half_width) * inv_scale  # = upper - lower, exactly > 0

  # Interior bins. Where the standardized bin is tiny, use density x width at
  # the bin centre (PixelCNN++, Salimans et al. 2017, `discretized_mix_logistic_
  # loss`); the double `where` keeps the unused branch's -inf out of gradients.
  tiny = width < _MIN_STANDARDIZED_BIN_WIDTH
  safe_width = jnp.where(tiny, 1.0, width)
  log_bin = _log_sigmoid_diff(upper, lower, safe_width)
  mid = inv_scale * centered
  # log pdf of the logistic at the centre: mid - log_scale - 2 softplus(mid).
  log_pdf_mid = mid - log_scale - 2.0 * jax.nn.softplus(mid)
  log_bin_tiny = log_pdf_mid + math.log(2.0 * half_width)
  log_interior = jnp.where(tiny, log_bin_tiny, log_bin)

  # Edge bins (Salimans et al. 2017, Sec. 2.1): the lowest level takes all mass
  # below its right edge, the highest all mass above its left edge, so the
  # num_levels probabilities sum to one.
  log_lowest = jax.nn.log_sigmoid(upper)  # log CDF(right edge)
  log_highest = jax.nn.log_sigmoid(-lower)  # log (1 - CDF(left edge))
  return jnp.where(
    x < half_width, log_lowest, jnp.where(x > 1.0 - half_width, log_highest, log_interior)
  )


def _check_num_levels(num_levels) -> None:
  if not isinstance(num_levels, int) or num_levels < 2:
    raise ValueError(f'num_levels must be a Python int >= 2; got {num_levels!r}.')


@_shapes.float32_reductions
def discretized_logistic_log_prob(
  x: jnp.ndarray, mean: jnp.ndarray, log_scale: jnp.ndarray, *, num_levels: int
) -> jnp.ndarray:
  """Log-probability of discretised data under a logistic, per example.

  Each dimension of `x` lies on the grid `k / (num_levels - 1)`,
  `k = 0, ..., num_levels - 1`. Its probability is the logistic mass of the bin
  `[x - h, x + h]`, `h = 1 / (2 (num_levels - 1))`, except that the lowest
  level's bin extends to -inf and the highest's to +inf (PixelCNN++, Salimans et
  al. 2017, eq. 2), so the probabilities of all levels sum to one. Bin masses
  use a cancellation-free log-difference of sigmoids; for bins narrower than
  1e-5 logistic scales the PixelCNN++ fallback `log(pdf(x) * 2h)` is used.
  `log_scale` below -40 is clipped to -40 to keep float32 finite.

  Args:
    x: data in `[0, 1]` on the grid above, `[B, ...]` (e.g. `uint8 / 255` with
      `num_levels=256`).
    mean: logistic location in the same `[0, 1]` scale, broadcastable to `x`.
    log_scale: log of the logistic scale, broadcastable to `x`.
    num_levels: number of grid levels (256 for 8-bit data); a Python int >= 2.

  Returns:
    `[B]` log-probabilities in nats.
  """
  x, mean, log_scale = map(jnp.asarray, (x, mean, log_scale))
  _check_num_levels(num_levels)
  _shapes.broadcast_to_data('x', x.shape, mean=mean.shape, log_scale=log_scale.shape)
  log_prob = _discretized_logistic_log_prob_per_dim(x, mean, log_scale, num_levels)
  return _shapes.sum_non_batch(jnp.broadcast_to(log_prob, x.shape))


@_shapes.float32_reductions
def discretized_logistic_mixture_log_prob(
  x: jnp.ndarray,
  logit_weights: jnp.ndarray,
  means: jnp.ndarray,
  log_scales: jnp.ndarray,
  *,
  num_levels: int,
) -> jnp.ndarray:
  """Log-probability under a per-dimension mixture of discretised logistics.

  Every dimension of `x` has its own mixture of `M` discretised logistics
  (see `discretized_logistic_log_prob` for the bins); dimensions are
  independent (no PixelCNN++ RGB coupling):
  `log p(x_i) = logsumexp_m(log_softmax(logit_weights_i)_m + log p_m(x_i))`.

  Args:
    x: data in `[0, 1]` on the grid `k / (num_levels - 1)`, `[B, ...]`.
    logit_weights: unnormalised mixture log-weights, `[B, ..., M]`.
    means: component locations in the `[0, 1]` scale, `[B, ..., M]`.
    log_scales: component log-scales, `[B, ..., M]`.
    num_levels: number of grid levels; a Python int >= 2.

  Returns:
    `[B]` log-probabilities in nats.
  """
  x, logit_weights, means, log_scales = map(jnp.asarray, (x, logit_weights, means, log_scales))
  _check_num_levels(num_levels)
  _shapes.batch_rank_check('x', x.shape)
  if logit_weights.ndim != x.ndim + 1:
    raise ValueError(
      f'logit_weights must be [B, ..., M] with x.shape == {x.shape} as its '
      f'leading axes; got {logit_weights.shape}.'
    )
  param_shape = x.shape + logit_weights.shape[-1:]
  _shapes.broadcast_to_data(
    'x.shape + (M,)',
    param_shape,
    logit_weights=logit_weights.shape,
    means=means.shape,
    log_scales=log_scales.shape,
  )
  log_component = _discretized_logistic_log_prob_per_dim(
    x[..., None], means, log_scales, num_levels
  )
  log_weights = jax.nn.log_softmax(logit_weights, axis=-1)
  log_prob = jax.nn.logsumexp(log_weights + log_component, axis=-1)
  return _shapes.sum_non_batch(log_prob)
