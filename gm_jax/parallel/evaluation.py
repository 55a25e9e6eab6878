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

    out = parallel.map_examples(fn, params, test_split, key, batch_size=256,
                                mesh=parallel.eval_mesh(config.parallel))

`map_examples` is the test-split counterpart: a per-example function over a whole split,
batch by batch, each batch split over the mesh's devices in the same way, and the
per-example outputs gathered back to NumPy on every process.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
import functools
from typing import Any

from absl import logging
import jax
from jax.experimental import multihost_utils
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P
import numpy as np

from gm_jax.parallel.modes import data_mesh
from gm_jax.parallel.modes import host_to_global
from gm_jax.parallel.modes import MODES
from gm_jax.parallel.per_example import batch_size_of
from gm_jax.parallel.per_example import DATA_AXIS

PyTree = Any


class ShardedEval:
  """`fn(params, batch, key) -> metrics` on a batch sharded over `mesh` (all devices)."""

  def __init__(self, fn: Callable[..., PyTree], mesh=None):
    self.mesh = mesh if mesh is not None else data_mesh()
    self._replicated, self._rows = _shardings(self.mesh, True)

    def call(params, batch, key_data, *, impl):
      return fn(params, batch, jax.random.wrap_key_data(key_data, impl=impl))

    self._call = call
    self._compiled: dict = {}

  def replicate(self, tree: PyTree) -> PyTree:
    """Host or single-device pytree -> one copy on every device (each process its own)."""
    return _replicate(tree, self._replicated)

  def _jit(self, sharded: bool, impl):
    if (sharded, impl) not in self._compiled:
      batch_sharding = self._rows if sharded else self._replicated
      self._compiled[sharded, impl] = jax.jit(
        lambda p, b, k: self._call(p, b, k, impl=impl),
        in_shardings=(self._replicated, batch_sharding, self._replicated),
        out_shardings=self._replicated,
      )
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
    return self._jit(True, impl)(params, _put_rows(batch, self._rows), key_data)


def _replicate(tree: PyTree, sharding: NamedSharding) -> PyTree:
  return jax.tree.map(lambda x: host_to_global(x, sharding), tree)


