"""Multinomial logistic regression: the discriminative classifier.

p(y | x) = softmax(x W + b), fitted to the (weighted) mean cross-entropy plus an L2
penalty on W, on the full batch in one jitted `lax.scan` (L-BFGS, Adam or SGD). The
discriminative side of `gm_jax.models.naive_bayes`'s comparison: fitted to p(y | x),
it shares the weight between correlated features that naive Bayes counts once per copy
(Ng & Jordan, "On Discriminative vs. Generative Classifiers", NIPS 2002).

All functions are pure; parameters are a NamedTuple (a pytree) so they pass through
`jit`, `vmap` and `grad`. `fit_logreg` validates its inputs (ValueError naming the
field; `gm_jax._checks`) when the values are concrete.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from gm_jax import _checks
from gm_jax import _optimizer
from gm_jax._checks import as_float as _float
from gm_jax._checks import is_concrete as _concrete


class LogRegParams(NamedTuple):
  """Multinomial logistic regression p(y | x) = softmax(x W + b).

  Attributes:
    weight: [D, C].
    bias: [C].
  """

  weight: jax.Array
  bias: jax.Array


def logreg_init(num_features: int, num_classes: int, *, dtype=None) -> LogRegParams:
  """Zero parameters (the objective is convex, so no random init is needed).

  Returns:
    `LogRegParams` with weight [D, C] and bias [C].
  """
  dtype = dtype or jnp.result_type(float)
  return LogRegParams(
    weight=jnp.zeros((num_features, num_classes), dtype), bias=jnp.zeros((num_classes,), dtype)
  )


def logreg_logits(params: LogRegParams, x: jax.Array) -> jax.Array:
  """[N, D] -> [N, C] unnormalised log p(y | x)."""
  return _float(x) @ params.weight + params.bias


def logreg_predict(params: LogRegParams, x: jax.Array) -> jax.Array:
  """Most probable class, [N] int32."""
  return jnp.argmax(logreg_logits(params, x), axis=-1)


def logreg_predict_log_proba(params: LogRegParams, x: jax.Array) -> jax.Array:
  """[N, D] -> [N, C] log p(y | x) = log_softmax(x W + b)."""
  _checks.check_matrix(x, 'x')
  if jnp.shape(x)[1] != params.weight.shape[0]:
    raise ValueError(f'x must have D = {params.weight.shape[0]} features, got shape {jnp.shape(x)}')
  return jax.nn.log_softmax(logreg_logits(params, x), axis=-1)


def logreg_loss(params: LogRegParams, x: jax.Array, y: jax.Array) -> jax.Array:
  """Per-example cross-entropy -log p(y_n | x_n), [N] (no hidden mean)."""
  return optax.losses.softmax_cross_entropy_with_integer_labels(logreg_logits(params, x), y)


def logreg_objective(
  params: LogRegParams, x: jax.Array, y: jax.Array, *, l2, sample_weight: jax.Array | None = None
) -> jax.Array:
  """(Weighted) mean cross-entropy + (l2 / 2) ||W||^2; the bias is not penalised.

  This is scikit-learn's `LogisticRegression(C=...)` objective divided by
  C * N, i.e. `l2 = 1 / (C * N)`.

  Args:
    params: `LogRegParams`.
    x: [N, D] features.
    y: [N] int labels.
    l2: L2 coefficient.
    sample_weight: optional [N] non-negative weights; the loss is
      sum_n w_n CE_n / sum_n w_n. Zero weights let datasets of different sizes
      share one padded shape (one compilation, `vmap` over subsets).

  Returns:
    Scalar objective.
  """
  loss = logreg_loss(params, x, y)
  if sample_weight is None:
    data_term = jnp.mean(loss)
  else:
    data_term = jnp.sum(sample_weight * loss) / jnp.sum(sample_weight)
  return data_term + 0.5 * l2 * jnp.sum(jnp.square(params.weight))


def logreg_train_step(params: LogRegParams, opt_state, x, y, *, optimizer, l2, sample_weight=None):
  """One optimiser step on the regularised objective of a batch.

  Works for first-order optax optimisers and for `optax.lbfgs`, whose line
  search needs the value and the objective itself (ignored by the others).

  Args:
    params: current `LogRegParams`.
    opt_state: `optimizer.init(params)` state.
    x: [B, D] features.
    y: [B] int labels.
    optimizer: an optax `GradientTransformation(ExtraArgs)`.
    l2: L2 coefficient (see `logreg_objective`).
    sample_weight: optional [B] weights (see `logreg_objective`).

  Returns:
    `(params, opt_state, objective_before_step)`.
  """
  value_fn = functools.partial(logreg_objective, x=x, y=y, l2=l2, sample_weight=sample_weight)
  value, grad = jax.value_and_grad(value_fn)(params)
  updates, opt_state = optimizer.update(
    grad, opt_state, params, value=value, grad=grad, value_fn=value_fn
  )
  return optax.apply_updates(params, updates), opt_state, value


@functools.partial(jax.jit, static_argnames=('num_classes', 'solver', 'num_steps'))
def _fit_logreg(x, y, l2, learning_rate, sample_weight, *, num_classes, solver, num_steps):
  x = _float(x)
  # The project's one optimiser factory; L-BFGS without a step size line-searches.
  optimizer = _optimizer.optimizer(solver, learning_rate)
  params = logreg_init(x.shape[1], num_classes, dtype=x.dtype)

  def step(carry, _):
    params, opt_state = carry
    params, opt_state, value = logreg_train_step(
      params, opt_state, x, y, optimizer=optimizer, l2=l2, sample_weight=sample_weight
    )
    return (params, opt_state), value

  (params, _), values = jax.lax.scan(step, (params, optimizer.init(params)), None, length=num_steps)
  return params, values


def fit_logreg(
  x: jax.Array,
  y: jax.Array,
  *,
  num_classes: int,
  l2,
  solver: str = 'lbfgs',
  num_steps: int = 100,
  learning_rate=None,
  sample_weight: jax.Array | None = None,
) -> tuple[LogRegParams, jax.Array]:
  """Fits L2-regularised multinomial logistic regression on the full batch.

  The whole optimisation is one jitted `lax.scan`, so fits can be `vmap`ped
  over datasets of equal shape or over `l2`.

  Args:
    x: [N, D] features (scale them; e.g. pixels / 16).
    y: [N] int labels in [0, num_classes).
    num_classes: C.
    l2: L2 coefficient on the mean loss (`1 / (C_sklearn * N)`).
    solver: 'lbfgs' (default; learning_rate None uses the line search), 'adam'
      or 'sgd'.
    num_steps: optimiser steps.
    learning_rate: step size (required for 'adam' and 'sgd').
    sample_weight: optional [N] non-negative weights (see `logreg_objective`).

  Returns:
    `(params, objective)`: `LogRegParams` and [num_steps] objective values.
  """
  _checks.check_matrix(x, 'x')
  _checks.check_positive_int(num_classes, 'num_classes')
  _checks.check_labels(y, x, name='y', rows_name='x', num_classes=num_classes)
  if solver not in ('lbfgs', 'adam', 'sgd'):
    raise ValueError(f"solver must be 'lbfgs', 'adam' or 'sgd', got {solver!r}")
  _checks.check_positive_int(num_steps, 'num_steps')
  if _concrete(l2) and not np.all(np.asarray(l2) >= 0):
    raise ValueError(f'l2 must be >= 0, got {l2!r}')
  if learning_rate is None and solver != 'lbfgs':
    raise ValueError(f'learning_rate is required for solver={solver!r}')
  if learning_rate is not None:
    _checks.check_positive(learning_rate, 'learning_rate')
  if sample_weight is not None:
    if jnp.shape(sample_weight) != jnp.shape(y):
      raise ValueError(
        f'sample_weight must be [N] = {jnp.shape(y)}, got shape {jnp.shape(sample_weight)}'
      )
    if _concrete(sample_weight) and (
      np.any(np.asarray(sample_weight) < 0) or not np.any(np.asarray(sample_weight) > 0)
    ):
      raise ValueError('sample_weight must be >= 0 with a positive sum')
    sample_weight = _float(sample_weight)
  return _fit_logreg(
    x,
    y,
    l2,
    learning_rate,
    sample_weight,
    num_classes=num_classes,
    solver=solver,
    num_steps=num_steps,
  )
