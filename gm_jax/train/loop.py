"""The generic training loop shared by every family.

`run(config, workdir, family, splits)` trains `family` on `splits.train`, keeps the
parameters that are best on `splits.validation`, checkpoints with orbax, resumes
exactly, stops on NaN, and writes `eval.json`, `metrics.jsonl`, `samples.png` and
TensorBoard events into `workdir`. It reads the family only through `Family`'s fields
and names no family or family setting.

Exact resume: the batch for step `s` is `data.batch_at_step(train, s, ...)` and the
step's PRNG key is `fold_in(key(seed), s)` (computed inside the jitted step), so a run
restored from the checkpoint at step `s` executes the same computations as a run
that never stopped and ends with bit-identical parameters.

Streamed training splits (`splits.train_stream`, `config.input_pipeline`; see
`gm_jax.data.stream`): each process reads only its part of the split, `batch_size /
process_count` rows per step, in an order fixed by the seed; a resumed run skips the
batches already trained on (reading, not training on, up to one epoch of its part), so
it too sees the batches of a run that never stopped. Nothing is resident on the device.

The accelerator never waits on the host (STYLE.md habit 12):
- `config.steps_per_loop = K` steps run per dispatch (one `lax.scan`); each step's
  batch is gathered on the device, from the training set resident there when it fits
  (`config.device_data_max_bytes`), at the indices `batch_at_step` gives, else put
  there by the host. The host prepares and puts chunk `c + 1` while the device runs
  chunk `c`, and waits only for chunk `c - 1` (so at most two are in flight).
- Metrics stay on the device until `log_every`, validation or a checkpoint, when the
  losses since the last read are checked: a non-finite loss stops training, naming the
  first bad step, and nothing trained past it is saved (the last good checkpoint stays
  the newest).
- Checkpoints are written by orbax in the background (`checkpoint.Checkpointer`).

EMA (`config.ema_decay` > 0): the state holds `ema_params`, the average of the family's
`ema_part` of the parameters (`Family.ema_keys`: all, or e.g. a GAN's generator), updated
on the device inside every step (`step.make_train_step`) and checkpointed with the rest,
so a resumed run's average is bit-identical too. Validation, the best parameters,
`evaluate`, `sample` and `pictures` then see the parameters with the averaged part in
place (`eval.json`: `ema_decay`, `evaluated_weights` 'ema'); `ema_decay = 0` adds no state
and changes no number.

Data parallelism (`config.parallel`: `none`, `pmap`, `sharding`): the step below is
written once for one device and wrapped by `gm_jax.parallel`. The family's loss is
called on groups of `config.loss_group_size` (default 1) consecutive examples of the
global batch, group `j` of step `s` with the key `fold_in(fold_in(key, s), j)`
(`parallel.mean_over_groups`), and the step's loss is the mean over groups. So the
three modes, any device count and any number of processes compute the same losses
and parameters (up to float summation order). A family whose loss couples the
examples of a batch (e.g. a floor on a batch-averaged term) sees batches of
`loss_group_size` examples: set it to the per-device batch for the usual
data-parallel semantics. Checkpoints hold one unreplicated copy of the state, so a
run can resume under another mode or device count. Under `pmap` and `sharding`,
validation is data-parallel too: each validation batch is split over every device of
every process (`parallel.ShardedEval`), not evaluated whole on one device per host; the
families' test evaluations do the same through `parallel.map_examples`.
"""

from __future__ import annotations

import os
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from tqdm import tqdm

from gm_jax import data as gm_data
from gm_jax import parallel
from gm_jax.train import checkpoint as ckpt_lib
from gm_jax.train import defaults
from gm_jax.train import metrics as metrics_lib
from gm_jax.train import optim
from gm_jax.train import resume
from gm_jax.train import run_config
from gm_jax.train import validation
from gm_jax.train import workdir as workdir_lib
from gm_jax.train.family import Family
from gm_jax.train.input_pipeline import Feeder as _Feeder
from gm_jax.train.run_config import REQUIRED_FIELDS  # noqa: F401 (API)
from gm_jax.train.run_config import validate_config
from gm_jax.train.run_setup import RunSetup as _Setup
from gm_jax.train.step import make_multi_step
from gm_jax.train.step import make_train_step  # re-exported: the step the loop wraps
from gm_jax.train.validation import NonFiniteLossError  # noqa: F401 (API: main, tests)


def _nbytes(arrays) -> int:
  return int(sum(np.asarray(v).nbytes for v in arrays.values()))


# ---------------------------------------------------------------------------------------
# The run: set up, restore, train, finish.


