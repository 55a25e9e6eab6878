"""The config a run started with (`workdir/config.json`), checked when the run resumes.

Re-running a command resumes from the newest checkpoint. If the config changed in
between (another learning rate, seed, batch size, model hyperparameter, or a longer
`num_train_steps` under a cosine schedule), the checkpointed optimiser state would
silently continue under other settings: a resumed run would then be neither the old run
nor the new one. `check_resume` names every such change; `loop.run` raises
`ResumeConfigError` before it trains, so nothing saved is touched.

Fields that may change on resume (`MAY_CHANGE_ON_RESUME`) are where and how the run
reads, logs, validates and checkpoints, its parallel mode and time budget, and the
family's own evaluation settings (`Family.resume_may_change`, handed in by the trainer).
`num_train_steps` may change where the learning rates of the steps both configs plan are
the same (e.g. a constant `lr_schedule`; not a cosine, nor a linear decay over the
second half of the run): training longer then continues the same run. The
schedules compared are the ones the family trains with (`Family.schedule`, handed in by
the trainer; `optim.learning_rate_schedule` by default). A field that one config lacks
and the other sets to its shared default (`defaults.TRAINING`) is no change.
Workdirs written before `config.json` existed are resumed unchecked.

`validate_config` checks the fields every config needs before a run starts.
"""

from __future__ import annotations

from collections.abc import Callable
import json
import os
from typing import Any

import ml_collections
import numpy as np

from gm_jax import data as gm_data
from gm_jax import parallel
from gm_jax.nn import precision as precision_lib
from gm_jax.train import checkpoint as ckpt_lib
from gm_jax.train import defaults
from gm_jax.train import optim
from gm_jax.train import workdir as workdir_lib

Schedule = Callable[[Any], Any]  # config -> optax.Schedule

FILENAME = 'config.json'

MAY_CHANGE_ON_RESUME = frozenset(
  (
    # where data and outputs live, how often the run logs, validates and checkpoints
    'data_dir',
    'checkpoint_every',
    'eval_every',
    'log_every',
    'max_to_keep',
    'progress_bar',
    'eval_batch_size',
    'num_samples',
    # how and for how long this invocation runs (a checkpoint resumes under any mode;
    # the steps per dispatch and where the batches are gathered change no number)
    'parallel',
    'max_train_seconds',
    'allow_resume_changes',
    'steps_per_loop',
    'device_data_max_bytes',
  )
)


REQUIRED_FIELDS = (
  'model',
  'dataset',
  'data_dir',
  'batch_size',
  'num_train_steps',
  'learning_rate',
  'seed',
  'checkpoint_every',
  'log_every',
  'parallel',
)
MATMUL_PRECISIONS = ('default', 'high', 'highest')


def _positive_int(config, name: str) -> int:
  value = config[name]
  if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value <= 0:
    raise ValueError(f'config.{name} must be a positive integer, got {value!r}')
  return int(value)


def validate_config(config) -> None:
  """Checks the fields every config must have; the error names the bad field."""
  missing = [k for k in REQUIRED_FIELDS if k not in config]
  if missing:
    raise ValueError(f'config is missing required field(s): {", ".join(missing)}')
  config = defaults.complete(config)
  for name in ('batch_size', 'checkpoint_every', 'log_every', 'steps_per_loop'):
    _positive_int(config, name)
  if not isinstance(config.num_train_steps, int) or config.num_train_steps < 0:
    raise ValueError(
      f'config.num_train_steps must be a non-negative integer, got {config.num_train_steps!r}'
    )
  if config.eval_every:
    _positive_int(config, 'eval_every')
  if not 0.0 <= config.validation_fraction < 1.0:
    raise ValueError(
      f'config.validation_fraction must be in [0, 1), got {config.validation_fraction!r}'
    )
  if config.parallel not in parallel.MODES:
    raise ValueError(f'config.parallel must be one of {parallel.MODES}, got {config.parallel!r}')
  _positive_int(config, 'loss_group_size')
  defaults.check_one_of(config, 'input_pipeline', gm_data.INPUT_PIPELINES)
  _positive_int(config, 'shuffle_buffer_size')
  if (
    not isinstance(config.input_memory_max_bytes, (int, np.integer))
    or isinstance(config.input_memory_max_bytes, bool)
    or config.input_memory_max_bytes < 0
  ):
    raise ValueError(
      f'config.input_memory_max_bytes must be a non-negative integer, '
      f'got {config.input_memory_max_bytes!r}'
    )
  if config.max_train_seconds < 0:
    raise ValueError(
      f'config.max_train_seconds must be >= 0 (0 = no limit), got {config.max_train_seconds}'
    )
  if config.matmul_precision not in MATMUL_PRECISIONS:
    raise ValueError(
      f'config.matmul_precision must be one of {MATMUL_PRECISIONS}, got {config.matmul_precision!r}'
    )
  precision_lib.resolve(config.compute_dtype)
  ema_decay = config.ema_decay
  if (
    not isinstance(ema_decay, (int, float, np.integer, np.floating))
    or isinstance(ema_decay, bool)
    or not 0.0 <= ema_decay < 1.0
  ):
    raise ValueError(f'config.ema_decay must be a number in [0, 1) (0 = no EMA), got {ema_decay!r}')
  k = int(config.steps_per_loop)
  for name in ('log_every', 'checkpoint_every', 'eval_every'):
    if config[name] and config[name] % k:
      raise ValueError(
        f'config.{name}={config[name]} must be a multiple of config.steps_per_loop={k}: '
        'logs, validations and checkpoints happen between dispatches of '
        'steps_per_loop steps'
      )


