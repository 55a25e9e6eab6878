"""MADE: masked autoencoders for distribution estimation (Germain et al. 2015).

A MADE maps `x: [..., D]` to `P` outputs per input dimension, `[..., D, P]`, such that
the outputs of dimension `i` depend only on the inputs that come before `i` in a given
order: its Jacobian is strictly triangular in that order. The building block of MAF,
IAF and autoregressive neural spline flows (`gm_jax.nn.autoregressive_flows`,
`gm_jax.nn.iaf`).

Degrees (Germain et al. 2015, section 4): input `i` has degree `order[i]` in `1..D`;
hidden units get degrees in `1..D-1` (`0..D-1` with a context, see below), here
assigned cyclically (`1 + k mod (D - 1)`: deterministic, so every degree is present
once a layer has `>= D - 1` units and nothing is drawn at random); a weight from a
unit of degree `m` to a hidden unit of degree `m'` exists iff `m' >= m`, and to an
output of dimension `i` iff `order[i] > m` (eqs. 12-13). An optional context `h`
(IAF's encoder output) enters the first hidden layer unmasked, and the hidden degrees
then start at 0 (units that see only the context), so it affects every output, the
first dimension's included.

`made_degrees` and `made_masks` are pure NumPy; `MaskedDense` and `MADE` are Flax
modules acting on the last axis, so they run per example or batched alike.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
import itertools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from gm_jax.nn import layers as nn_layers

Array = jnp.ndarray


def _check_order(order: Sequence[int], num_inputs: int) -> np.ndarray:
  degrees = np.asarray(order, np.int64)
  if degrees.shape != (num_inputs,) or sorted(degrees.tolist()) != list(range(1, num_inputs + 1)):
    raise ValueError(
      f'order must be a permutation of 1..{num_inputs} (one degree per input); '
      f'got {degrees.tolist()}.'
    )
  return degrees


def made_degrees(
  num_inputs: int,
  hidden_sizes: Sequence[int],
  *,
  order: Sequence[int] | None = None,
  min_hidden_degree: int = 1,
) -> list[np.ndarray]:
  """Degrees of the input units and of every hidden layer.

  Args:
    num_inputs: `D >= 1`.
    hidden_sizes: units per hidden layer.
    order: degree of each input, a permutation of `1..D` (default: `1..D`, the
      natural order).
    min_hidden_degree: 1, or 0 for a conditional MADE: hidden units of degree 0 see
      no input, only the context, and feed every output (else the first dimension's
      outputs could not depend on the context).

  Returns:
    `[order [D], degrees of hidden layer 0 [H0], ...]`, int arrays.
  """
  if not isinstance(num_inputs, (int, np.integer)) or num_inputs < 1:
    raise ValueError(f'num_inputs must be a positive integer; got {num_inputs!r}.')
  if any(not isinstance(h, (int, np.integer)) or h < 1 for h in hidden_sizes):
    raise ValueError(f'hidden_sizes must be positive integers; got {tuple(hidden_sizes)}.')
  in_degrees = np.arange(1, num_inputs + 1) if order is None else _check_order(order, num_inputs)
  if min_hidden_degree not in (0, 1):
    raise ValueError(f'min_hidden_degree must be 0 or 1; got {min_hidden_degree!r}.')
  period = max(num_inputs - min_hidden_degree, 1)
  return [in_degrees] + [min_hidden_degree + np.arange(h) % period for h in hidden_sizes]


def made_masks(degrees: Sequence[np.ndarray], num_params: int) -> list[np.ndarray]:
  """Masks `[fan_in, fan_out]` (float32 0/1) of the MADE with these `made_degrees`.

  The output layer has `D * num_params` units laid out as `[D, num_params]` (unit
  `i * num_params + p` is parameter `p` of dimension `i`).
  """
  order = degrees[0]
  masks = [
    (later[None, :] >= earlier[:, None]).astype(np.float32)
    for earlier, later in itertools.pairwise(degrees)
  ]
  out_degrees = np.repeat(order, num_params)
  masks.append((out_degrees[None, :] > degrees[-1][:, None]).astype(np.float32))
  return masks


class MaskedDense(nn.Module):
  """`y = x @ (kernel * mask) + bias` on the last axis; `mask: [fan_in, features]`."""

  features: int
  mask: Any  # np.ndarray [fan_in, features]
  kernel_init: Callable = nn.initializers.lecun_normal()

  @nn.compact
  def __call__(self, x: Array) -> Array:
    mask = np.asarray(self.mask)
    if mask.shape != (x.shape[-1], self.features):
      raise ValueError(
        f'MaskedDense mask must have shape {(x.shape[-1], self.features)} '
        f'([fan_in, features]); got {mask.shape}.'
      )
    kernel = self.param('kernel', self.kernel_init, mask.shape, x.dtype)
    bias = self.param('bias', nn.initializers.zeros, (self.features,), x.dtype)
    return x @ (kernel * jnp.asarray(mask, x.dtype)) + bias


class MADE(nn.Module):
  """Germain et al. 2015: `x: [..., D] -> [..., D, num_params]`, autoregressive in `order`.

  Attributes:
    hidden_sizes: units per hidden layer (ReLU); `>= D - 1` units a layer (`>= D` with
      a context) connect every earlier input to every later output.
    num_params: outputs per input dimension (2 for an affine MAF step, `3K - 1` for a
      `K`-bin spline).
    order: input degrees, a permutation of `1..D` (default: natural order).
    zero_init_output: start the output layer at zero (a flow step then starts as the
      map its layer gives zero parameters).
    dropout_rate: dropout after every hidden layer when `train` (needs a 'dropout' rng).
  """

  hidden_sizes: Sequence[int] = (256, 256)
  num_params: int = 2
  order: Sequence[int] | None = None
  zero_init_output: bool = True
  dropout_rate: float = 0.0

  @nn.compact
  def __call__(self, x: Array, context: Array | None = None, *, train: bool = False) -> Array:
    """`x: [..., D]`, `context: [..., C]` or None. Returns `[..., D, num_params]`."""
    num_inputs = x.shape[-1]
    degrees = made_degrees(
      num_inputs,
      tuple(self.hidden_sizes),
      order=self.order,
      min_hidden_degree=0 if context is not None else 1,
    )
    masks = made_masks(degrees, self.num_params)
    h = x
    for i, (size, mask) in enumerate(zip(self.hidden_sizes, masks[:-1])):
      h = MaskedDense(size, mask, name=f'masked{i}')(h)
      if i == 0 and context is not None:
        h = h + nn.Dense(size, use_bias=False, name='context')(context)
      h = nn.relu(h)
      if self.dropout_rate:
        h = nn_layers.Dropout(self.dropout_rate, deterministic=not train)(h)
    init = nn.initializers.zeros if self.zero_init_output else nn.initializers.lecun_normal()
    out = MaskedDense(num_inputs * self.num_params, masks[-1], kernel_init=init, name='output')(h)
    return out.reshape(out.shape[:-1] + (num_inputs, self.num_params))


def invert_autoregressive(made: MADE, y: Array, invert: Callable, context=None):
  """Solves `y = step(x; made(x))` for `x` in `D` MADE passes.

  `step` is elementwise given the MADE's outputs, and `invert(y, params) -> x` is its
  inverse for given parameters `[..., D, P]`. Iterating `x <- invert(y, made(x))`
  from `x = 0`, pass `k` makes the first `k` dimensions in the MADE's order exact, so
  `D` passes give the exact inverse (one compiled MADE in a `lax.fori_loop`). Call it
  inside the parent's `nn.compact` method with the parent's `made` submodule: the first
  pass creates the MADE's parameters when the parent is initialised through its
  inverse.

  Returns:
    `(x, made(x))`: the solution `[..., D]` and the MADE's outputs at it.
  """
  x = invert(y, made(jnp.zeros_like(y), context))
  variables = {'params': made.variables['params']}
  pure = made.clone(parent=None)
  body = lambda _, x: invert(y, pure.apply(variables, x, context))
  x = jax.lax.fori_loop(0, y.shape[-1] - 1, body, x)
  return x, pure.apply(variables, x, context)


__all__ = ('MADE', 'MaskedDense', 'invert_autoregressive', 'made_degrees', 'made_masks')
