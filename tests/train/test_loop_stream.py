"""`loop.run` on a streamed training split (`config.input_pipeline='stream'`).

The digits train split streamed through its tfds builder (`gm_jax.data.stream`), a
linear-regression family to keep it fast: exact resume mid-epoch, chunks of
`steps_per_loop` batches, and (in a subprocess with 4 CPU devices) the three
`config.parallel` modes, which must train the same parameters.
"""

import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

pytest.importorskip('tensorflow_datasets')

from gm_jax import data as gm_data
from gm_jax.train import loop
from gm_jax.train.family import Family
from tests import multidevice

# Its own worker under `--dist loadgroup`: the module's 4-device fixture runs once, and the
# 'tfds_mock' group (tests/train/test_tfds_datasets.py) is a minute by itself.
pytestmark = pytest.mark.xdist_group('loop_stream')

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
NUM_DEVICES = 4


def _family():
  def init(key, batch):
    return {'w': jax.random.normal(key, (64,)) * 0.01, 'b': jnp.zeros(())}

  def loss(params, batch, key, *, train):
    x = batch['image'].reshape(batch['image'].shape[0], -1).astype(jnp.float32) / 16
    noise = 0.01 * jax.random.normal(key, ()) if train else 0.0  # exercises the step key
    err = x @ params['w'] + params['b'] + noise - batch['label'] / 10
    mse = jnp.mean(err**2)
    return mse, {'mse': mse}

  def evaluate(params, splits, key, config):
    del splits, key, config
    return {'w_sum': float(jnp.sum(params['w']))}

  return Family(name='linear', init=init, loss=loss, evaluate=evaluate, validation_metric='mse')


def _config(data_dir, **overrides):
  from tests.train import test_loop

  c = test_loop._config(
    dataset='digits',
    data_dir=data_dir,
    batch_size=64,
    num_train_steps=28,
    lr_schedule='constant',
    warmup_steps=0,
    learning_rate=0.02,
    checkpoint_every=4,
    eval_every=4,
    log_every=4,
    validation_fraction=0.1,
    input_pipeline='stream',
    seed=1,
  )
  c.update(overrides)
  return c


def _splits(data_dir, input_pipeline='stream'):
  return gm_data.load_splits(
    'digits', data_dir=data_dir, validation_fraction=0.1, input_pipeline=input_pipeline
  )


def _params(workdir):
  from tests.train import test_loop

  return test_loop._final_params(workdir)


def test_resumed_mid_epoch_run_is_bit_identical_and_chunks_change_nothing(tmp_path, tfds_dir):
  splits = _splits(tfds_dir)
  # 1,293 training rows in batches of 64: 20 steps an epoch, so the resumed run skips
  # 12 batches of epoch 0 and then crosses into epoch 1.
  # The runs not resumed save once, at their end (28 steps): 21 orbax writes fewer.
  once = dict(checkpoint_every=28)
  res = loop.run(_config(tfds_dir, **once), str(tmp_path / 'full'), _family(), splits)
  assert res['input_pipeline'] == 'stream' and res['train_steps'] == 28
  loop.run(_config(tfds_dir, num_train_steps=12), str(tmp_path / 'resumed'), _family(), splits)
  loop.run(_config(tfds_dir), str(tmp_path / 'resumed'), _family(), splits)
  loop.run(_config(tfds_dir, steps_per_loop=2, **once), str(tmp_path / 'k2'), _family(), splits)
  step, full = _params(tmp_path / 'full')
  assert step == 28
  for other in ('resumed', 'k2'):
    step, got = _params(tmp_path / other)
    assert step == 28
    for x, y in zip(jax.tree.leaves(full), jax.tree.leaves(got)):
      np.testing.assert_array_equal(x, y, err_msg=other)  # bit-identical
  # The in-memory path trains on other batches (batch_at_step's order): other numbers.
  memory = loop.run(
    _config(tfds_dir, input_pipeline='memory', **once),
    str(tmp_path / 'memory'),
    _family(),
    _splits(tfds_dir, 'memory'),
  )
  assert memory['input_pipeline'] == 'memory'
  assert memory['w_sum'] != res['w_sum']


def test_bad_input_settings_are_named(tmp_path, tfds_dir):
  splits = _splits(tfds_dir)
  for field, value, match in (
    ('input_pipeline', 'disk', r"config.input_pipeline must be one of \('auto'"),
    ('shuffle_buffer_size', 0, 'config.shuffle_buffer_size must be a positive integer'),
    ('input_memory_max_bytes', -1, 'config.input_memory_max_bytes must be a non-negative'),
  ):
    with pytest.raises(ValueError, match=match):
      loop.run(_config(tfds_dir, **{field: value}), str(tmp_path / field), _family(), splits)


# The multi-device runs compare final parameters and best steps (validation every 4
# steps): one checkpoint a run, at its end, instead of 6 orbax writes (12 runs).
_ONE_SAVE = dict(num_train_steps=24, checkpoint_every=24)


def _modes(workdir: str, data_dir: str) -> dict:
  out = {'device_count': jax.device_count()}
  splits = _splits(data_dir)
  for mode in ('none', 'pmap', 'sharding'):
    for k in (1, 2):
      name = f'{mode}-{k}'
      res = loop.run(
        _config(data_dir, parallel=mode, steps_per_loop=k, **_ONE_SAVE),
        os.path.join(workdir, name),
        _family(),
        splits,
      )
      _, params = _params(os.path.join(workdir, name))
      out[name] = {'w': np.asarray(params['params']['w']).tolist(), 'best_step': res['best_step']}
  return out


