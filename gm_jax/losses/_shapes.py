"""Shape checks and per-example reductions shared by the loss modules.

Every loss in `gm_jax.losses` treats axis 0 as the batch and reduces every other
axis, so callers get one value per example and can weight, mask or average as
they need. The checks here run on static shapes only, so they cost nothing under
`jax.jit` and see the per-call shapes under `jax.vmap`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
import functools

import jax
import jax.numpy as jnp


def batch_rank_check(name: str, shape: Sequence[int]) -> None:
  """Raises ValueError if `shape` has no batch axis."""
  if len(shape) < 1:
    raise ValueError(f'{name} must have a leading batch axis ([B, ...]); got shape {tuple(shape)}.')


def same_shape(fn_name: str, **arrays: Sequence[int]) -> tuple:
  """Raises ValueError unless every shape in `arrays` equals the first one.

  Per-example inputs (`[B]` bounds, KLs, log-likelihoods) must not broadcast: `[B]`
  against `[B, 1]` would silently give `[B, B]`. The error names the first argument
  whose shape differs and every argument's shape. Static shapes only, so the check
  costs nothing under `jax.jit` and sees the per-call shapes under `jax.vmap`.

  Returns:
    the common shape.
  """
  items = [(name, tuple(shape)) for name, shape in arrays.items()]
  first_name, first = items[0]
  batch_rank_check(first_name, first)
  for name, shape in items[1:]:
    if shape != first:
      listed = ', '.join(f'{n} {s}' for n, s in items)
      raise ValueError(
        f'{fn_name}: {name} has shape {shape} but {first_name} has {first}; per-example '
        f'inputs must share the batch shape and are never broadcast ({listed}).'
      )
  return first


def broadcast_to_data(data_name: str, data_shape: Sequence[int], **others: Sequence[int]) -> None:
  """Raises ValueError unless every shape in `others` broadcasts to the data.

  Parameters such as a learned, shared `log_var` of shape `[D]` may broadcast
  against the data `x` of shape `[B, D]`; they may not enlarge it, because the
  batch axis of the result is the data's.
  """
  batch_rank_check(data_name, data_shape)
  data_shape = tuple(data_shape)
  for name, shape in others.items():
    try:
      out = jnp.broadcast_shapes(data_shape, tuple(shape))
    except ValueError:
      out = None
    if out != data_shape:
      raise ValueError(
        f'{name} of shape {tuple(shape)} must broadcast to the shape of {data_name}, {data_shape}.'
      )


def sum_non_batch(x: jnp.ndarray) -> jnp.ndarray:
  """Sums every axis but the first: `[B, ...] -> [B]`."""
  return jnp.sum(x, axis=tuple(range(1, x.ndim)))


def mean_non_batch(x: jnp.ndarray) -> jnp.ndarray:
  """Averages every axis but the first: `[B, ...] -> [B]` (`[B]` unchanged)."""
  return jnp.mean(x, axis=tuple(range(1, x.ndim)))


def _widen(x):
  dtype = getattr(x, 'dtype', None)
  if dtype is not None and jnp.issubdtype(dtype, jnp.floating) and jnp.finfo(dtype).bits < 32:
    return jnp.asarray(x, jnp.float32)
  return x


def float32_reductions(fn: Callable) -> Callable:
  """Runs `fn` on its array arguments widened to at least float32.

  A model trained with bfloat16 activations (`config.compute_dtype`) hands the
  losses bfloat16 logits, means and log-variances; log-likelihoods, logsumexps, KL
  terms and their sums over thousands of dimensions are then computed in float32
  (bfloat16 keeps 8 bits of mantissa: a 784-term sum of ~1-nat terms would be off by
  ~1 nat). float32 and float64 inputs pass unchanged.
  """

  @functools.wraps(fn)
  def wrapped(*args, **kwargs):
    args = jax.tree.map(_widen, args)
    kwargs = {k: jax.tree.map(_widen, v) for k, v in kwargs.items()}
    return fn(*args, **kwargs)

  return wrapped
