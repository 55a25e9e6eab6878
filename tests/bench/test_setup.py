"""gm_jax.bench.setup: the family's own inputs, with `loop.run` left as it was."""
import os

import pytest

from gm_jax import bench
from gm_jax.train import loop
from gm_jax.train import registry

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LOGREG = os.path.join(REPO, 'configs', 'logreg.py')


def test_trainer_inputs_are_what_the_family_hands_to_the_loop(tmp_path, tfds_dir):
  run = loop.run
  config = bench.load_config(LOGREG, [('data_dir', tfds_dir)])
  config, family, splits = bench.trainer_inputs(config, str(tmp_path))
  assert loop.run is run
  assert config.model == 'logreg' and callable(family.loss) and callable(family.init)
  assert splits.info.name == 'digits'
  assert len(splits.train['label']) + len(splits.validation['label']) == 1437


def test_a_family_that_never_calls_the_loop_is_named(tmp_path, monkeypatch, tfds_dir):
  run = loop.run
  monkeypatch.setattr(registry, 'trainer_for', lambda model: lambda config, workdir: None)
  config = bench.load_config(LOGREG, [('data_dir', tfds_dir)])
  with pytest.raises(bench.BenchError, match="'logreg'.*loop.run"):
    bench.trainer_inputs(config, str(tmp_path))
  assert loop.run is run
