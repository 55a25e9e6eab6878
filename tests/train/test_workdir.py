"""Workdir bookkeeping (#40 parts 1-2): the lock, atomic JSON, results tied to their data,
config.json recorded only under a committed checkpoint. The toy family of test_loop."""

import fcntl
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from gm_jax.train import loop
from gm_jax.train import workdir as workdir_lib
from tests.train.test_loop import _config
from tests.train.test_loop import _toy_family
from tests.train.test_loop import _toy_splits

_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
_HOLD = (
  'import sys, time\nfrom gm_jax.train import workdir\n'
  'workdir.WorkdirLock(sys.argv[1]).acquire()\nprint("held", flush=True)\ntime.sleep(120)\n'
)
_CLI = ('-m', 'gm_jax.main', '--config=configs/vae.py', '--config.num_train_steps=2')


def _python(*args, **kw):
  env = dict(os.environ, PYTHONPATH=_ROOT, JAX_PLATFORMS='cpu')
  env.pop('GM_JAX_VERBOSE', None)
  return subprocess.Popen(
    [sys.executable, *args],
    cwd=_ROOT,
    env=env,
    stdout=subprocess.PIPE,
    stderr=subprocess.STDOUT,
    text=True,
    **kw,
  )


def test_a_second_process_on_a_held_workdir_stops_at_once_naming_the_holder(tmp_path):
  holder = _python('-c', _HOLD, str(tmp_path))
  try:
    assert holder.stdout.readline().strip() == 'held'
    t0 = time.perf_counter()
    second = _python(*_CLI, f'--workdir={tmp_path}')  # the command line, a real run
    out, _ = second.communicate(timeout=120)
    seconds = time.perf_counter() - t0
    assert second.returncode == 2, out
    lines = out.strip().splitlines()
    assert len(lines) == 2 and lines[1] == '(the traceback: --verbose or GM_JAX_VERBOSE=1)', out
    assert lines[0].startswith(
      f'error: workdir {tmp_path} is in use by another run (pid {holder.pid} on '
    ), out
    assert lines[0].endswith(
      'started '
      + json.loads((tmp_path / '.lock').read_text())['started']
      + f': -c {tmp_path}); wait for it to finish or stop it, or use another --workdir.'
    ), out
    assert not (tmp_path / 'checkpoints').exists() and not (tmp_path / 'metrics.jsonl').exists()
    print(f'second run refused after {seconds:.1f} s (process start and imports included)')
  finally:
    holder.send_signal(signal.SIGKILL)
    holder.wait()
  # The kernel released the killed holder's lock: the workdir is usable at once.
  with workdir_lib.WorkdirLock(str(tmp_path)):
    assert json.loads((tmp_path / '.lock').read_text())['pid'] == os.getpid()


def test_run_refuses_a_locked_workdir_and_releases_its_own_lock(tmp_path):
  other = os.open(tmp_path / '.lock', os.O_RDWR | os.O_CREAT)  # as another process's lock
  fcntl.flock(other, fcntl.LOCK_EX)
  try:
    with pytest.raises(workdir_lib.WorkdirLockedError, match=f'{tmp_path} is in use'):
      loop.run(_config(num_train_steps=4), str(tmp_path), _toy_family(), _toy_splits())
    assert not (tmp_path / 'checkpoints').exists()
  finally:
    os.close(other)
  with workdir_lib.WorkdirLock(str(tmp_path)):  # taken by the CLI: loop.run nests in it
    loop.run(_config(num_train_steps=4), str(tmp_path), _toy_family(), _toy_splits())
  other = os.open(tmp_path / '.lock', os.O_RDWR)
  fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)  # released: no BlockingIOError
  os.close(other)


def test_eval_json_names_its_data_and_other_data_keeps_the_old_result(tmp_path, capsys):
  splits = _toy_splits()
  loop.run(_config(), str(tmp_path), _toy_family(), splits)
  first = json.loads((tmp_path / 'eval.json').read_text())
  assert (first['train_examples'], first['validation_examples'], first['test_examples']) == (
    64,
    16,
    16,
  )
  assert first['dataset'] == 'toy' and first['data_dir'] is None
  assert first['data_fingerprint'] == workdir_lib.fingerprint(
    {'train': splits.train, 'validation': splits.validation, 'test': splits.test}
  )
  # The same data again: eval.json is rewritten, nothing set aside.
  loop.run(_config(), str(tmp_path), _toy_family(), _toy_splits())
  assert sorted(f for f in os.listdir(tmp_path) if f.startswith('eval')) == ['eval.json']
  # One changed value in the test split: a new fingerprint, the old result kept.
  other = _toy_splits()
  other.test['x'][3, 1] += 1.0
  loop.run(_config(), str(tmp_path), _toy_family(), other)
  assert json.loads((tmp_path / 'eval.12.json').read_text()) == first
  new = json.loads((tmp_path / 'eval.json').read_text())
  assert new['data_fingerprint'] != first['data_fingerprint']
  assert 'kept as' in capsys.readouterr().out


def test_a_failed_eval_json_write_leaves_the_old_file_whole(tmp_path, monkeypatch):
  loop.run(_config(), str(tmp_path), _toy_family(), _toy_splits())
  before = (tmp_path / 'eval.json').read_text()
  real_dump = json.dump

  def dies_half_way(obj, f, **kw):
    f.write(json.dumps(obj, **kw)[:20])
    raise OSError(28, 'No space left on device')

  monkeypatch.setattr(json, 'dump', dies_half_way)
  with pytest.raises(OSError, match='No space'):
    loop.run(_config(), str(tmp_path), _toy_family(), _toy_splits())
  monkeypatch.setattr(json, 'dump', real_dump)
  assert (tmp_path / 'eval.json').read_text() == before
  assert not [f for f in os.listdir(tmp_path) if '.tmp.' in f]


def test_config_json_waits_for_a_checkpoint_under_the_new_config(tmp_path):
  loop.run(
    _config(num_train_steps=8, lr_schedule='constant'), str(tmp_path), _toy_family(), _toy_splits()
  )
  saved = (tmp_path / 'config.json').read_text()
  # A resumed run under a changed config whose first steps diverge: nothing is
  # checkpointed under it, so config.json still describes the checkpoints.
  with pytest.raises(loop.NonFiniteLossError):
    loop.run(
      _config(
        num_train_steps=12, lr_schedule='constant', learning_rate=1e30, allow_resume_changes=True
      ),
      str(tmp_path),
      _toy_family(),
      _toy_splits(),
    )
  assert (tmp_path / 'config.json').read_text() == saved
  # The original command still resumes; a changed config that checkpoints is recorded.
  loop.run(
    _config(num_train_steps=8, lr_schedule='constant'), str(tmp_path), _toy_family(), _toy_splits()
  )
  loop.run(
    _config(
      num_train_steps=12, lr_schedule='constant', learning_rate=0.01, allow_resume_changes=True
    ),
    str(tmp_path),
    _toy_family(),
    _toy_splits(),
  )
  assert json.loads((tmp_path / 'config.json').read_text())['learning_rate'] == 0.01
  np.testing.assert_equal(sorted(os.listdir(tmp_path / 'checkpoints')), ['12', '4', '8'])
