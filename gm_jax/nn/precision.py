"""The compute-dtype policy: activations and matmuls/convs in bfloat16, parameters in float32.

    with precision.compute_dtype('bfloat16'):
      loss, metrics = family.loss(params, batch, key, train=True)

Inside the context every Flax layer that has a `dtype` field left at `None` (Dense,
Conv, ConvTranspose, Embed, the norm layers, and any of ours that declare one) runs
in the compute dtype: Flax's `promote_dtype(inputs, kernel, dtype=...)` casts the
float32 kernel and the inputs to bfloat16 for the matmul, so parameters, their
gradients and the optimiser state stay float32 (the mixed-precision recipe of
Micikevicius et al. 2018; Haiku's `mixed_precision.set_policy` and MaxText's
`dtype`/`weight_dtype` apply it per layer class in the same way). Layers that set
`dtype` explicitly keep it. Flax's norm layers compute their statistics in float32
whatever the dtype. Log-likelihoods, logsumexps, KL terms and loss reductions are
float32 because every `gm_jax.losses` function widens its inputs
(`losses._shapes.float32_reductions`).

The policy applies while a function is traced, so it must be active inside the
jitted function (the trainer's step enters it); evaluation runs outside it, in
float32.
"""

from __future__ import annotations

import contextlib

import flax.linen as nn
import jax.numpy as jnp

COMPUTE_DTYPES = {'float32': jnp.float32, 'bfloat16': jnp.bfloat16}


def resolve(name: str):
  """`'float32'` | `'bfloat16'` -> the dtype; a ValueError names `config.compute_dtype`."""
  if name not in COMPUTE_DTYPES:
    raise ValueError(f'config.compute_dtype must be one of {tuple(COMPUTE_DTYPES)}, got {name!r}')
  return COMPUTE_DTYPES[name]


def in_dtype(dtype, *arrays):
  """`arrays` cast to a layer's compute `dtype` (unchanged where it is None): what a
  layer of ours with a `dtype` field does with its inputs and parameters, as Flax's
  `promote_dtype(..., dtype=)` does for its own layers."""
  if dtype is None:
    return arrays
  return tuple(jnp.asarray(a, dtype) for a in arrays)


def _has_open_dtype(module) -> bool:
  fields = getattr(type(module), '__dataclass_fields__', {})
  return 'dtype' in fields and getattr(module, 'dtype', None) is None


@contextlib.contextmanager
def compute_dtype(name: str):
  """Runs the Flax layers called inside in `name` (see the module docstring)."""
  dtype = resolve(name)
  if dtype == jnp.float32:
    yield
    return

  def interceptor(next_fun, args, kwargs, context):
    module = context.module
    if not _has_open_dtype(module):
      return next_fun(*args, **kwargs)
    # Flax modules are frozen dataclasses; the dtype is set for this call only.
    object.__setattr__(module, 'dtype', dtype)
    try:
      return next_fun(*args, **kwargs)
    finally:
      object.__setattr__(module, 'dtype', None)

  with nn.intercept_methods(interceptor):
    yield


__all__ = ('COMPUTE_DTYPES', 'compute_dtype', 'resolve')