def _put_rows(batch: Mapping[str, np.ndarray], sharding: NamedSharding) -> dict:
  """The global `batch` (same on every process) as arrays sharded by rows: each process
  puts only its own contiguous rows."""
  n, p, count = batch_size_of(batch), jax.process_index(), jax.process_count()
  return {
    k: jax.make_array_from_process_local_data(
      sharding, np.asarray(v)[p * n // count : (p + 1) * n // count]
    )
    for k, v in batch.items()
  }


def host_copy(tree: PyTree) -> PyTree:
  """NumPy copy of a replicated (possibly multi-process) pytree: this process's copy."""
  return jax.tree.map(lambda x: np.asarray(x.addressable_data(0)), tree)


def eval_mesh(mode: str):
  """The mesh `map_examples` splits test batches over under `config.parallel = mode`:
  every device of every process for `'pmap'` and `'sharding'`, `None` (the default
  device, as training) for `'none'`."""
  if mode not in MODES:
    raise ValueError(f'config.parallel must be one of {MODES}; got {mode!r}')
  return None if mode == 'none' else data_mesh()


def map_examples(
  fn: Callable[..., PyTree],
  params: PyTree,
  split: Mapping[str, Any],
  key,
  *,
  batch_size: int,
  mesh=None,
) -> PyTree:
  """`fn` over every example of `split`, batch by batch; NumPy outputs `[N, ...]`.

  Batch `i` holds rows `[i b, (i + 1) b)` of `split` (`b = batch_size`), the last one
  padded with zero rows to `b` (one compiled shape; the padded rows' outputs are
  dropped), and gets the key `fold_in(key, i)`. So the outputs depend only on `split`,
  `key` and `b`, not on `mesh`: with a mesh, each batch is split over its devices (each
  process puts its own contiguous rows, as `ShardedEval`) and the per-example outputs
  are gathered to every process. A `b` that does not split evenly over the devices runs
  every batch replicated (same numbers, no speed-up; a warning says so).

  Args:
    fn: `(params, batch, key) -> pytree` of arrays whose axis 0 is the batch `[b, ...]`;
      `batch` is `{name: [b, ...]}` with the fields of `split`.
    params: host or device pytree (copied to every device of `mesh`).
    split: `{name: [N, ...]}` host arrays, the same on every process; pass only the
      fields `fn` reads.
    key: a typed PRNG key, or `None` when `fn` draws nothing (it then gets `None`).
    batch_size: `b >= 1`.
    mesh: from `eval_mesh`; `None` runs on the default device.
  Returns:
    `fn`'s pytree with axis 0 of every leaf concatenated over the split, `[N, ...]`.
  """
  batch_size = int(batch_size)
  if batch_size < 1:
    raise ValueError(f'batch_size must be >= 1; got {batch_size}')
  n = batch_size_of(split)
  impl = None if key is None else str(jax.random.key_impl(key))
  if key is None:  # `fn` draws nothing: it gets `None`
    key = jax.random.key(0)
  sharded = mesh is not None and batch_size % mesh.size == 0
  run = _compiled(fn, mesh, sharded, impl)
  index: Callable[[int], Any]  # the batch number as `fn`'s last argument
  if mesh is None:
    put, to_host = (lambda batch: batch), jax.device_get
    params = jax.device_put(params)
    key_data, index = jax.random.key_data(key), np.int32
  else:
    if not sharded:
      logging.warning(
        'map_examples: batch_size %d does not split over %d devices: every '
        'batch runs replicated (use a multiple of %d)',
        batch_size,
        mesh.size,
        mesh.size,
      )
    replicated, rows = _shardings(mesh, sharded)
    params = _replicate(params, replicated)
    key_data = _replicate(np.asarray(jax.random.key_data(key)), replicated)
    index = lambda i: _replicate(np.int32(i), replicated)
    put = lambda batch: _put_rows(batch, rows) if sharded else _replicate(batch, replicated)

    def to_host(tree):
      if not sharded:
        return host_copy(tree)
      if all(x.is_fully_addressable for x in jax.tree.leaves(tree)):
        return jax.device_get(tree)
      return multihost_utils.process_allgather(tree, tiled=True)

  parts = []
  for i, start in enumerate(range(0, n, batch_size)):
    batch = {k: np.asarray(v[start : start + batch_size]) for k, v in split.items()}
    m = batch_size_of(batch)
    if m < batch_size:
      batch = {
        k: np.concatenate([v, np.zeros((batch_size - m,) + v.shape[1:], v.dtype)])
        for k, v in batch.items()
      }
    out = to_host(run(params, put(batch), key_data, index(i)))
    parts.append(jax.tree.map(lambda x, m=m: np.asarray(x)[:m], out))
  return jax.tree.map(lambda *xs: np.concatenate(xs), *parts)


def _shardings(mesh, sharded: bool) -> tuple[NamedSharding, NamedSharding]:
  """`(replicated, batch)` shardings over `mesh`: batch rows split over `'data'`, or
  replicated too where the batch does not split."""
  replicated = NamedSharding(mesh, P())
  return replicated, (NamedSharding(mesh, P(DATA_AXIS)) if sharded else replicated)


# One compilation per function and placement, also when a caller maps the same `fn`
# several times (once per dequantisation draw); the few most recent are kept.
@functools.lru_cache(maxsize=16)
def _compiled(fn: Callable, mesh, sharded: bool, impl: str | None) -> Callable:
  """`jit` of `(params, batch, key_data, i) -> fn(params, batch, fold_in(key, i))`."""
  if impl is None:
    call = lambda p, batch, key_data, i: fn(p, batch, None)
  else:

    def call(p, batch, key_data, i):
      key = jax.random.wrap_key_data(key_data, impl=impl)
      return fn(p, batch, jax.random.fold_in(key, i))

  if mesh is None:
    run = jax.jit(call)
  else:
    replicated, rows = _shardings(mesh, sharded)
    run = jax.jit(call, in_shardings=(replicated, rows, replicated, replicated), out_shardings=rows)
  return run