class ResumeConfigError(ValueError):
  """A run would resume its checkpoints under a config that changes its training."""


def _plain(config) -> dict[str, Any]:
  """`config` as JSON values (tuples become lists), so saved and current compare equal.

  `init_from` becomes an absolute path to the source workdir (a trailing `checkpoints`
  folder dropped): two spellings of one source are one config.
  """
  as_dict = config.to_dict() if hasattr(config, 'to_dict') else dict(config)
  plain = json.loads(json.dumps(as_dict, sort_keys=True, default=repr))
  source = plain.get('init_from')
  if isinstance(source, str) and source:
    plain['init_from'] = ckpt_lib.source_workdir(source)
  return plain


def save(workdir: str, config) -> None:
  """Writes `config` to `workdir/config.json` (atomically: a temporary file, renamed)."""
  workdir_lib.write_json(os.path.join(workdir, FILENAME), _plain(config))


def load(workdir: str):
  """The saved config as a dict, or None where there is none (an older workdir).

  Raises:
    ResumeConfigError: the file exists but cannot be read or is not a JSON object.
  """
  path = os.path.join(workdir, FILENAME)
  if not os.path.exists(path):
    return None
  try:
    with open(path) as f:
      saved = json.load(f)
  except (OSError, json.JSONDecodeError) as e:
    raise ResumeConfigError(
      f'{path} cannot be read ({e}); it records the config this run started with. '
      'Restore it, or delete it to resume without the check.'
    ) from e
  if not isinstance(saved, dict):
    raise ResumeConfigError(f'{path} holds {type(saved).__name__}, not a config object')
  return saved


_ABSENT = object()


def _show(value) -> str:
  return '(absent)' if value is _ABSENT else repr(value)


def same_schedule_so_far(
  saved: dict, current: dict, points: int = 1025, *, schedule: Schedule | None = None
) -> bool:
  """Whether both configs give the same learning rate at every step both plan.

  `schedule(config)` builds a config's schedule (default `optim.learning_rate_schedule`).
  Compared at `points` steps spread over `[0, min(num_train_steps))`, the ends
  included; a schedule that cannot be built counts as a change.
  """
  build = schedule or optim.learning_rate_schedule
  try:
    old = build(ml_collections.ConfigDict(saved))
    new = build(ml_collections.ConfigDict(current))
    last = min(int(saved['num_train_steps']), int(current['num_train_steps'])) - 1
  except Exception:
    return False
  steps = np.unique(np.linspace(0, max(last, 0), points).round().astype(np.int32))
  return bool(np.allclose(np.asarray(old(steps)), np.asarray(new(steps)), rtol=1e-6, atol=0))


def _is_default(name: str, value) -> bool:
  return name in defaults.TRAINING and json.loads(json.dumps(defaults.TRAINING[name])) == value


def changes(
  saved: dict, config, *, schedule: Schedule | None = None, may_change: frozenset = frozenset()
) -> list[str]:
  """Each field whose change would alter the resumed run, as `'name: old -> new'`.

  Args:
    schedule: how the family builds its learning-rate schedule from a config
      (`Family.schedule`); decides whether `num_train_steps` may change.
    may_change: the family's own fields that only evaluation reads
      (`Family.resume_may_change`), besides `MAY_CHANGE_ON_RESUME`.
  """
  current = _plain(config)
  out = []
  for name in sorted(set(saved) | set(current)):
    if name in MAY_CHANGE_ON_RESUME or name in may_change:
      continue
    old, new = saved.get(name, _ABSENT), current.get(name, _ABSENT)
    if old == new:
      continue
    if (old is _ABSENT and _is_default(name, new)) or (new is _ABSENT and _is_default(name, old)):
      continue  # one config leaves a shared setting at its default, the other spells it
    if name == 'num_train_steps' and same_schedule_so_far(saved, current, schedule=schedule):
      continue  # e.g. a constant learning rate: training longer continues the same run
    why = ''
    if name == 'num_train_steps':
      why = ' (the learning-rate schedule is stretched over num_train_steps)'
    out.append(f'{name}: {_show(old)} -> {_show(new)}{why}')
  return out


def check_resume(
  workdir: str, config, *, schedule: Schedule | None = None, may_change: frozenset = frozenset()
) -> list[str]:
  """Raises `ResumeConfigError` where `config` changes how the saved run trains.

  Returns the changes it let through (with `config.allow_resume_changes=True`), else [].
  Nothing is checked where the workdir has no `config.json`.
  """
  saved = load(workdir)
  if saved is None:
    return []
  found = changes(saved, config, schedule=schedule, may_change=may_change)
  if not found or defaults.get(config, 'allow_resume_changes'):
    return found
  raise ResumeConfigError(
    f'{workdir} holds checkpoints of a run with another config ({FILENAME}), and resuming '
    'would continue its optimiser state under different settings:\n  '
    + '\n  '.join(found)
    + '\nRe-run with the saved values to resume it; or train in a new workdir with '
    f'--init_from={workdir} (a new run from its selected parameters, with a fresh '
    'optimiser and schedule); or set config.allow_resume_changes=True '
    '(--allow_resume_changes) to resume under the new config anyway.'
  )
