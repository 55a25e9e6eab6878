"""Two processes on 127.0.0.1 (2 CPU devices each) train like one process with 4 devices.

Each process is this file run as a script: it joins the job with
`gm_jax.parallel.initialize_distributed` (CPU collectives over gloo), trains the
VAE through `gm_jax.train.loop.run` on its own slice of every global batch (and of
every validation and test batch), and process 0 alone writes checkpoints, metrics,
pictures and eval.json. A third, single process
with 4 devices trains the same config; the final checkpoints must agree.
"""

import json
import os
import socket
import subprocess
import sys

import pytest

from tests import multidevice

HERE = os.path.abspath(__file__)
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(HERE)))
RTOL = 1e-5


def _free_port():
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


_env = multidevice.env


def test_partial_multihost_flags_are_named_before_jax_starts(tmp_path):
  from gm_jax import parallel

  assert parallel.initialize_distributed(None, None, None) is False  # single process
  with pytest.raises(ValueError, match='missing --coordinator_address, --process_id'):
    parallel.initialize_distributed(None, 2, None)
  with pytest.raises(ValueError, match='--process_id must be in'):
    parallel.initialize_distributed('127.0.0.1:1234', 2, 2)
  with pytest.raises(ValueError, match='HOST:PORT'):
    parallel.initialize_distributed('localhost', 2, 0)
  # The CLI turns them into a usage error (exit status 1) without training.
  proc = subprocess.run(
    [
      sys.executable,
      '-m',
      'gm_jax.main',
      '--config=configs/vae.py',
      f'--workdir={tmp_path}',
      '--num_processes=2',
      '--process_id=0',
    ],
    cwd=ROOT,
    env=_env(1),
    capture_output=True,
    text=True,
    timeout=300,
  )
  assert proc.returncode == 1
  assert 'missing --coordinator_address' in proc.stderr
  assert not os.listdir(tmp_path)


@pytest.mark.slow
def test_two_processes_match_one_process_with_four_devices(tmp_path):
  port = _free_port()
  procs = [
    subprocess.Popen(
      # One shared workdir, as on a shared filesystem: orbax synchronises on its path.
      [
        sys.executable,
        HERE,
        '--workdir',
        str(tmp_path / 'two'),
        '--coordinator_address',
        f'127.0.0.1:{port}',
        '--num_processes',
        '2',
        '--process_id',
        str(i),
      ],
      cwd=ROOT,
      env=_env(2),
      stdout=subprocess.PIPE,
      stderr=subprocess.PIPE,
      text=True,
    )
    for i in range(2)
  ]
  single = subprocess.run(
    [sys.executable, HERE, '--workdir', str(tmp_path / 'single')],
    cwd=ROOT,
    env=_env(4),
    capture_output=True,
    text=True,
    timeout=900,
  )
  outs = []
  for p in procs:
    try:
      out, err = p.communicate(timeout=900)
    except subprocess.TimeoutExpired:
      p.kill()
      raise
    assert p.returncode == 0, err[-5000:]
    outs.append(json.loads(out.strip().splitlines()[-1]))
  assert single.returncode == 0, single.stderr[-5000:]
  ref = json.loads(single.stdout.strip().splitlines()[-1])

  assert [o['process_count'] for o in outs] == [2, 2] and ref['process_count'] == 1
  assert [o['device_count'] for o in outs] == [4, 4] and ref['device_count'] == 4
  for mode in ('pmap', 'sharding'):
    two, one = _outputs(tmp_path / 'two' / mode), _outputs(tmp_path / 'single' / mode)
    assert two['checkpoints'] == one['checkpoints'] == ['3', '6']
    assert two['files'] == one['files'] and 'eval.json' in two['files']
    # One line per step: only process 0 wrote metrics (both would give 12 lines).
    assert len(two['losses']) == len(one['losses']) == 6
    for a, b in zip(two['losses'], one['losses'], strict=True):
      assert abs(a - b) <= RTOL * abs(b), (mode, two['losses'], one['losses'])
    # The test evaluation is split over both processes' devices and gathered: the same
    # IWAE and ELBO numbers as one process (parameters equal to RTOL).
    for name in ('test_nll_nats', 'test_elbo_nats'):
      assert abs(two['eval'][name] - one['eval'][name]) <= 10 * RTOL * abs(one['eval'][name]), (
        mode,
        name,
        two['eval'][name],
        one['eval'][name],
      )
    want = _final_params(tmp_path / 'single' / mode)
    got = _final_params(tmp_path / 'two' / mode, like=want)
    assert _rel(got['params'], want['params']) < RTOL, (mode, _rel(got, want))


