"""gm_jax.bench.setup: the family's inputs come from `gm_jax.families.setup`."""

import os

from gm_jax import bench
from gm_jax import families
from gm_jax.train import loop

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LOGREG = os.path.join(REPO, 'configs', 'logreg.py')


def test_trainer_inputs_are_what_families_setup_hands_to_the_loop(tmp_path, tfds_dir):
  run = loop.run
  config = bench.load_config(LOGREG, [('data_dir', tfds_dir)])
  config, family, splits = bench.trainer_inputs(config, str(tmp_path))
  assert loop.run is run
  assert config.model == 'logreg' and callable(family.loss) and callable(family.init)
  assert splits.info.name == 'digits'
  assert len(splits.train['label']) + len(splits.validation['label']) == 1437
  # The family's defaults are filled in, as the trainer sees them.
  for name in families.module_for('logreg').DEFAULTS:
    assert name in config, name
  assert not os.listdir(tmp_path)  # nothing trained, nothing written
