"""Command-line entry point, Flax-examples style.

    python -m gm_jax.main --config=configs/vae.py --workdir=/tmp/vae \
        [--config.num_train_steps=2000 ...]

Re-running the same command resumes from the newest checkpoint in `workdir`.
`--init_from=OTHER_WORKDIR` starts a new run from another run's selected parameters
(e.g. a second learning-rate cycle), with a fresh optimiser state and schedule.
Resuming under a config that changes how the checkpoints train (another learning
rate, seed, or a longer cosine schedule) is an error naming each change
(`workdir/config.json` holds the config the run started with) unless
`--allow_resume_changes`.

Data-parallel training (`--config.parallel=pmap` or `sharding`) uses every local
device. Several hosts: run the same command on each, adding

    --coordinator_address=HOST0:1234 --num_processes=N --process_id=I

(or `--distributed` where JAX detects the cluster itself: Cloud TPU pod slices,
SLURM); `workdir` must then be on a filesystem every host sees.

Errors of the user's making (a config field, an unknown `--config.field`, the data, a
full disk, a workdir another run holds, a resume under another config) end the command
with one or two lines and exit code 2; `--verbose` (or `GM_JAX_VERBOSE=1`) shows the
traceback too.
"""

from gm_jax import _xla

_xla.configure_cpu_flags()  # before JAX starts its backend

import difflib
import errno
import json
import os
import sys

from absl import app
from absl import flags
from ml_collections import config_flags

from gm_jax import _config_path

FLAGS = flags.FLAGS
flags.DEFINE_string('workdir', None, 'Directory for checkpoints, metrics, samples, eval.json.')
config_flags.DEFINE_config_file('config', None, 'Training configuration file.', lock_config=True)
flags.DEFINE_string(
  'coordinator_address', None, 'Multi-process training: HOST:PORT of process 0 (jax.distributed).'
)
flags.DEFINE_integer('num_processes', None, 'Multi-process training: number of processes.')
flags.DEFINE_integer('process_id', None, "Multi-process training: this process's index.")
flags.DEFINE_bool(
  'distributed',
  False,
  'Call jax.distributed.initialize() with cluster auto-detection '
  '(Cloud TPU pod slices, SLURM) instead of the three flags above.',
)
flags.DEFINE_string(
  'init_from',
  None,
  "Start a new run from another run's selected parameters: that run's "
  'workdir (a fresh optimiser state and schedule; ignored once `workdir` '
  'has checkpoints of its own, which are resumed). Sets config.init_from.',
)
flags.DEFINE_bool(
  'allow_resume_changes',
  None,
  "Resume `workdir`'s checkpoints even where the config changes how they "
  'train (another learning rate, seed, schedule length, ...; by default an '
  'error names each change). Sets config.allow_resume_changes.',
)
flags.DEFINE_bool(
  'verbose',
  False,
  "Show the traceback of an error of the user's making "
  '(also GM_JAX_VERBOSE=1); by default it is one or two lines, exit code 2.',
)
flags.mark_flags_as_required(['config', 'workdir'])

USER_ERROR_EXIT_CODE = 2
_main_started = False  # an error before it comes from parsing the flags


def _verbose(argv) -> bool:
  return os.environ.get('GM_JAX_VERBOSE') == '1' or any(
    a in ('--verbose', '--verbose=true', '--verbose=1') for a in argv
  )


def _user_error(e: BaseException) -> bool:
  """Whether `e` is an error of the user's making (reported without a traceback)."""
  from gm_jax.train import checkpoint
  from gm_jax.train import loop
  from gm_jax.train import workdir

  if isinstance(e, OSError):
    return e.errno in (errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.ENOENT, errno.EROFS)
  return isinstance(
    e,
    (
      ValueError,
      KeyError,
      workdir.WorkdirLockedError,
      checkpoint.CheckpointError,
      loop.NonFiniteLossError,
    ),
  )


def unknown_config_field(argv) -> str | None:
  """The first `--config.a.b=...` of `argv` that the config file lacks, with the nearest
  known names; None when every override names a field (or the config cannot load)."""
  from gm_jax import demo

  path = next((a.split('=', 1)[1] for a in argv if a.startswith('--config=')), None)
  if path is None:
    return None
  try:
    config = demo.load_config(path.split(':', 1)[0])
  except Exception:
    return None
  for arg in argv:
    if not arg.startswith('--config.'):
      continue
    dotted = arg[len('--config.') :].split('=', 1)[0]
    node = config
    seen: list[str] = []
    for name in dotted.split('.'):
      keys = list(node.keys()) if hasattr(node, 'keys') else []
      if name not in keys:
        near = difflib.get_close_matches(name, keys, n=3, cutoff=0.6)
        where = f'config.{".".join(seen)}' if seen else 'the config'
        hint = f'; nearest: {", ".join(near)}' if near else ''
        return f'unknown config field --config.{dotted}: {where} has no {name!r}{hint}'
      node, seen = node[name], seen + [name]
  return None


def with_init_from(config, init_from):
  """`config` with `init_from` set (unchanged when None); the flag wins over the config."""
  if init_from is None:
    return config
  if not init_from:
    raise app.UsageError('--init_from is empty: give the workdir of the run to start from')
  return _with_field(config, 'init_from', init_from)


def with_allow_resume_changes(config, allow):
  """`config` with `allow_resume_changes` set (unchanged when None): the flag wins."""
  if allow is None:
    return config
  return _with_field(config, 'allow_resume_changes', bool(allow))


def _with_field(config, name, value):
  with config.unlocked():
    config[name] = value
  return config


def main(argv):
  global _main_started
  _main_started = True
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  import os

  from absl import logging

  os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
  if not FLAGS['verbosity'].present:
    logging.set_verbosity(logging.WARNING)  # orbax/tfds INFO lines drown the progress bar
  from gm_jax import parallel

  try:
    # Before anything asks JAX for its devices.
    parallel.initialize_distributed(
      FLAGS.coordinator_address, FLAGS.num_processes, FLAGS.process_id, auto=FLAGS.distributed
    )
  except ValueError as e:
    raise app.UsageError(str(e)) from e
  from gm_jax import families

  config = with_init_from(FLAGS.config, FLAGS.init_from)
  config = with_allow_resume_changes(config, FLAGS.allow_resume_changes)
  if 'model' not in config:
    raise app.UsageError('config has no `model` field')
  try:
    families.module_for(config.model)
  except ValueError as e:
    raise app.UsageError(str(e)) from e
  from gm_jax.train import workdir

  # Taken before the data load, so a second run on this workdir stops at once.
  with workdir.WorkdirLock(FLAGS.workdir, enabled=parallel.distributed.is_primary()):
    results = families.train_and_evaluate(config, FLAGS.workdir)
  if parallel.distributed.is_primary():
    print(json.dumps(results, indent=2, sort_keys=True))


def run():
  _config_path.add_config_root_from_argv(sys.argv)  # config files load during flag parsing
  try:
    app.run(main)
  except Exception as e:
    if _verbose(sys.argv):
      raise
    message = None if _main_started else unknown_config_field(sys.argv)
    if message is None and not _user_error(e):
      raise
    message = message or ' '.join(str(e).split()) or type(e).__name__
    print(
      f'error: {message}\n(the traceback: --verbose or GM_JAX_VERBOSE=1)',
      file=sys.stderr,
      flush=True,
    )
    sys.exit(USER_ERROR_EXIT_CODE)


if __name__ == '__main__':
  sys.exit(run())
