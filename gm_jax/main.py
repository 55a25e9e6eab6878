"""Command-line entry point, Flax-examples style.

    python -m gm_jax.main --config=configs/vae.py --workdir=/tmp/vae \
        [--config.num_train_steps=2000 ...]

Re-running the same command resumes from the newest checkpoint in `workdir`.
"""

from gm_jax import _xla

_xla.configure_cpu_flags()  # before JAX starts its backend

# pylint: disable=g-import-not-at-top,wrong-import-position
import json
import sys

from absl import app
from absl import flags
from ml_collections import config_flags

FLAGS = flags.FLAGS
flags.DEFINE_string('workdir', None, 'Directory for checkpoints, metrics, samples, eval.json.')
config_flags.DEFINE_config_file('config', None, 'Training configuration file.',
                                lock_config=True)
flags.mark_flags_as_required(['config', 'workdir'])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  import os
  from absl import logging
  os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
  if not FLAGS['verbosity'].present:
    logging.set_verbosity(logging.WARNING)  # orbax/tfds INFO lines drown the progress bar
  from gm_jax.train import registry
  config = FLAGS.config
  if 'model' not in config:
    raise app.UsageError('config has no `model` field')
  try:
    train_and_evaluate = registry.trainer_for(config.model)
  except ValueError as e:
    raise app.UsageError(str(e))
  results = train_and_evaluate(config, FLAGS.workdir)
  print(json.dumps(results, indent=2, sort_keys=True))


def run():
  app.run(main)


if __name__ == '__main__':
  sys.exit(run())
