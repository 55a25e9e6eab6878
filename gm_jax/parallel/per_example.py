"""Per-example randomness: what makes a step give the same numbers on 1 or N devices.

A family's `loss(params, batch, key, train=True)` draws its noise (dropout masks,
reparameterisation noise, dequantisation noise) with shapes that include the batch
axis. On one device that batch is the global batch; under `pmap` each device sees
only its shard, so the same key would give different draws for the same example.
`mean_over_groups` removes the dependence: the global batch is cut into groups of
`group_size` consecutive examples (1 by default), and group `j` is one call of the
loss with the key `fold_in(key, j)`, so its draws depend only on the step key and
`j`, never on which device holds it or how the batch is split. The mean of the
group losses is the batch loss (the Family contract asks for a mean over the batch),
and `jax.vmap` turns the per-group calls back into batched matmuls and convolutions.

Two things break the equivalence, and `gm_jax.train.loop` documents both:
* a loss that couples the examples of its batch (a KL floor averaged over the batch,
  batch statistics) is computed within each group: set `group_size` to the
  per-device batch to get the usual data-parallel semantics for such terms;
* keys of the `rbg`/`unsafe_rbg` implementations: `lax.rng_bit_generator`'s batching
  rule draws a vmapped batch from the first key only, so under `vmap` their draws
  are not per group (threefry keys, JAX's default, are).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

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


def per_example_keys(key, num: int, offset=0):
  """`[num]` keys, key `i` = `fold_in(key, offset + i)`: the draw of global example
  `offset + i` (or group) depends on neither the device that holds it nor the batch
  split. Every family's per-example noise comes from these (the loss groups here, the
  GAN's latents, CycleGAN's image pool)."""
  return jax.vmap(lambda i: jax.random.fold_in(key, i))(offset + jnp.arange(num))


def mean_over_groups(
  loss_fn: Callable,
  params,
  batch: Mapping[str, Any],
  key,
  *,
  group_size: int = 1,
  offset=0,
  train: bool = True,
):
  """Mean of `loss_fn` over groups of `group_size` examples, each with its own key.

  Args:
    loss_fn: a `Family.loss`: `(params, batch, key, *, train) -> (loss, metrics)`,
      where `loss` and every metric are means over the batch.
    params: model parameters.
    batch: dict of arrays `[B, ...]` (this device's shard of the global batch);
      `B` must be a multiple of `group_size`.
    key: the step's PRNG key, identical on every device.
    group_size: examples per call of `loss_fn`.
    offset: global index of `batch`'s first example (`shard_offset`), a multiple of
      `group_size`.
    train: passed to `loss_fn`.

  Returns:
    `(loss, metrics)`, the means over the `B / group_size` groups, where the group
    of global examples `[j * group_size, (j + 1) * group_size)` was evaluated with
    the key `fold_in(key, j)`.
  """
  n = batch_size_of(batch)
  if n % group_size:
    raise ValueError(f'a batch of {n} examples does not split into groups of {group_size}')
  num_groups = n // group_size
  first = offset // group_size
  keys = per_example_keys(key, num_groups, first)
  groups = jax.tree.map(lambda a: a.reshape((num_groups, group_size) + a.shape[1:]), dict(batch))

  def one(group, group_key):
    return loss_fn(params, group, group_key, train=train)

  losses, metrics = jax.vmap(one)(groups, keys)
  return jnp.mean(losses), jax.tree.map(jnp.mean, metrics)
