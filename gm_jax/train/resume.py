"""How a run starts: resuming its newest checkpoint (across an EMA switch), starting from
another run's parameters (`config.init_from`), or afresh; and which weights it evaluates.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from gm_jax.train import checkpoint as ckpt_lib
from gm_jax.train import optim
from gm_jax.train import run_config
from gm_jax.train import step as step_lib
from gm_jax.train.family import Family
from gm_jax.train.run_setup import RunSetup


def copy_tree(tree):
  return jax.tree.map(jnp.copy, tree)


def start_from(family: Family, config, state: dict, params) -> dict:
  """`state` starting from `params`: its EMA (config.ema_decay > 0) and best weights."""
  state = dict(state, params=params)
  if config.ema_decay:
    state['ema_params'] = step_lib.ema_state(family, params)
  state['best_params'] = copy_tree(evaluated(family, config, state))
  return state


def evaluated(family: Family, config, state: dict):
  """The weights validation and evaluation use: the EMA ones when config.ema_decay > 0."""
  if not config.ema_decay:
    return state['params']
  return step_lib.with_ema(family, state['params'], state['ema_params'])


def restore(s: RunSetup, state: dict, checkpointer) -> tuple[int | None, dict]:
  """Resumes from the newest checkpoint, or starts from `init_from`, or afresh."""
  config, workdir = s.config, s.workdir
  schedule = s.family.schedule or optim.learning_rate_schedule
  # Before restoring: a changed config is named field by field (a changed architecture
  # would otherwise surface as a checkpoint shape mismatch).
  resumed_changes = (
    run_config.check_resume(
      workdir, config, schedule=schedule, may_change=s.family.resume_may_change
    )
    if checkpointer.latest_step() is not None
    else []
  )
  restored_step, state = restore_latest(s, state, checkpointer)
  unfinished = [t for t in checkpointer.unfinished_steps() if t > (restored_step or -1)]
  if unfinished and s.is_primary:
    print(
      f'{config.model}: the save of step(s) {unfinished} in {workdir}/checkpoints never '
      'completed (a killed run); '
      + (
        'no complete checkpoint: starting afresh.'
        if restored_step is None
        else f'resuming from step {restored_step} instead.'
      ),
      flush=True,
    )
  # config.json changes only once a checkpoint under the new config is on disk (`_train`):
  # a run that fails before then leaves the saved config matching the checkpoints.
  s.save_config = s.is_primary and (restored_step is None or bool(resumed_changes))
  if s.is_primary and resumed_changes:
    print(
      f'WARNING: {config.model}: resuming {workdir} under a changed config '
      '(config.allow_resume_changes): ' + '; '.join(resumed_changes),
      flush=True,
    )
  if restored_step is None and config.init_from:
    # A new run started from another run's selected parameters (fresh optimiser state
    # and schedule); once this run has checkpoints of its own, it resumes from those.
    source_step, loaded = ckpt_lib.load_params(config.init_from, state['params'])
    state = start_from(s.family, config, state, loaded)
    state['init_from_step'] = jnp.asarray(source_step, jnp.int32)
    if s.is_primary:
      also = s.family.messages.get('init_from', '')
      print(
        f'{config.model}: parameters from {config.init_from} (its checkpoint '
        f'{source_step}); optimiser and schedule start afresh.' + (f' {also}' if also else ''),
        flush=True,
      )
  if restored_step is not None and s.is_primary:
    print(
      f'Resuming {config.model} from {workdir}/checkpoints/{restored_step} '
      f'(step {int(state["step"])}).',
      flush=True,
    )
  return restored_step, state


def restore_latest(s: RunSetup, state: dict, checkpointer) -> tuple[int | None, dict]:
  """`checkpointer.restore_latest(state)`, across a switch of EMA on or off.

  A run resumed with `config.ema_decay` changed from or to 0 (`allow_resume_changes`,
  or a workdir without config.json) has checkpoints with or without `ema_params`:
  switched on, the average starts from the restored parameters; switched off, it is
  dropped. Any other mismatch is raised as it is.
  """
  try:
    return checkpointer.restore_latest(state)
  except ckpt_lib.CheckpointMismatchError as e:
    if 'ema_params' in state:
      other = {k: v for k, v in state.items() if k != 'ema_params'}
    else:
      other = dict(state, ema_params=step_lib.ema_state(s.family, state['params']))
    try:
      step, restored = checkpointer.restore_latest(other)
    except ckpt_lib.CheckpointMismatchError:
      raise e from None
  if 'ema_params' in state:
    restored = dict(restored, ema_params=step_lib.ema_state(s.family, restored['params']))
    change = f'config.ema_decay={s.config.ema_decay:g}: the average starts at these parameters'
  else:
    restored = {k: v for k, v in restored.items() if k != 'ema_params'}
    change = 'config.ema_decay=0: its EMA parameters are dropped'
  if s.is_primary:
    print(f'{s.config.model}: checkpoint {step} resumed with {change}.', flush=True)
  return step, restored
