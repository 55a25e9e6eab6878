"""Ways of breaking a run, tried as a new user would (#40); prints how many kept everything intact.

    PYTHONPATH=. python benchmarks/reliability.py [--only SUBSTRING] [--keep DIR]

Each probe breaks something (two runs on one workdir, a kill mid-run, a cut metrics line,
bad data, a full disk, frequent saves under a tiny `max_to_keep`, a diverging resume, a
mistyped config field, a shadowing folder, misshapen loss inputs) and checks that
nothing already on disk was lost or misattributed and that the error names the
problem. Most probes train the tiny linear-regression family of tests/train/test_loop.py
for a few steps (seconds each); the command-line probes run `python -m gm_jax.main` on
configs/vae.py but stop before training. The full-disk probe mounts a 300 KiB tmpfs
where it may (root on Linux) and otherwise patches the checkpoint writer. One line per
probe, then `N of M probes kept everything intact`.

Not probed (left to the data-pipeline split of #40 part 3): a tfds dataset that is not
prepared, with no network, must fail at once instead of retrying its download.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import fcntl
import io
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import jax.numpy as jnp

from gm_jax import data as gm_data
from gm_jax import losses
from gm_jax.data import exported
from gm_jax.train import checkpoint as ckpt_lib
from gm_jax.train import loop
from gm_jax.train import run_config
from gm_jax.train import workdir as workdir_lib
from tests.train.test_loop import _config
from tests.train.test_loop import _final_params
from tests.train.test_loop import _toy_family
from tests.train.test_loop import _toy_splits

PROBES = []


def probe(fn):
  PROBES.append(fn)
  return fn


class Broken(AssertionError):
  pass


def need(cond, what):
  if not cond:
    raise Broken(what)


def _env():
  env = dict(os.environ, PYTHONPATH=ROOT, JAX_PLATFORMS='cpu')
  env.pop('GM_JAX_VERBOSE', None)
  return env


def _cli(workdir, *args, env=None):
  return subprocess.run(
    [sys.executable, '-m', 'gm_jax.main', '--config=configs/vae.py', f'--workdir={workdir}', *args],
    cwd=ROOT,
    env=env or _env(),
    capture_output=True,
    text=True,
    timeout=600,
  )


def _run(workdir, splits=None, **overrides):
  with contextlib.redirect_stdout(io.StringIO()) as out:
    loop.run(_config(**overrides), str(workdir), _toy_family(), splits or _toy_splits())
  return out.getvalue()


def _records(workdir):
  with open(os.path.join(workdir, 'metrics.jsonl')) as f:
    text = f.read()
  need(text.endswith('\n'), 'metrics.jsonl ends in a cut line')
  return [{k: v for k, v in json.loads(l).items() if k != 'steps_per_s'} for l in text.splitlines()]


def _same_params(a, b):
  sa, pa = _final_params(a)
  sb, pb = _final_params(b)
  need(sa == sb, f'final steps differ: {sa} vs {sb}')
  for x, y in zip(jax_leaves(pa), jax_leaves(pb)):
    need(np.array_equal(x, y), 'final parameters differ')


def jax_leaves(tree):
  import jax

  return jax.tree.leaves(tree)


def _two_line_error(out, start):
  lines = out.stderr.strip().splitlines()
  need(out.returncode == 2, f'exit code {out.returncode}, not 2: {out.stderr[-300:]}')
  need(len(lines) == 2, f'{len(lines)} lines of error output, not 2')
  need(lines[0].startswith(start), f'first line: {lines[0][:160]}')
  return lines[0]


# ---------------------------------------------------------------------------- workdir


@probe
def second_run_on_a_held_workdir(tmp):
  holder = subprocess.Popen(
    [
      sys.executable,
      '-c',
      'import sys, time\nfrom gm_jax.train import workdir\n'
      'workdir.WorkdirLock(sys.argv[1]).acquire()\nprint("held", flush=True)\n'
      'time.sleep(300)',
      tmp,
    ],
    cwd=ROOT,
    env=_env(),
    stdout=subprocess.PIPE,
    text=True,
  )
  try:
    need(holder.stdout.readline().strip() == 'held', 'the holder did not start')
    t0 = time.perf_counter()
    out = _cli(tmp, '--config.num_train_steps=2')
    seconds = time.perf_counter() - t0
    line = _two_line_error(out, f'error: workdir {tmp} is in use by another run (pid {holder.pid}')
    need(not os.path.exists(os.path.join(tmp, 'checkpoints')), 'the second run wrote')
  finally:
    holder.kill()
    holder.wait()
  with workdir_lib.WorkdirLock(tmp):  # a killed holder leaves no stale lock
    pass
  return f'refused in {seconds:.1f} s: {line[:90]}...'


@probe
def second_run_in_process_while_one_trains(tmp):
  other = os.open(os.path.join(tmp, '.lock'), os.O_RDWR | os.O_CREAT)
  fcntl.flock(other, fcntl.LOCK_EX)
  try:
    _run(tmp)
    raise Broken('a run started on a held workdir')
  except workdir_lib.WorkdirLockedError as e:
    return str(e)[:80]
  finally:
    os.close(other)


@probe
def kill_mid_run_and_resume(tmp):
  _run(os.path.join(tmp, 'full'))
  code = (
    'import os, sys\nfrom gm_jax import data\nfrom gm_jax.train import loop\n'
    'from tests.train.test_loop import _config, _toy_family, _toy_splits\n'
    'real = data.batch_at_step\n'
    'def slow(a, step, **kw):\n  if step == 9:\n    os.kill(os.getpid(), 9)\n'
    '  return real(a, step, **kw)\n'
    'data.batch_at_step = slow\n'
    'loop.run(_config(), sys.argv[1], _toy_family(), _toy_splits())\n'
  )
  killed = os.path.join(tmp, 'killed')
  out = subprocess.run(
    [sys.executable, '-c', code, killed],
    cwd=ROOT,
    env=_env(),
    capture_output=True,
    text=True,
    timeout=600,
  )
  need(out.returncode == -signal.SIGKILL, f'not killed: {out.returncode}')
  _run(killed)
  _same_params(os.path.join(tmp, 'full'), killed)
  need(_records(killed) == _records(os.path.join(tmp, 'full')), 'metrics.jsonl differs')
  return 'SIGKILL at step 9: parameters and metrics.jsonl equal an uninterrupted run'


@probe
def corrupt_newest_checkpoint(tmp):
  _run(tmp, num_train_steps=8, lr_schedule='constant')
  for root, _, files in os.walk(os.path.join(tmp, 'checkpoints', '8')):
    for f in files:
      with open(os.path.join(root, f), 'wb') as fh:
        fh.write(b'garbage')
  out = _run(tmp, num_train_steps=8, lr_schedule='constant')
  need('Resuming toy from' in out and '/checkpoints/4 ' in out, 'no fallback to 4')
  need(os.listdir(os.path.join(tmp, 'corrupt_checkpoints')), 'the corrupt one was deleted')
  return 'fell back to 4, the corrupt 8 moved aside'


@probe
def nan_loss_keeps_the_last_good_checkpoint(tmp):
  splits = _toy_splits()
  splits.train['x'][:] = np.nan
  try:
    _run(tmp, splits=splits)
    raise Broken('trained on NaN')
  except loop.NonFiniteLossError as e:
    return str(e)[:80]


@probe
def resume_under_another_seed_is_refused(tmp):
  _run(tmp, num_train_steps=8)
  before = open(os.path.join(tmp, 'config.json')).read()
  try:
    _run(tmp, num_train_steps=8, seed=4)
    raise Broken('resumed under another seed')
  except run_config.ResumeConfigError:
    pass
  need(open(os.path.join(tmp, 'config.json')).read() == before, 'config.json changed')
  _run(tmp, num_train_steps=8)  # the original command still runs
  return 'refused; config.json unchanged; the original command resumes'


@probe
def diverging_resume_does_not_rewrite_config_json(tmp):
  _run(tmp, num_train_steps=8, lr_schedule='constant')
  before = open(os.path.join(tmp, 'config.json')).read()
  try:
    _run(
      tmp, num_train_steps=12, lr_schedule='constant', learning_rate=1e30, allow_resume_changes=True
    )
    raise Broken('a learning rate of 1e30 trained')
  except loop.NonFiniteLossError:
    pass
  need(open(os.path.join(tmp, 'config.json')).read() == before, 'config.json rewritten')
  _run(tmp, num_train_steps=8, lr_schedule='constant')
  return 'config.json unchanged; the original command resumes'


@probe
def rerun_of_a_finished_workdir_on_other_data(tmp):
  _run(tmp)
  first = json.load(open(os.path.join(tmp, 'eval.json')))
  other = _toy_splits()
  other.test['x'] = other.test['x'] * 100
  out = _run(tmp, splits=other)
  need(json.load(open(os.path.join(tmp, 'eval.12.json'))) == first, 'the old result is lost')
  need('kept as' in out, 'nothing said')
  new = json.load(open(os.path.join(tmp, 'eval.json')))
  need(new['data_fingerprint'] != first['data_fingerprint'], 'same fingerprint')
  return 'old eval.json kept as eval.12.json, and said'


@probe
def eval_json_write_interrupted(tmp):
  _run(tmp)
  before = open(os.path.join(tmp, 'eval.json')).read()
  real = json.dump

  def dies(obj, f, **kw):
    f.write(json.dumps(obj, **kw)[:10])
    raise OSError(errno.ENOSPC, 'No space left on device')

  json.dump = dies
  try:
    _run(tmp)
  except OSError:
    pass
  finally:
    json.dump = real
  need(open(os.path.join(tmp, 'eval.json')).read() == before, 'eval.json half-written')
  return 'eval.json unchanged'


@probe
def cut_metrics_line_on_resume(tmp):
  _run(tmp, num_train_steps=8, lr_schedule='constant')
  with open(os.path.join(tmp, 'metrics.jsonl'), 'a') as f:
    f.write('{"step": 10, "lo')
  out = _run(tmp, num_train_steps=12, lr_schedule='constant')
  need('cut by a kill' in out, 'nothing said')
  need([r['step'] for r in _records(tmp) if 'loss' in r] == [2, 4, 6, 8, 10, 12], 'records')
  return 'dropped and said'


@probe
def first_record_after_a_resume(tmp):
  _run(os.path.join(tmp, 'full'), checkpoint_every=6, log_every=4, eval_every=6)
  real = gm_data.batch_at_step

  def killed(arrays, step, **kw):
    if step == 11:
      raise KeyboardInterrupt
    return real(arrays, step, **kw)

  gm_data.batch_at_step = killed
  try:
    _run(os.path.join(tmp, 'k'), checkpoint_every=6, log_every=4, eval_every=6)
  except KeyboardInterrupt:
    pass
  finally:
    gm_data.batch_at_step = real
  _run(os.path.join(tmp, 'k'), checkpoint_every=6, log_every=4, eval_every=6)
  need(_records(os.path.join(tmp, 'k')) == _records(os.path.join(tmp, 'full')), 'differs')
  return 'metrics.jsonl equals the uninterrupted run (checkpoints every 6, logs every 4)'


@probe
def only_a_half_written_checkpoint(tmp):
  os.makedirs(os.path.join(tmp, 'checkpoints', '4.orbax-checkpoint-tmp-1'))
  out = _run(tmp, num_train_steps=4)
  need('starting afresh' in out, 'nothing said')
  return out.strip().splitlines()[0][-60:]


# ----------------------------------------------------------------- checkpoints, disk


@probe
def frequent_async_saves_max_to_keep_1(tmp):
  return _frequent_saves(tmp, 1)


@probe
def frequent_async_saves_max_to_keep_2(tmp):
  return _frequent_saves(tmp, 2)


def _frequent_saves(tmp, keep):
  messages = []
  handler = logging.Handler()
  handler.emit = lambda r: messages.append(r.getMessage())
  logging.getLogger('absl').addHandler(handler)
  try:
    for attempt in range(5):
      _run(
        os.path.join(tmp, str(attempt)),
        num_train_steps=40,
        checkpoint_every=1,
        log_every=1,
        eval_every=20,
        max_to_keep=keep,
      )
  finally:
    logging.getLogger('absl').removeHandler(handler)
  need(not [m for m in messages if 'for deletion' in m], 'orbax deletion warnings')
  left = sorted(map(int, os.listdir(os.path.join(tmp, '4', 'checkpoints'))))
  need(left == list(range(41 - keep, 41)), f'checkpoints left: {left}')
  return f'5 runs x 40 async saves: no error, no warning, {left} kept'


@probe
def disk_full_during_a_save(tmp):
  target = os.path.join(tmp, 'full')
  os.makedirs(target)
  mounted = (
    subprocess.run(
      ['mount', '-t', 'tmpfs', '-o', 'size=300k', 'tmpfs', target], capture_output=True
    ).returncode
    == 0
  )
  try:
    if not mounted:
      return _disk_full_patched(target)
    try:
      _run(
        os.path.join(target, 'w'),
        num_train_steps=400,
        checkpoint_every=2,
        log_every=2,
        eval_every=2,
        max_to_keep=1000,
        lr_schedule='constant',
      )
      raise Broken('a full disk went unnoticed')
    except ckpt_lib.CheckpointSaveError as e:
      message = str(e)
    need('no space left on device' in message, message)
    intact = message.split('intact checkpoints: ')[1].split(' (')[0]
    reader = ckpt_lib.Checkpointer(os.path.join(target, 'w', 'checkpoints'), max_to_keep=None)
    for step in intact.split(', '):
      reader.read(int(step))
    reader.close()
    return f'tmpfs 300 KiB: {message[:70]}... (intact {intact}: each read back)'
  finally:
    if mounted:
      subprocess.run(['umount', target], check=False)


def _disk_full_patched(tmp):
  ck = ckpt_lib.Checkpointer(tmp, max_to_keep=5, asynchronous=True)
  ck.save(1, {'w': np.zeros(2, np.float32)})
  ck.wait()

  def full(step, args):
    raise OSError(errno.ENOSPC, 'No space left on device')

  ck._manager.save = full
  try:
    ck.save(2, {'w': np.zeros(2, np.float32)})
    raise Broken('a full disk went unnoticed')
  except ckpt_lib.CheckpointSaveError as e:
    need('checkpoint 2' in str(e) and 'intact checkpoints: 1' in str(e), str(e))
    return f'patched writer (no tmpfs): {str(e)[:70]}'
  finally:
    ck.close()


# ------------------------------------------------------------------------------ data


def _bad_export(tmp, change):
  rng = np.random.default_rng(0)
  arrays = {
    'image': rng.integers(0, 17, (5, 8, 8, 1), dtype=np.uint8),
    'label': rng.integers(0, 10, 5).astype(np.int32),
  }
  exported.write(
    exported.exported_path('digits', tmp), 'digits', {'train': change(arrays), 'test': arrays}
  )
  try:
    gm_data.load_split('digits', 'train', data_dir=tmp)
    raise Broken('read without a word')
  except ValueError as e:
    need(exported.exported_path('digits', tmp) in str(e), f'no file named: {e}')
    return str(e)[len(tmp) :][:90]


@probe
def exported_pixels_outside_the_levels(tmp):
  return _bad_export(
    tmp, lambda a: dict(a, image=(a['image'].astype(np.int32) * 15).astype(np.uint8))
  )


@probe
def exported_pixels_of_another_dtype(tmp):
  return _bad_export(tmp, lambda a: dict(a, image=a['image'].astype(np.float32) / 16))


@probe
def exported_labels_outside_the_classes(tmp):
  return _bad_export(tmp, lambda a: dict(a, label=a['label'] + 10))


# ---------------------------------------------------------------------- command line


@probe
def unknown_config_field(tmp):
  out = _cli(tmp, '--config.num_trian_steps=3')
  return _two_line_error(out, 'error: unknown config field --config.num_trian_steps')[:90]


@probe
def bad_config_value(tmp):
  out = _cli(tmp, '--config.batch_size=0')
  return _two_line_error(out, 'error: config.batch_size must be a positive integer')


@probe
def bad_config_value_verbose(tmp):
  out = _cli(tmp, '--config.batch_size=0', env=dict(_env(), GM_JAX_VERBOSE='1'))
  need('Traceback' in out.stderr, 'no traceback under GM_JAX_VERBOSE=1')
  return 'traceback shown'


@probe
def config_from_another_folder_does_not_shadow(tmp):
  os.makedirs(os.path.join(tmp, 'configs'))
  shutil.copy(os.path.join(ROOT, 'configs', 'common.py'), os.path.join(tmp, 'configs'))
  shutil.copy(os.path.join(ROOT, 'configs', 'vae.py'), os.path.join(tmp, 'configs'))
  with open(os.path.join(tmp, 'optax.py'), 'w') as f:
    f.write('raise ImportError("shadowed")\n')
  elsewhere = os.path.join(tmp, 'elsewhere')  # the command runs outside that folder
  os.makedirs(elsewhere)
  out = subprocess.run(
    [
      sys.executable,
      '-m',
      'gm_jax.main',
      f'--config={tmp}/configs/vae.py',
      f'--workdir={tmp}/w',
      '--config.batch_size=0',
    ],
    cwd=elsewhere,
    env=_env(),
    capture_output=True,
    text=True,
    timeout=600,
  )
  return _two_line_error(out, 'error: config.batch_size')[:60] + ' (optax not shadowed)'


# ---------------------------------------------------------------------------- losses


def _raises(fn, match):
  try:
    fn()
  except ValueError as e:
    need(match in str(e), f'error names no {match!r}: {e}')
    return str(e)[:90]
  raise Broken('no error')


@probe
def elbo_of_b_and_b1(tmp):
  return _raises(lambda: losses.elbo(jnp.zeros(4), jnp.zeros((4, 1))), 'kl')


@probe
def elbo_of_8_and_4(tmp):
  return _raises(lambda: losses.elbo(jnp.zeros(8), jnp.zeros(4)), 'kl')


@probe
def gaussian_kl_of_b_and_b1(tmp):
  return _raises(lambda: losses.gaussian_kl(jnp.zeros(4), jnp.zeros((4, 1))), 'log_var')


@probe
def categorical_label_out_of_range(tmp):
  return _raises(
    lambda: losses.categorical_log_prob(jnp.zeros((2, 3)), jnp.array([0, 3])), 'label 3'
  )


@probe
def categorical_label_negative(tmp):
  return _raises(
    lambda: losses.categorical_log_prob(jnp.zeros((2, 3)), jnp.array([-1, 0])), 'label -1'
  )


@probe
def iwae_bound_with_k_0(tmp):
  return _raises(lambda: losses.iwae_bound(*[jnp.zeros((0, 4))] * 3), 'K = 0')


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--only', default='', help='run the probes whose name contains this')
  parser.add_argument('--keep', default=None, help="keep the probes' workdirs here")
  args = parser.parse_args()
  base = args.keep or tempfile.mkdtemp(prefix='gm_jax_reliability_')
  chosen = [p for p in PROBES if args.only in p.__name__]
  intact = 0
  for fn in chosen:
    tmp = os.path.join(base, fn.__name__)
    os.makedirs(tmp, exist_ok=True)
    t0 = time.perf_counter()
    try:
      detail, ok = fn(tmp), True
    except Exception as e:
      detail, ok = f'{type(e).__name__}: {e}'[:300], False
    intact += ok
    print(
      f'{"ok  " if ok else "FAIL"} {fn.__name__} ({time.perf_counter() - t0:.1f} s): {detail}',
      flush=True,
    )
  print(f'{intact} of {len(chosen)} probes kept everything intact.')
  if not args.keep:
    shutil.rmtree(base, ignore_errors=True)
  return 0 if intact == len(chosen) else 1


if __name__ == '__main__':
  sys.exit(main())
