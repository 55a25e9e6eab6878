"""The generic training loop shared by every likelihood family.

`run(config, workdir, family, splits)` trains `family` on `splits.train`, keeps the
parameters that are best on `splits.validation`, checkpoints with orbax, resumes
exactly, stops on NaN, and writes `eval.json`, `metrics.jsonl`, `samples.png` and
TensorBoard events into `workdir`.

Exact resume: the batch for step `s` is `data.batch_at_step(train, s, ...)` and the
step's PRNG key is `fold_in(key(seed), s)` (computed inside the jitted step), so a run
restored from the checkpoint at step `s` executes the same computations as a run
that never stopped and ends with bit-identical parameters.

Data parallelism (`config.parallel`: `none`, `pmap`, `sharding`): the step below is
written once for one device and wrapped by `gm_jax.parallel`. The family's loss is
called on groups of `config.loss_group_size` (default 1) consecutive examples of the
global batch, group `j` of step `s` with the key `fold_in(fold_in(key, s), j)`
(`parallel.mean_over_groups`), and the step's loss is the mean over groups. So the
three modes, any device count and any number of processes compute the same losses
and parameters (up to float summation order). A family whose loss couples the
examples of a batch (e.g. a KL floor on the batch-averaged KL) sees batches of
`loss_group_size` examples: set it to the per-device batch for the usual
data-parallel semantics. Checkpoints hold one unreplicated copy of the state, so a
run can resume under another mode or device count.
"""

from __future__ import annotations

import functools
import inspect
import json
import os
import time
from typing import Any, Optional

import jax
import jax.numpy as jnp
import numpy as np
import optax
from tqdm import tqdm

from gm_jax import data as gm_data
from gm_jax import parallel
from gm_jax.train import checkpoint as ckpt_lib
from gm_jax.train import metrics as metrics_lib
from gm_jax.train import optim
from gm_jax.train import run_config
from gm_jax.train.family import Family

REQUIRED_FIELDS = ('model', 'dataset', 'data_dir', 'batch_size', 'num_train_steps',
                   'learning_rate', 'seed', 'checkpoint_every', 'log_every', 'parallel')


class NonFiniteLossError(FloatingPointError):
  """Training produced a NaN or infinite loss."""


def validate_config(config) -> None:
  """Checks the fields every config must have; the error names the bad field."""
  missing = [k for k in REQUIRED_FIELDS if k not in config]
  if missing:
    raise ValueError(f'config is missing required field(s): {", ".join(missing)}')
  for name in ('batch_size', 'checkpoint_every', 'log_every'):
    value = config[name]
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
      raise ValueError(f'config.{name} must be a positive integer, got {value!r}')
  if not isinstance(config.num_train_steps, int) or config.num_train_steps < 0:
    raise ValueError(
        f'config.num_train_steps must be a non-negative integer, got {config.num_train_steps!r}')
  lr = config.learning_rate
  if not isinstance(lr, (int, float)) or not np.isfinite(lr) or lr <= 0:
    raise ValueError(f'config.learning_rate must be a positive number, got {lr!r}')
  if 'eval_every' in config and (not isinstance(config.eval_every, int) or config.eval_every <= 0):
    raise ValueError(f'config.eval_every must be a positive integer, got {config.eval_every!r}')
  vf = config.get('validation_fraction', 0.1)
  if not 0.0 <= vf < 1.0:
    raise ValueError(f'config.validation_fraction must be in [0, 1), got {vf!r}')
  if config.parallel not in parallel.MODES:
    raise ValueError(f'config.parallel must be one of {parallel.MODES}, '
                     f'got {config.parallel!r}')
  group = config.get('loss_group_size', 1)
  if not isinstance(group, int) or isinstance(group, bool) or group <= 0:
    raise ValueError(f'config.loss_group_size must be a positive integer, got {group!r}')


