"""Input checks at the public boundary of the classifiers and of their evaluation.

One definition of what a feature or probability matrix, a label vector and a positive
hyper-parameter must look like, shared by `gm_jax.models.naive_bayes`,
`gm_jax.models.logistic_regression` and `gm_jax.evaluate.calibration`. Every error is
a ValueError that names the argument. Shape and dtype checks read static shapes only,
so they hold under `jit` and `vmap`; value checks (label range, positivity) run only
on concrete arrays and are skipped for tracers.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


def is_concrete(x) -> bool:
  """Whether `x` holds values (not a tracer), so that its values can be checked."""
  return not isinstance(x, jax.core.Tracer)


def as_float(x) -> jax.Array:
  """`x` as an array of the default float dtype (float32, float64 under x64)."""
  return jnp.asarray(x, dtype=jnp.result_type(float))


def check_matrix(x, name: str = 'x', dims: str = '[N, D]') -> None:
  """A ValueError naming `name` unless `x` has two axes (`dims` says which)."""
  if jnp.ndim(x) != 2:
    raise ValueError(f'{name} must be {dims}, got shape {jnp.shape(x)}')


def check_positive_int(value, name: str) -> None:
  """A ValueError naming `name` unless `value` is a Python or NumPy int >= 1."""
  if not isinstance(value, (int, np.integer)) or value < 1:
    raise ValueError(f'{name} must be a positive int, got {value!r}')


def check_positive(value, name: str) -> None:
  """A ValueError naming `name` unless every value of a concrete `value` is > 0."""
  if is_concrete(value) and not np.all(np.asarray(value) > 0):
    raise ValueError(f'{name} must be > 0, got {value!r}')


def check_labels(
  labels, rows, *, name: str = 'y', rows_name: str = 'x', num_classes: int | None = None
) -> None:
  """Checks integer class labels, one per row of `rows`.

  Args:
    labels: [N] integer labels.
    rows: the [N, ...] array the labels belong to (features or probabilities).
    name: the labels' argument name, used in the errors.
    rows_name: `rows`'s argument name, used in the errors.
    num_classes: when given, concrete labels must lie in `[0, num_classes)`.

  Raises:
    ValueError: naming `name`, for a shape other than `[N]`, a non-integer dtype or
      a label out of range.
  """
  if jnp.shape(labels) != jnp.shape(rows)[:1]:
    raise ValueError(
      f'{name} must be [N] = {jnp.shape(rows)[:1]} like {rows_name}, got shape {jnp.shape(labels)}'
    )
  dtype = jnp.asarray(labels).dtype
  if not jnp.issubdtype(dtype, jnp.integer):
    raise ValueError(f'{name} must hold integer labels, got dtype {dtype}')
  if num_classes is not None and is_concrete(labels) and jnp.size(labels):
    values = np.asarray(labels)
    if values.min() < 0 or values.max() >= num_classes:
      raise ValueError(
        f'{name} must lie in [0, num_classes={num_classes}), got range '
        f'[{values.min()}, {values.max()}]'
      )
