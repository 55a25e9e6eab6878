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
"""

from gm_jax import _xla

_xla.configure_cpu_flags()  # before JAX starts its backend

# pylint: disable=g-import-not-at-top,wrong-import-position
import json
import sys

from absl import app
from absl import flags
from ml_collections import config_flags

from gm_jax import _config_path

FLAGS = flags.FLAGS
flags.DEFINE_string('workdir', None, 'Directory for checkpoints, metrics, samples, eval.json.')
config_flags.DEFINE_config_file('config', None, 'Training configuration file.',
                                lock_config=True)
flags.DEFINE_string('coordinator_address', None,
                    'Multi-process training: HOST:PORT of process 0 (jax.distributed).')
flags.DEFINE_integer('num_processes', None, 'Multi-process training: number of processes.')
flags.DEFINE_integer('process_id', None, "Multi-process training: this process's index.")
flags.DEFINE_bool('distributed', False,
                  'Call jax.distributed.initialize() with cluster auto-detection '
                  '(Cloud TPU pod slices, SLURM) instead of the three flags above.')
flags.DEFINE_string('init_from', None,
                    "Start a new run from another run's selected parameters: that run's "
                    'workdir (a fresh optimiser state and schedule; ignored once `workdir` '
                    'has checkpoints of its own, which are resumed). Sets config.init_from.')
flags.DEFINE_bool('allow_resume_changes', None,
                  "Resume `workdir`'s checkpoints even where the config changes how they "
                  'train (another learning rate, seed, schedule length, ...; by default an '
                  'error names each change). Sets config.allow_resume_changes.')
flags.mark_flags_as_required(['config', 'workdir'])


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
    parallel.initialize_distributed(FLAGS.coordinator_address, FLAGS.num_processes,
                                    FLAGS.process_id, auto=FLAGS.distributed)
  except ValueError as e:
    raise app.UsageError(str(e))
  from gm_jax import families
  config = with_init_from(FLAGS.config, FLAGS.init_from)
  config = with_allow_resume_changes(config, FLAGS.allow_resume_changes)
  if 'model' not in config:
    raise app.UsageError('config has no `model` field')
  try:
    families.module_for(config.model)
  except ValueError as e:
    raise app.UsageError(str(e))
  results = families.train_and_evaluate(config, FLAGS.workdir)
  if parallel.distributed.is_primary():
    print(json.dumps(results, indent=2, sort_keys=True))


def run():
  _config_path.add_config_root_from_argv(sys.argv)  # config files load during flag parsing
  app.run(main)


if __name__ == '__main__':
  sys.exit(run())