@pytest.fixture(scope='module')
def four_devices(tmp_path_factory, tfds_dir):
  """One process with 4 CPU devices: every mode's run (`_modes`) and the reference of the
  two-process test (`_two_process_worker` without a coordinator), which compiles the same
  programs as the modes' `steps_per_loop=2` runs (one subprocess, not two: ~15 s of CPU
  less from a cold cache)."""
  _splits(tfds_dir)  # prepares digits once, before any worker starts
  workdir = tmp_path_factory.mktemp('stream_four_devices')
  report = multidevice.run_report(__file__, ['four', str(workdir), tfds_dir], NUM_DEVICES)
  return report, workdir


@pytest.mark.slow
def test_every_parallel_mode_trains_the_same_parameters_from_the_stream(four_devices):
  report = dict(four_devices[0]['modes'])
  assert report.pop('device_count') == NUM_DEVICES
  reference = report.pop('none-1')
  assert len(report) == 5
  for name, got in report.items():
    # The same streamed global batches and per-group keys: equal up to summation order.
    np.testing.assert_allclose(got['w'], reference['w'], rtol=1e-5, atol=1e-6, err_msg=name)
    assert got['best_step'] == reference['best_step'], name


class _BothParts:
  """Stands in for `StreamedBatches` in one process: the batches two processes stream,
  concatenated in process order (the global batch of a two-process run)."""

  def __init__(self, source, *, batch_size, seed, process_index, process_count, shuffle_buffer):
    assert (process_index, process_count) == (0, 1)
    from gm_jax.data import stream

    self._parts = [
      stream.StreamedBatches(
        source,
        batch_size=batch_size,
        seed=seed,
        process_index=p,
        process_count=2,
        shuffle_buffer=shuffle_buffer,
      )
      for p in range(2)
    ]

  def iterate(self, start):
    its = [r.iterate(start) for r in self._parts]
    while True:
      a, b = next(its[0]), next(its[1])
      yield {k: np.concatenate([a[k], b[k]]) for k in a}


def _two_process_worker(workdir, data_dir, port=None, process_id=None):
  from gm_jax import parallel

  if port is not None:
    parallel.initialize_distributed(f'127.0.0.1:{port}', 2, int(process_id))
  else:  # the reference: one process, 4 devices, fed the two processes' batches
    gm_data.StreamedBatches = _BothParts
  out = {'process_count': jax.process_count(), 'device_count': jax.device_count()}
  for mode in ('pmap', 'sharding'):
    config = _config(data_dir, parallel=mode, steps_per_loop=2, **_ONE_SAVE)
    res = loop.run(config, os.path.join(workdir, mode), _family(), _splits(data_dir))
    out[mode] = res['best_step']
  return out


@pytest.mark.slow
def test_two_processes_each_stream_their_part_of_the_global_batch(tmp_path, tfds_dir, four_devices):
  """Two processes (2 CPU devices each), each streaming only its own part, train the
  parameters of one process with 4 devices fed both parts' batches side by side (run
  by the `four_devices` fixture)."""
  import socket

  with socket.socket() as sock:
    sock.bind(('127.0.0.1', 0))
    port = sock.getsockname()[1]

  procs = [
    subprocess.Popen(
      [sys.executable, __file__, 'two', str(tmp_path / 'two'), tfds_dir, str(port), str(i)],
      cwd=REPO,
      env=multidevice.env(2),
      stdout=subprocess.PIPE,
      stderr=subprocess.PIPE,
      text=True,
    )
    for i in range(2)
  ]
  outs = []
  for p in procs:
    out, err = p.communicate(timeout=600)
    assert p.returncode == 0, err[-3000:]
    outs.append(json.loads(out.strip().splitlines()[-1]))
  ref = four_devices[0]['one']
  one_dir = four_devices[1] / 'one'
  assert [o['process_count'] for o in outs] == [2, 2] and ref['process_count'] == 1
  assert [o['device_count'] for o in outs] == [4, 4] and ref['device_count'] == NUM_DEVICES
  from tests.parallel import test_multihost

  for mode in ('pmap', 'sharding'):
    assert outs[0][mode] == outs[1][mode] == ref[mode]
    want = test_multihost._final_params(one_dir / mode)
    # Read into the single-process structure (the checkpoint records 4-device shardings).
    got = test_multihost._final_params(tmp_path / 'two' / mode, like=want)
    np.testing.assert_allclose(
      np.asarray(got['params']['w']),
      np.asarray(want['params']['w']),
      rtol=1e-5,
      atol=1e-6,
      err_msg=mode,
    )


def _four_devices(workdir, data_dir):
  modes = _modes(os.path.join(workdir, 'modes'), data_dir)
  # Last: the reference replaces `gm_data.StreamedBatches` for the rest of the process.
  return {'modes': modes, 'one': _two_process_worker(os.path.join(workdir, 'one'), data_dir)}


if __name__ == '__main__':
  if sys.argv[1] == 'two':
    print(json.dumps(_two_process_worker(*sys.argv[2:])))
  else:
    print(json.dumps(_four_devices(*sys.argv[2:])))