def _prepare(config, workdir: str, family: Family, splits) -> tuple[_Setup, dict]:
  """Checks the config and data, builds the parallel step and the initial state."""
  validate_config(config)
  config = defaults.complete(config)
  workdir = os.path.abspath(workdir)
  try:
    os.makedirs(workdir, exist_ok=True)
  except OSError as e:
    raise OSError(f'cannot create workdir {workdir!r}: {e}') from e
  train = splits.train
  stream = splits.train_stream
  num_train = stream.num_examples if stream is not None else len(next(iter(train.values())))
  if num_train < config.batch_size:
    raise ValueError(
      f'config.batch_size={config.batch_size} is larger than the training '
      f'split of {config.dataset!r} ({num_train} examples)'
    )
  seed = int(config.seed)
  init_key, train_key, eval_key, sample_key = jax.random.split(jax.random.key(seed), 4)
  tx = None  # a family with its own update rule builds its own optimisers (or none)
  if family.train_update is None:
    tx = family.optimizer if family.optimizer is not None else optim.make_optimizer(config)
  group = int(config.loss_group_size)
  k = int(config.steps_per_loop)
  step_fn = make_train_step(
    family,
    tx,
    train_key,
    group_size=group,
    matmul_precision=config.matmul_precision,
    compute_dtype=config.compute_dtype,
    ema_decay=float(config.ema_decay),
  )
  resident = stream is None and _nbytes(train) <= int(config.device_data_max_bytes)
  view_devices = 1 if config.parallel in ('none', 'pmap') else jax.device_count()
  dp = parallel.make(
    config.parallel, make_multi_step(step_fn, steps=k, view_devices=view_devices, resident=resident)
  )
  dp.check_batch_size(config.batch_size)
  if (config.batch_size // dp.num_devices) % group:
    raise ValueError(
      f'config.loss_group_size={group} must divide the per-device batch '
      f'(config.batch_size={config.batch_size} over {dp.num_devices} device(s) = '
      f'{config.batch_size // dp.num_devices})'
    )
  # Streamed: `train` is a sample of the split, the same on every process.
  first_batch = gm_data.batch_at_step(
    train, 0, seed=seed, batch_size=min(config.batch_size, len(next(iter(train.values()))))
  )
  params = family.init(init_key, first_batch)
  state = {
    'step': jnp.asarray(0, jnp.int32),
    'params': params,
    'opt_state': (
      family.train_update.init(params) if family.train_update is not None else _init(tx, params)
    ),
    'best_metric': jnp.asarray(np.inf, jnp.float32),
    'best_step': jnp.asarray(0, jnp.int32),
  }
  state = resume.start_from(family, config, state, params)
  if config.init_from:
    # The step of the source checkpoint, kept in the state so a resumed run reports it.
    state['init_from_step'] = jnp.asarray(-1, jnp.int32)
  has_validation = (
    family.validation_metric is not None and len(next(iter(splits.validation.values()), [])) > 0
  )
  setup = _Setup(
    config=config,
    workdir=workdir,
    family=family,
    splits=splits,
    dp=dp,
    is_primary=parallel.distributed.is_primary(),
    seed=seed,
    steps_per_loop=k,
    resident=resident,
    group_devices=(1 if config.parallel == 'none' else jax.local_device_count()),
    eval_key=eval_key,
    sample_key=sample_key,
    has_validation=has_validation,
  )
  return setup, state


def _init(tx: optax.GradientTransformation | None, params):
  """`tx.init(params)`: a family without its own update rule always has an optimiser."""
  assert tx is not None
  return tx.init(params)


def _train(s: _Setup, state: dict, checkpointer, writer) -> tuple[dict, int, bool, float | None]:
  """Runs steps from `state['step']` to `num_train_steps` (or the time budget).

  Returns `(state, last_step, stopped_early, steps_per_s)` with `state` in the mode's
  device layout.
  """
  config, dp = s.config, s.dp
  num_steps, k = int(config.num_train_steps), s.steps_per_loop
  eval_every = int(config.eval_every or config.checkpoint_every)
  max_seconds = float(config.max_train_seconds)
  val_metric = s.family.validation_metric
  feeder = _Feeder(s)
  step = int(dp.get_state(state['step']))
  bar = tqdm(
    total=num_steps,
    initial=step,
    desc=config.model,
    unit='step',
    disable=not s.is_primary or not config.progress_bar,
    mininterval=2.0,
  )
  t_start = time.perf_counter()
  timed_steps, timed_seconds, t_mark = 0, 0.0, None
  pending: list = []  # (first step, stacked metrics) of chunks not yet read
  in_flight = None  # the previous chunk's metrics: waited for, never read
  stopped_early, warned_zero_grad = False, False
  nxt = feeder.chunk(step, min(k, num_steps - step)) if step < num_steps else None
  while step < num_steps:
    size = min(k, num_steps - step)
    chunk = nxt
    state, metrics = dp.step(state, chunk)
    first, step = step, step + size
    # While the device runs this chunk: prepare the next one, then wait for the last.
    nxt = feeder.chunk(step, min(k, num_steps - step)) if step < num_steps else None
    if in_flight is not None:
      jax.block_until_ready(in_flight)
    in_flight = metrics['loss']
    pending.append((first, metrics))
    now = time.perf_counter()
    if t_mark is not None:  # the first chunk of a process includes compilation
      timed_steps += size
      timed_seconds += now - t_mark
    t_mark = now
    bar.update(size)
    if max_seconds and step < num_steps:
      stopped_early = now - t_start >= max_seconds
      if jax.process_count() > 1:  # every process must stop at the same step
        from jax.experimental import multihost_utils

        stopped_early = bool(multihost_utils.broadcast_one_to_all(np.asarray(stopped_early)))
    last = step == num_steps or stopped_early
    save_now = step % config.checkpoint_every == 0 or last
    # A checkpoint ends a logging window too, so no window straddles a restart and a
    # resumed run's records equal an uninterrupted run's.
    log_now = step % config.log_every == 0 or save_now
    validate_now = s.has_validation and (step % eval_every == 0 or last)
    if not (log_now or validate_now or save_now):
      continue
    jax.block_until_ready(in_flight)
    validation.check_finite(s, pending, checkpointer)
    if log_now:
      summary = validation.summarise(pending)
      pending = []
      if timed_seconds > 0:
        summary['steps_per_s'] = timed_steps / timed_seconds
      writer.write(step, summary)
      if summary.get('grad_norm') == 0.0 and s.is_primary and not warned_zero_grad:
        warned_zero_grad = True
        why = s.family.messages.get('zero_gradient', '')
        print(
          f'WARNING: {config.model}: every step up to {step} since the last log had a '
          'zero gradient (grad_norm 0): nothing is learning.' + (f' {why}' if why else ''),
          flush=True,
        )
      bar.set_postfix(loss=f'{summary["loss"]:.4g}')
    if validate_now:
      weights = resume.evaluated(s.family, config, state)
      val = validation.validate(s, dp.get_state(weights))
      writer.write(step, val, prefix='val_')
      if val[val_metric] < float(dp.get_state(state['best_metric'])):
        state = dict(
          state,
          best_params=resume.copy_tree(weights),
          **dp.put_state({'best_metric': np.float32(val[val_metric]), 'best_step': np.int32(step)}),
        )
    if save_now and not s.has_validation:
      # Nothing selects weights: the checkpoint's best ones are those evaluated, which
      # `checkpoint.load_params` hands a later run (`init_from`, a teacher, a first stage).
      weights = resume.copy_tree(resume.evaluated(s.family, config, state))
      state = dict(state, best_params=weights, **dp.put_state({'best_step': np.int32(step)}))
    if save_now:
      checkpointer.save(
        step, dp.checkpoint_state({key: v for key, v in state.items() if key != 'data'})
      )
      if s.save_config:  # the first checkpoint under this config: committed, then recorded
        checkpointer.wait()
        if step in checkpointer.all_steps():
          run_config.save(s.workdir, config)
          s.save_config = False
    t_mark = None  # do not count logging, validation or saving as training time
    if stopped_early:
      if s.is_primary:
        print(
          f'{config.model}: config.max_train_seconds={max_seconds:g} spent at step '
          f'{step} of {num_steps}; checkpointed, evaluating. Re-run to resume.',
          flush=True,
        )
      break
  bar.close()
  steps_per_s = timed_steps / timed_seconds if timed_seconds > 0 else None
  return state, step, stopped_early, steps_per_s


def _finish(s: _Setup, state: dict, step: int, steps_per_s: float | None) -> dict:
  """Evaluates the selected parameters and writes `eval.json` and the pictures."""
  config, family, workdir = s.config, s.family, s.workdir
  num_steps = int(config.num_train_steps)
  if steps_per_s is None:  # a resumed run that trained no step
    steps_per_s = workdir_lib.previous_result(workdir, 'train_steps_per_s')
  best_params = (
    state['best_params'] if s.has_validation else resume.evaluated(family, config, state)
  )
  results: dict[str, Any] = {
    'model': config.model,
    'dataset': config.dataset,
    'train_steps': step,
    'train_steps_per_s': steps_per_s,
    'best_step': int(state['best_step']) if s.has_validation else step,
    'steps_per_loop': s.steps_per_loop,
    'input_pipeline': 'stream' if s.splits.train_stream is not None else 'memory',
    'compute_dtype': config.compute_dtype,
    'matmul_precision': config.matmul_precision,
    # validation, selection, evaluation and samples used the EMA weights, or the trained ones
    'ema_decay': float(config.ema_decay),
    'evaluated_weights': 'ema' if config.ema_decay else 'raw',
    # Test numbers are computed in float32 at the highest matmul precision.
    'eval_matmul_precision': 'highest',
    **workdir_lib.data_record(config, s.splits),  # the data the numbers measured
  }
  if config.init_from:
    results['init_from'] = ckpt_lib.source_workdir(config.init_from)
    results['init_from_step'] = int(state['init_from_step'])
  if step < num_steps:
    results['planned_train_steps'] = num_steps
    results['stopped_by'] = 'max_train_seconds'
  if s.has_validation:
    results[f'best_val_{family.validation_metric}'] = float(state['best_metric'])
  with jax.default_matmul_precision('highest'):
    where = {'workdir': workdir} if family.evaluate_takes_workdir else {}
    results.update(family.evaluate(best_params, s.splits, s.eval_key, config, **where))
    if family.sample is not None:
      results.update(
        workdir_lib.save_samples(family, best_params, s.sample_key, workdir, s.splits.info, config)
      )
    if family.pictures is not None and s.is_primary:
      results.update(
        workdir_lib.without_plots_if_absent(
          family.pictures, best_params, s.splits, s.sample_key, workdir
        )
        or {}
      )
  if s.is_primary:
    results.update(
      workdir_lib.without_plots_if_absent(workdir_lib.plot_losses, workdir, config.model) or {}
    )
    kept = workdir_lib.keep_other_data_eval(workdir, results['data_fingerprint'])
    if kept:
      print(
        f'{config.model}: {workdir}/eval.json measured other data (or names none); kept as {kept}.',
        flush=True,
      )
    workdir_lib.write_json(os.path.join(workdir, workdir_lib.EVAL_FILENAME), results)
  return results


def run(config, workdir: str, family: Family, splits) -> dict:
  """Trains, selects, evaluates; returns the dict written to `workdir/eval.json`.

  Args:
    config: `ml_collections.ConfigDict` (see `REQUIRED_FIELDS`; every other setting
      has its default in `gm_jax.train.defaults.TRAINING`: `eval_every`,
      `max_to_keep`, `num_samples`, the optimiser fields of `optim.make_optimizer`,
      `steps_per_loop`, `matmul_precision`, `init_from` (another run's workdir whose
      selected parameters a new run starts from, with a fresh optimiser state and
      schedule, e.g. a second cosine cycle), `allow_resume_changes` (see below)).
    workdir: output folder; re-running with the same workdir resumes. A fresh run
      writes its config to `workdir/config.json` once its first checkpoint is
      committed (a resumed run under changed settings likewise); resuming under a
      config that changes how the checkpoints train raises
      `run_config.ResumeConfigError` naming each change, unless
      `config.allow_resume_changes` (then the file is rewritten).
    family: the model's pure functions.
    splits: `gm_data.Splits` with `train`, `validation`, `test`, `info`.

  Raises:
    workdir.WorkdirLockedError: another live process is running in `workdir`.
  """
  # One run per workdir: a second one stops here, naming the holder.
  with workdir_lib.WorkdirLock(workdir, enabled=parallel.distributed.is_primary()):
    return _run(config, workdir, family, splits)


def _run(config, workdir: str, family: Family, splits) -> dict:
  s, state = _prepare(config, workdir, family, splits)
  # Several processes: every one must take part in orbax's saves (its barriers span all
  # processes); orbax itself writes replicated arrays from process 0 only.
  checkpointer = ckpt_lib.Checkpointer(
    os.path.join(s.workdir, 'checkpoints'),
    max_to_keep=int(s.config.max_to_keep),
    is_primary=s.is_primary or jax.process_count() > 1,
    asynchronous=True,
  )
  writer = None
  try:
    restored_step, state = resume.restore(s, state, checkpointer)
    # From here on `state` is in the mode's device layout (replicated for pmap and
    # sharding); `dp.get_state` gives one plain copy for evaluation and checkpoints.
    if s.resident:
      state = dict(state, data=dict(s.splits.train))
    state = s.dp.put_state(state)
    writer = metrics_lib.MetricWriter(s.workdir, enabled=s.is_primary, resume_step=restored_step)
    state, step, _, steps_per_s = _train(s, state, checkpointer, writer)
  finally:
    if writer is not None:
      writer.close()
    checkpointer.close()  # waits for the background saves: nothing is left in flight
  state = s.dp.get_state({k: v for k, v in state.items() if k != 'data'})
  return _finish(s, state, step, steps_per_s)
