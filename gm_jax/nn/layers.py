"""Small building blocks shared by several families."""

from __future__ import annotations

from typing import Callable, Sequence

import flax.linen as nn
import jax.numpy as jnp


class MLP(nn.Module):
  """Dense -> activation (-> dropout) stack, with an optional linear output layer.

  Attributes:
    features: hidden widths.
    out_features: width of a final linear layer (0 = none).
    dropout_rate: dropout after every hidden activation (only when `train`).
    activation: nonlinearity.
  """

  features: Sequence[int]
  out_features: int = 0
  dropout_rate: float = 0.0
  activation: Callable = nn.gelu

  @nn.compact
  def __call__(self, x: jnp.ndarray, *, train: bool = False) -> jnp.ndarray:
    """x: `[B, D]` -> `[B, out_features or features[-1]]`."""
    for width in self.features:
      x = self.activation(nn.Dense(width)(x))
      if self.dropout_rate > 0:
        x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
    if self.out_features:
      x = nn.Dense(self.out_features)(x)
    return x


def images_to_unit(x: jnp.ndarray, num_levels: int) -> jnp.ndarray:
  """Integer images on `[0, num_levels)` -> float32 in [-1, 1] (network input scale)."""
  return x.astype(jnp.float32) * (2.0 / (num_levels - 1)) - 1.0
