"""Evaluation batches split over every device of every process.

    ev = parallel.ShardedEval(lambda params, batch, key: metrics)   # batch means
    params = ev.replicate(host_params)
    metrics = ev(params, batch, key)          # the same global batch on every process

Each process puts only its own contiguous rows of the batch on its own devices (process
`p` of `P`: rows `[p n / P, (p + 1) n / P)`, the layout of the training batches), and one
`jit` over the data mesh computes the batch means across all devices: evaluation is
data-parallel instead of every host evaluating every batch on one device. The batches
and keys are the caller's, so the metrics equal the one-device ones up to float
summation order. A batch whose size does not split evenly over the devices (the last,
smaller one) runs replicated.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec as P

from gm_jax.parallel.modes import data_mesh
from gm_jax.parallel.per_example import batch_size_of
from gm_jax.parallel.per_example import DATA_AXIS

PyTree = Any


class ShardedEval:
  """`fn(params, batch, key) -> metrics` on a batch sharded over `mesh` (all devices)."""

  def __init__(self, fn: Callable[..., PyTree], mesh=None):
    self.mesh = mesh if mesh is not None else data_mesh()
    self._replicated = NamedSharding(self.mesh, P())
    rows = NamedSharding(self.mesh, P(DATA_AXIS))
    self._rows = rows

    def call(params, batch, key_data, *, impl):
      return fn(params, batch, jax.random.wrap_key_data(key_data, impl=impl))

    self._call = call
    self._compiled: dict = {}

  def replicate(self, tree: PyTree) -> PyTree:
    """Host or single-device pytree -> one copy on every device (each process its own)."""
    return jax.tree.map(
        lambda x: jax.make_array_from_callback(
            np.shape(x), self._replicated, lambda idx, x=np.asarray(x): x[idx]),
        tree)

  def _jit(self, sharded: bool, impl):
    if (sharded, impl) not in self._compiled:
      batch_sharding = self._rows if sharded else self._replicated
      self._compiled[sharded, impl] = jax.jit(
          lambda p, b, k: self._call(p, b, k, impl=impl),
          in_shardings=(self._replicated, batch_sharding, self._replicated),
          out_shardings=self._replicated)
    return self._compiled[sharded, impl]

  def __call__(self, params: PyTree, batch: dict, key) -> PyTree:
    """Metrics of the global `batch` (same on every process), replicated on every device.

    Args:
      params: from `replicate`.
      batch: the whole global batch, `{name: [n, ...]}` host arrays.
      key: a typed PRNG key (host or single device).
    """
    impl = str(jax.random.key_impl(key))
    key_data = self.replicate(np.asarray(jax.random.key_data(key)))
    n = batch_size_of(batch)
    if n % self.mesh.size:
      return self._jit(False, impl)(params, self.replicate(dict(batch)), key_data)
    p, count = jax.process_index(), jax.process_count()
    local = {k: jax.make_array_from_process_local_data(
        self._rows, np.asarray(v)[p * n // count:(p + 1) * n // count])
             for k, v in batch.items()}
    return self._jit(True, impl)(params, local, key_data)


def host_copy(tree: PyTree) -> PyTree:
  """NumPy copy of a replicated (possibly multi-process) pytree: this process's copy."""
  return jax.tree.map(lambda x: np.asarray(x.addressable_data(0)), tree)