def _mean_over(eval_fn, params, arrays: dict, batch_size: int, key) -> dict:
  """Example-weighted mean of `eval_fn(params, batch, key)` metrics over `arrays`."""
  totals: dict[str, float] = {}
  count = 0
  for i, batch in enumerate(gm_data.iterate_batches(arrays, batch_size)):
    n = len(next(iter(batch.values())))
    _, metrics = eval_fn(params, batch, jax.random.fold_in(key, i))
    for k, v in metrics.items():
      totals[k] = totals.get(k, 0.0) + float(v) * n
    count += n
  return {k: v / count for k, v in totals.items()}


def _copy_tree(tree):
  return jax.tree.map(jnp.copy, tree)


def make_train_step(family: Family, tx: optax.GradientTransformation, train_key, *,
                    group_size: int = 1):
  """The single-device train step `(state, batch, *, axis_name=None) -> (state, metrics)`.

  `batch` is this device's shard of the global batch, split into groups of
  `group_size` examples with keys folded from their global group index; with
  `axis_name` (pmap) the shard-mean loss, metrics and gradients are averaged over
  that axis, which equals the global-batch mean because the shards have equal sizes.
  A `family.loss` with a `step` keyword receives the step being taken (int32 scalar).
  A family with a `train_update` (e.g. a GAN's two optimisers) runs that instead of
  `tx`; it receives the same step key and does its own `pmean` over `axis_name`.
  """

  if family.train_update is not None:
    update = family.train_update.update

    def own_train_step(state, batch, *, axis_name=None):
      key = jax.random.fold_in(train_key, state['step'])
      params, opt_state, metrics = update(state['params'], state['opt_state'], batch, key,
                                          step=state['step'], axis_name=axis_name)
      return dict(state, step=state['step'] + 1, params=params, opt_state=opt_state), metrics

    return own_train_step

  takes_step = 'step' in inspect.signature(family.loss).parameters

  def train_step(state, batch, *, axis_name=None):
    key = jax.random.fold_in(train_key, state['step'])
    offset = parallel.shard_offset(parallel.batch_size_of(batch), axis_name)

    loss = family.loss
    if takes_step:  # e.g. a KL warm-up schedule
      loss = functools.partial(family.loss, step=state['step'])

    def loss_fn(p):
      return parallel.mean_over_groups(loss, p, batch, key, group_size=group_size,
                                       offset=offset, train=True)

    (loss, metrics), grads = jax.value_and_grad(loss_fn, has_aux=True)(state['params'])
    if axis_name is not None:
      loss, metrics, grads = jax.lax.pmean((loss, metrics, grads), axis_name)
    updates, opt_state = tx.update(grads, state['opt_state'], state['params'])
    params = optax.apply_updates(state['params'], updates)
    metrics = dict(metrics, loss=loss, grad_norm=optax.global_norm(grads))
    new_state = dict(state, step=state['step'] + 1, params=params, opt_state=opt_state)
    return new_state, metrics

  return train_step


