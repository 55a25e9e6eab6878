"""Trained tiny runs that several family tests read, each trained once per test process.

A run that a test only reads (its config.json and checkpoint) is trained without its
evaluation: `train_without_evaluation`. The flow_matching teacher of test_contract's
reflow case and of test_reflow was trained and evaluated once by each.
"""

import dataclasses

import pytest

from gm_jax import families
from gm_jax.train import loop


def train_without_evaluation(config, workdir: str) -> None:
  """`families.train_and_evaluate(config, workdir)` less the final evaluation and
  pictures: the same steps, checkpoints and config.json (the evaluation reads the
  trained state and writes nothing that a resumed or second-stage run reads)."""
  config, family, splits = families.setup(config)
  quiet = dataclasses.replace(family, evaluate=lambda *args, **kw: {}, sample=None, pictures=None)
  loop.run(config, workdir, quiet, splits)


@pytest.fixture(scope='session')
def flow_matching_teacher(data_dir, tmp_path_factory):
  """A tiny flow_matching workdir (test_contract's settings, 3 steps) for reflow to read.

  Shared: reflow caches its (noise, sample) pairs in the teacher's workdir, so a test that
  must see the teacher without another test's caches copies it."""
  from tests.families import test_contract

  workdir = str(tmp_path_factory.mktemp('fm_teacher'))
  train_without_evaluation(test_contract._tiny('flow_matching', data_dir), workdir)
  return workdir
