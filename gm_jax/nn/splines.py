"""The monotone rational-quadratic spline of neural spline flows (Durkan et al. 2019).

A pure elementwise function, re-exported as `gm_jax.nn.flows.rational_quadratic_spline`.
It follows the parametrisation of the authors' reference code (nflows'
`unconstrained_rational_quadratic_spline` with linear tails), so parameters trained
there mean the same here:

* `K` bin widths and heights are softmaxes of the unnormalised ones, floored at
  `min_bin_width` / `min_bin_height` (`w = m + (1 - m K) softmax(u)`) and scaled onto
  `[-B, B]`, `B = tail_bound`;
* the `K - 1` interior knot derivatives are `min_derivative + softplus(u)`; the two
  boundary derivatives are 1 (softplus of `log(exp(1 - min_derivative) - 1)`), so
  the spline joins the identity tails outside `[-B, B]` with a continuous slope;
* the inverse inside a bin is the root of a quadratic (Durkan et al. 2019, eqs. 6-8),
  taken in the numerically stable form `2c / (-b - sqrt(b^2 - 4ac))`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

Array = jnp.ndarray


def _knots(unnormalized, *, num_bins: int, minimum: float, bound: float):
  """Knot positions `[..., K + 1]` on `[-bound, bound]` and bin sizes `[..., K]`."""
  sizes = minimum + (1.0 - minimum * num_bins) * jax.nn.softmax(unnormalized, axis=-1)
  cum = jnp.cumsum(sizes, axis=-1)
  # The first and last knots are pinned to the interval's ends exactly (as nflows does),
  # so rounding in the cumulative sum cannot move the edges.
  inner = 2.0 * bound * cum[..., :-1] - bound
  lo = jnp.full(cum.shape[:-1] + (1,), -bound, cum.dtype)
  knots = jnp.concatenate([lo, inner, -lo], axis=-1)
  return knots, knots[..., 1:] - knots[..., :-1]


def _gather(values: Array, index: Array) -> Array:
  return jnp.take_along_axis(values, index[..., None], axis=-1)[..., 0]


def rational_quadratic_spline(
  x: Array,
  unnormalized_widths: Array,
  unnormalized_heights: Array,
  unnormalized_derivatives: Array,
  *,
  inverse: bool = False,
  tail_bound: float = 3.0,
  min_bin_width: float = 1e-3,
  min_bin_height: float = 1e-3,
  min_derivative: float = 1e-3,
):
  """Monotone rational-quadratic spline with identity tails, elementwise.

  Args:
    x: `[...]` inputs (any shape `S`).
    unnormalized_widths: `[..., K]`, shape `S + (K,)`: bin widths before the softmax.
    unnormalized_heights: `[..., K]`: bin heights before the softmax.
    unnormalized_derivatives: `[..., K - 1]`: interior knot derivatives before the softplus.
    inverse: apply the inverse map instead (same parameters).
    tail_bound: `B`; the spline maps `[-B, B]` onto itself and is the identity outside.
    min_bin_width, min_bin_height: floors of the normalised bin sizes (`x K < 1`).
    min_derivative: floor of the interior knot derivatives (`> 0`).

  Returns:
    `(y, log_abs_det)`, both of shape `S`: `y = g(x)` (or `g^{-1}(x)` when
    `inverse`) and `log |dy/dx|` elementwise (0 in the tails). The log-dets of a
    forward and inverse pass on the same point sum to zero.

  Raises:
    ValueError: naming the argument, when the bins cannot fit (`K < 2`, a floor times
      `K >= 1`), the derivative floor or `tail_bound` is not positive, or the shapes
      disagree.
  """
  num_bins = unnormalized_widths.shape[-1]
  if num_bins < 2:
    raise ValueError(
      f'unnormalized_widths needs K >= 2 bins on its last axis; got shape '
      f'{unnormalized_widths.shape}.'
    )
  shape = tuple(x.shape)
  for name, value, last in (
    ('unnormalized_widths', unnormalized_widths, num_bins),
    ('unnormalized_heights', unnormalized_heights, num_bins),
    ('unnormalized_derivatives', unnormalized_derivatives, num_bins - 1),
  ):
    if tuple(value.shape) != shape + (last,):
      raise ValueError(
        f'{name} must have shape {shape + (last,)} (x.shape + ({last},), '
        f'K = {num_bins} bins); got {tuple(value.shape)}.'
      )
  for name, floor in (('min_bin_width', min_bin_width), ('min_bin_height', min_bin_height)):
    if not 0.0 <= floor or floor * num_bins >= 1.0:
      raise ValueError(
        f'{name} x K must be in [0, 1); got {name}={floor} with K = {num_bins} bins.'
      )
  if not min_derivative > 0.0:
    raise ValueError(f'min_derivative must be > 0; got {min_derivative}.')
  if not tail_bound > 0.0:
    raise ValueError(f'tail_bound must be > 0; got {tail_bound}.')

  bound = float(tail_bound)
  x_knots, widths = _knots(
    unnormalized_widths, num_bins=num_bins, minimum=min_bin_width, bound=bound
  )
  y_knots, heights = _knots(
    unnormalized_heights, num_bins=num_bins, minimum=min_bin_height, bound=bound
  )
  # Boundary derivatives 1: softplus(log(e^(1 - m) - 1)) = 1 - m, plus the floor m.
  edge = jnp.ones(unnormalized_derivatives.shape[:-1] + (1,), unnormalized_derivatives.dtype)
  derivatives = jnp.concatenate(
    [edge, min_derivative + jax.nn.softplus(unnormalized_derivatives), edge], axis=-1
  )

  inside = (x >= -bound) & (x <= bound)
  # The spline branch sees a clamped input, so the tails get finite values (and finite
  # gradients through `where`) from it.
  xc = jnp.clip(x, -bound, bound)
  knots = y_knots if inverse else x_knots
  # Bin index: how many interior knots lie at or below the input (0 .. K - 1).
  index = jnp.sum(xc[..., None] >= knots[..., 1:-1], axis=-1)
  x_lo, width = _gather(x_knots, index), _gather(widths, index)
  y_lo, height = _gather(y_knots, index), _gather(heights, index)
  d_lo, d_hi = _gather(derivatives[..., :-1], index), _gather(derivatives[..., 1:], index)
  delta = height / width
  curvature = d_lo + d_hi - 2.0 * delta

  if inverse:
    # Durkan et al. 2019, appendix A: theta solves a theta^2 + b theta + c = 0.
    dy = xc - y_lo
    a = dy * curvature + height * (delta - d_lo)
    b = height * d_lo - dy * curvature
    c = -delta * dy
    discriminant = jnp.maximum(b * b - 4.0 * a * c, 0.0)
    theta = (2.0 * c) / (-b - jnp.sqrt(discriminant))
    out = theta * width + x_lo
  else:
    theta = (xc - x_lo) / width
    t1mt = theta * (1.0 - theta)
    out = y_lo + height * (delta * theta**2 + d_lo * t1mt) / (delta + curvature * t1mt)
  # Durkan et al. 2019, eq. 5: the derivative of the forward map at theta.
  t1mt = theta * (1.0 - theta)
  denominator = delta + curvature * t1mt
  numerator = delta**2 * (d_hi * theta**2 + 2.0 * delta * t1mt + d_lo * (1.0 - theta) ** 2)
  log_det = jnp.log(numerator) - 2.0 * jnp.log(denominator)
  if inverse:
    log_det = -log_det
  y = jnp.where(inside, out, x)
  return y, jnp.where(inside, log_det, jnp.zeros_like(log_det))


def num_spline_params(num_bins: int) -> int:
  """Unconstrained parameters per transformed scalar: `K` widths, `K` heights, `K - 1`
  derivatives (`3K - 1`)."""
  return 3 * num_bins - 1


def split_spline_params(raw: Array, num_bins: int):
  """`[..., 3K - 1] -> (widths [..., K], heights [..., K], derivatives [..., K - 1])`."""
  return raw[..., :num_bins], raw[..., num_bins : 2 * num_bins], raw[..., 2 * num_bins :]


__all__ = ('num_spline_params', 'rational_quadratic_spline', 'split_spline_params')