def _outputs(workdir):
  with open(os.path.join(workdir, 'metrics.jsonl')) as f:
    losses = [r['loss'] for r in map(json.loads, f) if 'loss' in r]
  with open(os.path.join(workdir, 'eval.json')) as f:
    evaluation = json.load(f)
  return {
    'eval': evaluation,
    'checkpoints': sorted(os.listdir(os.path.join(workdir, 'checkpoints'))),
    'files': sorted(
      f for f in os.listdir(workdir) if not f.startswith('events.out') and f != 'checkpoints'
    ),
    'losses': losses,
  }


def _final_params(workdir, like=None):
  """The newest checkpoint's params; `like`: a restored state giving shapes and devices.

  A checkpoint of the two-process run records its 4-device sharding, so it is read
  into the structure of the single-process one, as `loop.run` does when it resumes.
  """
  import orbax.checkpoint as ocp

  from gm_jax.train import checkpoint

  ck = checkpoint.Checkpointer(os.path.join(workdir, 'checkpoints'))
  step = ck.latest_step()
  if like is None:
    state = ck._manager.restore(step, args=ocp.args.StandardRestore())
  else:
    state = ck.restore(step, like)
  ck.close()
  return state


def _rel(a, b):
  """`||a - b|| / ||b||` over all the leaves of two pytrees together."""
  import jax
  import numpy as np

  diff = sum(
    float(np.sum((np.asarray(x, np.float64) - np.asarray(y, np.float64)) ** 2))
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True)
  )
  norm = sum(float(np.sum(np.asarray(y, np.float64) ** 2)) for y in jax.tree.leaves(b))
  return (diff / norm) ** 0.5


# ------------------------------------------------------------------------------------
# The worker.


def _worker(argv):
  import argparse

  p = argparse.ArgumentParser()
  p.add_argument('--workdir', required=True)
  p.add_argument('--coordinator_address')
  p.add_argument('--num_processes', type=int)
  p.add_argument('--process_id', type=int)
  args = p.parse_args(argv)

  from gm_jax import parallel

  parallel.initialize_distributed(args.coordinator_address, args.num_processes, args.process_id)

  import contextlib
  import io

  import jax
  import numpy as np

  from configs import vae as vae_config
  from gm_jax import data as gm_data
  from gm_jax import families
  from gm_jax.families import vae
  from gm_jax.train import loop

  # Synthetic digits-shaped data (every process builds the same arrays).
  rng = np.random.default_rng(0)
  info = gm_data.get_info('digits')
  n = 96
  arrays = {
    'image': rng.integers(0, info.num_levels, (n,) + info.shape).astype(np.uint8),
    'label': rng.integers(0, info.num_classes, n).astype(np.int32),
  }
  splits = gm_data.Splits(
    train={k: v[:64] for k, v in arrays.items()},
    validation={k: v[64:80] for k, v in arrays.items()},
    test={k: v[80:] for k, v in arrays.items()},
    info=info,
  )

  for mode in ('pmap', 'sharding'):
    c = vae_config.get_config()
    c.update(
      dict(
        hidden=(16,),
        latent_dim=4,
        batch_size=8,
        num_train_steps=6,
        warmup_steps=0,
        log_every=1,
        eval_every=3,
        checkpoint_every=3,
        # test: 16 images in batches of 12 (the last padded), 3 per device
        iwae_samples=2,
        iwae_batch_size=12,
        num_samples=4,
        parallel=mode,
        # never reached; exercises the per-step agreement on stopping
        max_train_seconds=1e6,
      )
    )
    c.progress_bar = False
    wd = os.path.join(args.workdir, mode)
    with contextlib.redirect_stdout(io.StringIO()):
      c = families.complete(c)
      loop.run(c, wd, vae.make_family(c, info), splits)
  print(json.dumps({'process_count': jax.process_count(), 'device_count': jax.device_count()}))


if __name__ == '__main__':
  _worker(sys.argv[1:])