def run(config, workdir: str, family: Family, splits) -> dict:
  """Trains, selects, evaluates; returns the dict written to `workdir/eval.json`.

  Args:
    config: `ml_collections.ConfigDict` (see `REQUIRED_FIELDS`; optional `eval_every`,
      `max_to_keep`, `num_samples`, optimiser fields of `optim.make_optimizer`, and
      `init_from`: another run's workdir whose selected parameters a new run starts
      from, with a fresh optimiser state and schedule, e.g. a second cosine cycle;
      `allow_resume_changes`: see below).
    workdir: output folder; re-running with the same workdir resumes. A fresh run
      writes its config to `workdir/config.json`; resuming under a config that changes
      how the checkpoints train raises `run_config.ResumeConfigError` naming each
      change, unless `config.allow_resume_changes` (then the file is rewritten).
    family: the model's pure functions.
    splits: `gm_data.Splits` with `train`, `validation`, `test`, `info`.
  """
  validate_config(config)
  workdir = os.path.abspath(workdir)
  try:
    os.makedirs(workdir, exist_ok=True)
  except OSError as e:
    raise OSError(f'cannot create workdir {workdir!r}: {e}') from e
  is_primary = parallel.distributed.is_primary()
  train = splits.train
  num_train = len(next(iter(train.values())))
  if num_train < config.batch_size:
    raise ValueError(f'config.batch_size={config.batch_size} is larger than the training '
                     f'split of {config.dataset!r} ({num_train} examples)')

  seed = int(config.seed)
  root_key = jax.random.key(seed)
  init_key, train_key, eval_key, sample_key = jax.random.split(root_key, 4)
  tx = optim.make_optimizer(config)
  group = int(config.get('loss_group_size', 1))
  dp = parallel.make(config.parallel, make_train_step(family, tx, train_key, group_size=group))
  dp.check_batch_size(config.batch_size)
  if (config.batch_size // dp.num_devices) % group:
    raise ValueError(
        f'config.loss_group_size={group} must divide the per-device batch '
        f'(config.batch_size={config.batch_size} over {dp.num_devices} device(s) = '
        f'{config.batch_size // dp.num_devices})')
  first_batch = gm_data.batch_at_step(train, 0, batch_size=config.batch_size, seed=seed)
  params = family.init(init_key, first_batch)
  state = {
      'step': jnp.asarray(0, jnp.int32),
      'params': params,
      'opt_state': (tx.init(params) if family.train_update is None
                    else family.train_update.init(params)),
      'best_params': _copy_tree(params),
      'best_metric': jnp.asarray(np.inf, jnp.float32),
      'best_step': jnp.asarray(0, jnp.int32),
  }
  init_from = config.get('init_from', None)
  if init_from:
    # The step of the source checkpoint, kept in the state so a resumed run reports it.
    state['init_from_step'] = jnp.asarray(-1, jnp.int32)
  # Several processes: every one must take part in orbax's saves (its barriers span all
  # processes); orbax itself writes replicated arrays from process 0 only.
  checkpointer = ckpt_lib.Checkpointer(
      os.path.join(workdir, 'checkpoints'), max_to_keep=int(config.get('max_to_keep', 3)),
      is_primary=is_primary or jax.process_count() > 1)
  try:
    # Before restoring: a changed config is named field by field (a changed architecture
    # would otherwise surface as a checkpoint shape mismatch).
    resumed_changes = (run_config.check_resume(workdir, config)
                       if checkpointer.latest_step() is not None else [])
    restored_step, state = checkpointer.restore_latest(state)
  except BaseException:
    checkpointer.close()
    raise
  if is_primary and (restored_step is None or resumed_changes):
    if resumed_changes:
      print(f'WARNING: {config.model}: resuming {workdir} under a changed config '
            '(config.allow_resume_changes): ' + '; '.join(resumed_changes), flush=True)
    run_config.save(workdir, config)  # the config the checkpoints continue under
  if restored_step is None and init_from:
    # A new run started from another run's selected parameters (fresh optimiser state
    # and schedule); once this run has checkpoints of its own, it resumes from those.
    try:
      source_step, loaded = ckpt_lib.load_params(init_from, state['params'])
    except BaseException:
      checkpointer.close()
      raise
    state = dict(state, params=loaded, best_params=_copy_tree(loaded),
                 init_from_step=jnp.asarray(source_step, jnp.int32))
    if is_primary:
      kl_warmup = config.get('kl_warmup_steps', 0)
      also = (f' The KL warm-up restarts with the step count too (config.kl_warmup_steps='
              f'{kl_warmup}): set it to 0 to train at the full KL from the first step.'
              if kl_warmup else '')
      print(f'{config.model}: parameters from {init_from} (its checkpoint {source_step}); '
            f'optimiser and schedule start afresh.{also}', flush=True)
  start_step = int(state['step'])
  if restored_step is not None and is_primary:
    print(f'Resuming {config.model} from {workdir}/checkpoints/{restored_step} '
          f'(step {start_step}).', flush=True)
  # From here on `state` is in the mode's device layout (replicated for pmap and
  # sharding); `dp.get_state` gives one plain copy for evaluation and checkpoints.
  state = dp.put_state(state)

  eval_step = jax.jit(lambda p, b, k: family.loss(p, b, k, train=False))
  writer = metrics_lib.MetricWriter(workdir, enabled=is_primary)
  num_steps = int(config.num_train_steps)
  eval_every = int(config.get('eval_every', config.checkpoint_every))
  # A family without a validation metric (GANs) is evaluated at its last parameters.
  val_metric = family.validation_metric
  has_validation = (val_metric is not None
                    and len(next(iter(splits.validation.values()), [])) > 0)
  eval_batch = int(config.get('eval_batch_size', max(config.batch_size, 256)))
  # A wall-clock budget for this invocation's training (0 = none): once spent, the step in
  # hand is validated and checkpointed as if it were the last (re-running resumes).
  max_seconds = float(config.get('max_train_seconds', 0) or 0)
  if max_seconds < 0:
    raise ValueError(f'config.max_train_seconds must be >= 0 (0 = no limit), got {max_seconds}')
  t_start = time.perf_counter()
  stopped_early = False
  warned_zero_grad = False

  timed_steps, timed_seconds, t_mark = 0, 0.0, None
  pending: dict[str, list] = {}
  bar = tqdm(total=num_steps, initial=start_step, desc=config.model, unit='step',
             disable=not is_primary or not config.get('progress_bar', True), mininterval=2.0)
  step = start_step
  try:
    while step < num_steps:
      # Each process materialises only its own contiguous slice of the global batch.
      batch = gm_data.batch_at_step(train, step, batch_size=config.batch_size, seed=seed,
                                    shard_index=dp.shard_index, shard_count=dp.shard_count)
      state, metrics = dp.step(state, dp.put_batch(batch))
      loss = float(metrics['loss'])  # also synchronises, so the timing below is honest
      step += 1
      if not np.isfinite(loss):
        raise NonFiniteLossError(
            f'{config.model}: non-finite loss ({loss}) at step {step}; training stopped. '
            f'The last good checkpoint ({checkpointer.latest_step()}) in '
            f'{workdir}/checkpoints is kept; lower config.learning_rate or set '
            f'config.grad_clip_norm.')
      now = time.perf_counter()
      if t_mark is not None:  # the first step of a process includes compilation
        timed_steps += 1
        timed_seconds += now - t_mark
      t_mark = now
      bar.update(1)
      if max_seconds and step < num_steps:
        stopped_early = now - t_start >= max_seconds
        if jax.process_count() > 1:  # every process must stop at the same step
          from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
          stopped_early = bool(multihost_utils.broadcast_one_to_all(np.asarray(stopped_early)))
      last = step == num_steps or stopped_early
      for k, v in metrics.items():
        pending.setdefault(k, []).append(v)
      if step % config.log_every == 0 or last:
        summary = {k: float(np.mean(jax.device_get(v))) for k, v in pending.items()}
        if timed_seconds > 0:
          summary['steps_per_s'] = timed_steps / timed_seconds
        writer.write(step, summary)
        if summary.get('grad_norm') == 0.0 and is_primary and not warned_zero_grad:
          warned_zero_grad = True
          print(f'WARNING: {config.model}: every step up to {step} since the last log had a '
                'zero gradient (grad_norm 0): nothing is learning. A gradient-skipping '
                f'threshold (config.grad_skip_norm={config.get("grad_skip_norm", None)}) '
                'below the gradient norms of this dataset does this.', flush=True)
        bar.set_postfix(loss=f'{summary["loss"]:.4g}')
        pending = {}
      if has_validation and (step % eval_every == 0 or last):
        val = _mean_over(eval_step, dp.get_state(state['params']), splits.validation,
                         eval_batch, eval_key)
        writer.write(step, val, prefix='val_')
        if val[val_metric] < float(dp.get_state(state['best_metric'])):
          state = dict(state, best_params=_copy_tree(state['params']),
                       **dp.put_state({'best_metric': np.float32(val[val_metric]),
                                       'best_step': np.int32(step)}))
        t_mark = None  # do not count validation time as training time
      if step % config.checkpoint_every == 0 or last:
        checkpointer.save(step, dp.checkpoint_state(state))
        t_mark = None
      if stopped_early:
        if is_primary:
          print(f'{config.model}: config.max_train_seconds={max_seconds:g} spent at step '
                f'{step} of {num_steps}; checkpointed, evaluating. Re-run to resume.',
                flush=True)
        break
  finally:
    bar.close()
    writer.close()
    checkpointer.close()  # every save is synchronous: nothing is left in flight

  state = dp.get_state(state)
  steps_per_s = timed_steps / timed_seconds if timed_seconds > 0 else _previous(
      workdir, 'train_steps_per_s')
  best_params = state['best_params'] if has_validation else state['params']
  results: dict[str, Any] = {
      'model': config.model,
      'dataset': config.dataset,
      'train_steps': step,
      'train_steps_per_s': steps_per_s,
      'best_step': int(state['best_step']) if has_validation else step,
  }
  if init_from:
    results['init_from'] = ckpt_lib.source_workdir(init_from)  # W and W/checkpoints: one source
    results['init_from_step'] = int(state['init_from_step'])
  if step < num_steps:
    results['planned_train_steps'] = num_steps
    results['stopped_by'] = 'max_train_seconds'
  if has_validation:
    results[f'best_val_{val_metric}'] = float(state['best_metric'])
  results.update(family.evaluate(best_params, splits, eval_key, config))
  if family.sample is not None:
    results.update(_samples(family, best_params, sample_key, workdir, splits.info, config))
  if family.pictures is not None and is_primary:
    results.update(family.pictures(best_params, splits, sample_key, workdir) or {})
  if is_primary:
    _plot_losses(workdir, config.model)
    with open(os.path.join(workdir, 'eval.json'), 'w') as f:
      json.dump(results, f, indent=2, sort_keys=True)
  return results


def _samples(family: Family, params, key, workdir: str, info, config) -> dict:
  """Draws a grid of samples, timing a second (compiled) draw for samples/s."""
  from gm_jax.evaluate import images  # pylint: disable=g-import-not-at-top
  num = int(config.get('num_samples', 64))
  samples = np.asarray(family.sample(params, key, num))  # includes compilation
  t0 = time.perf_counter()
  again = np.asarray(family.sample(params, jax.random.fold_in(key, 1), num))
  seconds = time.perf_counter() - t0
  del again
  if jax.process_index() == 0:
    images.save_image_grid(samples, os.path.join(workdir, 'samples.png'),
                           num_levels=info.num_levels)
  return {'samples_per_s': num / seconds if seconds > 0 else None}


def _plot_losses(workdir: str, model: str) -> None:
  from gm_jax.evaluate import plots  # pylint: disable=g-import-not-at-top
  records = metrics_lib.read_metrics(workdir)
  keys = ['loss'] + sorted({k for r in records for k in r if k.startswith('val_')})[:2]
  if records:
    plots.plot_loss_curves(records, os.path.join(workdir, 'loss.png'), keys=keys, title=model)


def _previous(workdir: str, key: str) -> Optional[float]:
  """Reads `key` from an existing eval.json (a resumed run that trained no step)."""
  path = os.path.join(workdir, 'eval.json')
  if os.path.exists(path):
    try:
      with open(path) as f:
        return json.load(f).get(key)
    except (OSError, json.JSONDecodeError):
      return None
  return None
