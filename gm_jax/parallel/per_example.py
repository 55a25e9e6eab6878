"""Per-example randomness: what makes a step give the same numbers on 1 or N devices.

A family's `loss(params, batch, key, train=True)` draws its noise (dropout masks,
reparameterisation noise, dequantisation noise) with shapes that include the batch
axis. On one device that batch is the global batch; under `pmap` each device sees
only its shard, so the same key would give different draws for the same example.
`per_example_mean` removes the dependence: example `i` of the global batch is run
as a batch of one with the key `fold_in(key, i)`, so its draws depend only on the
step key and `i`, never on which device holds it or how the batch is split. The
batch mean of these per-example losses is the family's loss (the contract asks for
a mean over the batch of a per-example objective), and `jax.vmap` turns the
batch-of-one calls back into the same batched matmuls and convolutions.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

import jax
import jax.numpy as jnp

DATA_AXIS = 'data'


def batch_size_of(batch: Mapping[str, Any]) -> int:
  """Common leading dimension of the arrays of `batch`."""
  sizes = {k: v.shape[0] for k, v in batch.items()}
  if len(set(sizes.values())) != 1:
    raise ValueError(f'batch arrays have different leading sizes: {sizes}')
  return next(iter(sizes.values()))


def shard_offset(batch_size: int, axis_name=None):
  """Global index of this device's first example: `axis_index * batch_size` under pmap.

  Assumes the shards are contiguous, equal slices of the global batch laid out in
  device order along `axis_name` (what `gm_jax.parallel` arranges); 0 with no axis.
  """
  if axis_name is None:
    return 0
  return jax.lax.axis_index(axis_name) * batch_size


def per_example_mean(loss_fn: Callable, params, batch: Mapping[str, Any], key, *,
                     offset=0, train: bool = True):
  """Mean of `loss_fn` over the examples of `batch`, each with its own key.

  Args:
    loss_fn: a `Family.loss`: `(params, batch, key, *, train) -> (loss, metrics)`,
      where `loss` and every metric are means over the batch.
    params: model parameters.
    batch: dict of arrays `[B, ...]` (this device's shard of the global batch).
    key: the step's PRNG key, identical on every device.
    offset: global index of `batch`'s first example (`shard_offset`).
    train: passed to `loss_fn`.

  Returns:
    `(loss, metrics)`: the means over the `B` examples, where example `b` was
    evaluated alone with the key `fold_in(key, offset + b)`.
  """
  n = batch_size_of(batch)
  keys = jax.vmap(lambda i: jax.random.fold_in(key, i))(offset + jnp.arange(n))

  def one(example, example_key):
    single = jax.tree.map(lambda a: a[None], example)
    return loss_fn(params, single, example_key, train=train)

  losses, metrics = jax.vmap(one)(dict(batch), keys)
  return jnp.mean(losses), jax.tree.map(jnp.mean, metrics)
