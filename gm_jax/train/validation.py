"""What the loop reads back from training: the NaN guard, the logged means, and the
validation metric of the family's `train=False` loss (data-parallel under pmap/sharding).
"""

from __future__ import annotations

import jax
import numpy as np

from gm_jax import data as gm_data
from gm_jax import parallel
from gm_jax.train.family import Family
from gm_jax.train.run_setup import RunSetup


class NonFiniteLossError(FloatingPointError):
  """Training produced a NaN or infinite loss."""


def check_finite(s: RunSetup, pending: list, checkpointer) -> None:
  """Raises `NonFiniteLossError` naming the first step whose loss was not finite."""
  for first, metrics in pending:
    losses = np.asarray(jax.device_get(metrics['loss']))
    bad = np.flatnonzero(~np.isfinite(losses))
    if bad.size:
      checkpointer.wait()
      step = first + int(bad[0]) + 1
      raise NonFiniteLossError(
        f'{s.config.model}: non-finite loss ({losses[bad[0]]}) at step {step}; training '
        f'stopped. The last good checkpoint ({checkpointer.latest_step()}) in '
        f'{s.workdir}/checkpoints is kept; lower config.learning_rate or set '
        f'config.grad_clip_norm.'
      )


def summarise(pending: list) -> dict:
  """Mean of every metric over the steps of `pending` (one host read per chunk)."""
  host = jax.device_get([m for _, m in pending])
  keys = host[0].keys()
  return {k: float(np.mean(np.concatenate([np.ravel(m[k]) for m in host]))) for k in keys}


def validate(s: RunSetup, params) -> dict:
  """Example-weighted mean of the family's `train=False` metrics over the validation split.

  `params`: one copy (`dp.get_state`). Batches of `eval_batch_size` in order, batch `i`
  with the key `fold_in(eval_key, i)`. Under `pmap` and `sharding` each batch is split
  over all devices of all processes (`parallel.ShardedEval`: each process puts its own
  rows), so validation is data-parallel like training; the metrics equal one device's
  up to float summation order.
  """
  family, config = s.family, s.config
  if config.parallel == 'none':
    step = eval_step(family)
  else:
    sharded = sharded_eval(family)
    replicated = sharded.replicate(params)
    step = lambda p, b, k: sharded(replicated, b, k)
  batch_size = int(config.eval_batch_size)
  totals, count = [], 0
  for i, batch in enumerate(gm_data.iterate_batches(s.splits.validation, batch_size)):
    n = len(next(iter(batch.values())))
    _, metrics = step(params, batch, jax.random.fold_in(s.eval_key, i))
    totals.append((n, metrics))  # stays on the device until the sum below
    count += n
  # This process's copy (the sharded metrics are replicated over every process).
  host = [(n, jax.tree.map(lambda x: np.asarray(x.addressable_data(0)), m)) for n, m in totals]
  return {k: sum(n * float(m[k]) for n, m in host) / count for k in host[0][1]}


_EVAL_STEPS: dict = {}


def eval_step(family: Family):
  if family.loss not in _EVAL_STEPS:
    _EVAL_STEPS.clear()  # one family at a time: do not keep old compilations alive
    _EVAL_STEPS[family.loss] = jax.jit(lambda p, b, k: family.loss(p, b, k, train=False))
  return _EVAL_STEPS[family.loss]


_SHARDED_EVALS: dict = {}


def sharded_eval(family: Family) -> parallel.ShardedEval:
  key = (family.loss, jax.device_count())
  if key not in _SHARDED_EVALS:
    _SHARDED_EVALS.clear()
    _SHARDED_EVALS[key] = parallel.ShardedEval(lambda p, b, k: family.loss(p, b, k, train=False))
  return _SHARDED_EVALS[key]
