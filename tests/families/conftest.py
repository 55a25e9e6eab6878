"""Trained tiny runs that several family tests read, each trained once per test process.

`contract_run(model)`: the run of test_contract's
`test_trains_two_steps_resumes_evaluates_and_samples` (its tiny settings, killed after the
first checkpoint, resumed, evaluated and sampled),
which the family's own tests read too (test_diffusion, test_gan, test_cyclegan, test_vqvae,
test_hvae, test_reflow: its flow_matching run is reflow's teacher), so that no family is
trained twice for the same checks. The tests that read one model's run are in one
`xdist_group` (test_contract.GROUPS): under `--dist loadgroup` a session fixture is per
worker.

The Inception-FID tests of the families (test_fid_network, test_cyclegan_fid) share one
random-weights file and the exact low-rank FID stand-in.
"""

import dataclasses
import os
from typing import Any

import jax
import numpy as np
import pytest

from gm_jax import data as gm_data
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


@dataclasses.dataclass(frozen=True)
class ContractRun:
  """One model's tiny run through `families.train_and_evaluate`, killed and resumed.

  Attributes:
    config: the run's config (test_contract._tiny).
    workdir: its workdir (eval.json, metrics.jsonl, pictures, checkpoints).
    killed: the first call stopped at the simulated kill (a KeyboardInterrupt).
    saved_at_kill: checkpoint steps in the workdir after the kill.
    eval_after_kill: whether eval.json existed after the kill.
    result: what the resumed call returned.
    final_state: the last checkpointed state of the resumed run, as NumPy arrays.
    identical: the resumed run's final state equals, leaf for leaf, an uninterrupted
      run's (trained without evaluation) for the models of test_contract.COMPARED; else None.
  """

  config: Any
  workdir: str
  killed: bool
  saved_at_kill: list
  eval_after_kill: bool
  result: dict
  final_state: Any
  identical: bool | None


def checkpoint_steps(workdir: str) -> list:
  return sorted(int(n) for n in os.listdir(os.path.join(workdir, 'checkpoints')) if n.isdigit())


def final_state(workdir: str):
  """The latest checkpointed state of `workdir`, as NumPy arrays."""
  import orbax.checkpoint as ocp

  with ocp.CheckpointManager(os.path.join(workdir, 'checkpoints')) as mngr:
    return jax.tree.map(
      np.asarray, mngr.restore(mngr.latest_step(), args=ocp.args.StandardRestore())
    )


def leaves_equal(a, b) -> bool:
  return all(
    np.array_equal(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True)
  )


def _contract_run(model: str, data_dir: str, root: str, prerequisite) -> ContractRun:
  from tests.families import test_contract

  config = test_contract._tiny(model, data_dir)
  with config.unlocked():
    if model == 'reflow':  # its teacher: the tiny flow_matching run
      config.teacher_workdir = prerequisite('flow_matching').workdir
    if model == 'vqvae_prior':  # its first stage: the tiny vqvae run
      config.first_stage_workdir = prerequisite('vqvae').workdir
  workdir = os.path.join(root, 'run')
  kill_at = int(config.checkpoint_every) + 1  # after the first checkpoint
  real = gm_data.batch_at_step

  def dies_at_the_kill(arrays, step, **kw):
    if step == kill_at:
      raise KeyboardInterrupt('simulated kill')
    return real(arrays, step, **kw)

  gm_data.batch_at_step = dies_at_the_kill
  try:
    with pytest.raises(KeyboardInterrupt) as killed:
      families.train_and_evaluate(config, workdir)
  finally:
    gm_data.batch_at_step = real
  saved_at_kill = checkpoint_steps(workdir)
  eval_after_kill = os.path.exists(os.path.join(workdir, 'eval.json'))
  result = families.train_and_evaluate(config, workdir)  # resumes from max(saved_at_kill)
  state = final_state(workdir)
  identical = None
  if model in test_contract.COMPARED:
    reference = os.path.join(root, 'uninterrupted')
    train_without_evaluation(config, reference)
    identical = leaves_equal(final_state(reference), state)
  return ContractRun(
    config=config,
    workdir=workdir,
    killed=killed.type is KeyboardInterrupt,
    saved_at_kill=saved_at_kill,
    eval_after_kill=eval_after_kill,
    result=result,
    final_state=state,
    identical=identical,
  )


@pytest.fixture(scope='session')
def contract_run(data_dir, tmp_path_factory):
  """`model -> ContractRun`: test_contract's tiny run of `model`, trained on first use."""
  runs: dict = {}

  def get(model: str) -> ContractRun:
    if model not in runs:
      root = str(tmp_path_factory.mktemp(f'contract_{model}'))
      runs[model] = _contract_run(model, data_dir, root, get)
    return runs[model]

  return get


@pytest.fixture(scope='session')
def flow_matching_teacher(contract_run):
  """test_contract's tiny flow_matching workdir, reflow's teacher there and in test_reflow.

  Shared: reflow caches its (noise, sample) pairs in the teacher's workdir, so a test that
  must see the teacher without another test's caches copies it."""
  return contract_run('flow_matching').workdir


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
