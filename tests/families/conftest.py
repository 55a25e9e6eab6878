"""Trained tiny runs that several family tests read, each trained once per test process.

A run that a test only reads (its config.json and checkpoint) is trained without its
evaluation: `train_without_evaluation`. The flow_matching teacher of test_contract's
reflow case and of test_reflow was trained and evaluated once by each.

The Inception-FID tests of the families (test_fid_network, test_cyclegan_fid) share one
random-weights file and the exact low-rank FID stand-in.
"""

import dataclasses

import numpy as np
import pytest

from gm_jax import families
from gm_jax.evaluate import feature_metrics
from gm_jax.evaluate import inception
from gm_jax.train import loop
from tests.evaluate import low_rank_fid
from tests.evaluate import torch_file


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


@pytest.fixture(scope='session')
def inception_weights(tmp_path_factory):
  """`(path, params)`: random FID-Inception params written as pytorch-fid's weights file."""
  params = torch_file.random_params(1)
  path = str(tmp_path_factory.mktemp('inception') / inception.FID_WEIGHTS_FILE)
  torch_file.write_state_dict(path, torch_file.params_to_state_dict(params))
  return path, params


@pytest.fixture
def fid_calls(monkeypatch):
  """The Gaussian statistics `(mu_gen, sigma_gen, mu_real, sigma_real)` of each FID, recorded.

  The FID is the exact low-rank one of tests/evaluate/low_rank_fid.py (checked against
  `gm_jax.evaluate.fid` in tests/evaluate/test_fid_stats.py) in place of pytorch-fid's
  `sqrtm` of a 2048 x 2048 product (minutes here; the formula is checked in
  test_feature_metrics.py): the covariances of 4 images have rank 3. A second evaluation
  gives byte-equal statistics (asserted) or a new computation."""
  calls = []

  def frechet_distance(mu1, sigma1, mu2, sigma2):
    args = tuple(np.asarray(a, np.float64) for a in (mu1, sigma1, mu2, sigma2))
    calls.append(args)
    return low_rank_fid.frechet_distance(*args)

  monkeypatch.setattr(feature_metrics, 'frechet_distance', frechet_distance)
  return calls
