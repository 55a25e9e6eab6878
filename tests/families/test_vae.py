"""The VAE family end to end: files in the workdir, the CLI, and SIGKILL-resume."""

import json
import os
import pathlib
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from configs import vae as vae_config
from gm_jax import families

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _small_config(tfds_dir, **overrides):
  c = vae_config.get_config()
  c.data_dir = tfds_dir
  c.hidden = (64,)
  c.latent_dim = 4
  c.num_train_steps = 80
  c.batch_size = 32
  c.log_every = 20
  c.eval_every = 40
  c.checkpoint_every = 40
  c.iwae_samples = 20
  c.num_samples = 16
  c.progress_bar = False
  c.update(overrides)
  return families.complete(c)


# The CVAE (which also writes class_samples.png): test_contract's cvae run (killed at step
# 41, resumed), on `_small_config`'s settings (test_contract.SHARED); the plain VAE's
# artefacts, resume and evaluation run in tests/families/test_contract.py. One worker under
# `-n 2 --dist loadgroup` with it.
@pytest.mark.xdist_group('cvae_run')
@pytest.mark.parametrize('model', ['cvae'])
def test_training_writes_every_artefact_and_learns(contract_run, model):
  run = contract_run(model)
  res, tmp_path = run.result, pathlib.Path(run.workdir)
  for name in (
    'eval.json',
    'metrics.jsonl',
    'samples.png',
    'loss.png',
    'reconstructions.png',
    'interpolations.png',
    'latent_scatter.png',
  ):
    assert (tmp_path / name).exists(), name
  assert sorted(os.listdir(tmp_path / 'checkpoints')) == ['40', '80']
  ev = json.loads((tmp_path / 'eval.json').read_text())
  assert ev['model'] == model and ev['dataset'] == 'digits' and ev['bound'] == 'iwae-20'
  for key in (
    'test_nll_nats',
    'test_bpd',
    'train_steps_per_s',
    'samples_per_s',
    'test_elbo_bpd',
    'linear_probe_accuracy',
  ):
    assert np.isfinite(ev[key]), key
  # bits/dim is the NLL in nats over 64 dims and log 2, and IWAE is no looser than the ELBO.
  np.testing.assert_allclose(ev['test_bpd'], ev['test_nll_nats'] / 64 / np.log(2), rtol=1e-6)
  assert ev['test_bpd'] <= ev['test_elbo_bpd'] + 1e-3
  assert ev['test_bpd'] < 4.087  # better than the uniform distribution over 17 levels
  assert res['test_bpd'] == ev['test_bpd']
  if model == 'cvae':
    assert (tmp_path / 'class_samples.png').exists()


def test_unknown_dataset_is_named(tmp_path, tfds_dir):
  with pytest.raises(ValueError, match='no_such_set'):
    families.train_and_evaluate(_small_config(tfds_dir, dataset='no_such_set'), str(tmp_path))


def _cli(workdir, tfds_dir, *extra):
  return [
    sys.executable,
    '-m',
    'gm_jax.main',
    '--config=configs/vae.py',
    f'--workdir={workdir}',
    f'--config.data_dir={tfds_dir}',
    '--config.hidden=(64,)',
    '--config.latent_dim=4',
    '--config.batch_size=32',
    '--config.iwae_samples=5',
    '--config.log_every=10',
    '--config.eval_every=20',
    '--config.checkpoint_every=20',
    *extra,
  ]


def _params(workdir):
  mgr = ocp.CheckpointManager(os.path.join(workdir, 'checkpoints'))
  step = mgr.latest_step()
  state = mgr.restore(step, args=ocp.args.StandardRestore())
  return step, jax.tree.map(np.asarray, state)


def _cli_config(tfds_dir, num_train_steps):
  """The config `_cli(...)` with `--config.num_train_steps` gives `gm_jax.main`."""
  c = vae_config.get_config()
  c.update(
    data_dir=str(tfds_dir),
    hidden=(64,),
    latent_dim=4,
    batch_size=32,
    iwae_samples=5,
    log_every=10,
    eval_every=20,
    checkpoint_every=20,
    num_train_steps=num_train_steps,
  )
  return c


@pytest.mark.slow
def test_cli_sigkill_and_resume_is_bit_identical(tmp_path, tfds_dir):
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2')
  steps = '--config.num_train_steps=150'
  # The uninterrupted reference: the same config in this process (what `gm_jax.main` calls,
  # in the XLA flags the subprocesses inherit), which spares a third interpreter start.
  families.train_and_evaluate(_cli_config(tfds_dir, 150), str(tmp_path / 'full'))
  killed = tmp_path / 'killed'
  proc = subprocess.Popen(
    _cli(killed, tfds_dir, steps),
    cwd=REPO,
    env=env,
    stdout=subprocess.DEVNULL,
    stderr=subprocess.DEVNULL,
  )
  deadline = time.time() + 300
  while not (killed / 'checkpoints' / '40').exists():
    assert proc.poll() is None, 'training ended before it could be killed'
    assert time.time() < deadline
    time.sleep(0.05)
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  done = sorted(int(s) for s in os.listdir(killed / 'checkpoints') if s.isdigit())
  assert done[-1] < 150, 'the kill came too late to test anything'
  out = subprocess.run(
    _cli(killed, tfds_dir, steps), cwd=REPO, env=env, check=True, capture_output=True, text=True
  )
  assert 'Resuming vae' in out.stdout + out.stderr
  step_a, a = _params(tmp_path / 'full')
  step_b, b = _params(killed)
  assert step_a == step_b == 150
  leaves_a, leaves_b = jax.tree.leaves(a), jax.tree.leaves(b)
  assert len(leaves_a) == len(leaves_b)
  for x, y in zip(leaves_a, leaves_b):
    np.testing.assert_array_equal(x, y)
  ev_a = json.loads((tmp_path / 'full' / 'eval.json').read_text())
  ev_b = json.loads((killed / 'eval.json').read_text())
  assert ev_a['test_bpd'] == ev_b['test_bpd']


def test_cli_reports_bad_config_value(tmp_path, tfds_dir):
  out = subprocess.run(
    _cli(tmp_path, tfds_dir, '--config.batch_size=0'), cwd=REPO, capture_output=True, text=True
  )
  assert out.returncode != 0
  assert 'config.batch_size must be a positive integer' in out.stderr
