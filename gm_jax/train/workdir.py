"""Workdir bookkeeping: one run at a time, atomic JSON files, results tied to their data.

- `WorkdirLock`: a run holds an exclusive OS file lock (`fcntl.flock`) on
  `workdir/.lock` while it trains; a second run on the same workdir fails at once with
  `WorkdirLockedError`, one line naming the workdir and the holder (pid, host, command
  and start time, which the holder writes into the lock file). The kernel releases the
  lock when the holding process dies, however it dies, so a killed run never leaves a
  stale lock behind (the file stays; only the lock matters).
- `write_json`: every JSON file the trainer writes (`eval.json`, `config.json`) goes
  through a temporary file in the same folder and `os.replace`, so a reader (or a kill)
  sees the old file or the new one, never half of one.
- `data_record`: what `eval.json` says about the data it measured (`data_dir`, the
  split sizes, `data_fingerprint` of the arrays; `dataset` is there already);
  `keep_other_data_eval` renames a finished run's `eval.json` to `eval.<step>.json`
  before a run on other data replaces it.
"""

from __future__ import annotations

from collections.abc import Mapping
import errno
import fcntl
import hashlib
import json
import os
import socket
import sys
import time
from typing import Any

from absl import logging
import jax
import numpy as np

from gm_jax.train import metrics as metrics_lib

LOCK_FILENAME = '.lock'
EVAL_FILENAME = 'eval.json'


class WorkdirLockedError(RuntimeError):
  """Another live process holds the workdir's lock."""


# Locks this process holds, by lock-file path: taking one again (the CLI locks before it
# loads the data, `loop.run` after) nests instead of conflicting with itself.
_HELD: dict[str, list] = {}


def write_json(path: str, obj: Any) -> None:
  """Writes `obj` as JSON to `path` atomically (a temporary file, fsynced, renamed).

  Raises:
    OSError: the folder is not writable or the disk is full; `path` is then unchanged
      and the temporary file removed.
  """
  tmp = f'{path}.tmp.{os.getpid()}'
  try:
    with open(tmp, 'w') as f:
      json.dump(obj, f, indent=2, sort_keys=True)
      f.flush()
      os.fsync(f.fileno())
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.remove(tmp)
    raise


def read_json(path: str) -> Any | None:
  """`path`'s JSON, or None where it is missing or unreadable."""
  try:
    with open(path) as f:
      return json.load(f)
  except (OSError, ValueError):
    return None


class WorkdirLock:
  """An exclusive lock on `workdir` for the life of a run (a context manager).

  Args:
    workdir: the run's folder (created if missing).
    enabled: False makes it a no-op (the non-primary processes of a multi-host run,
      which share the primary's workdir).
  """

  def __init__(self, workdir: str, *, enabled: bool = True):
    self.workdir = os.path.abspath(workdir)
    self.path = os.path.join(self.workdir, LOCK_FILENAME)
    self._enabled = enabled
    self._fd: int | None = None

  def acquire(self) -> WorkdirLock:
    """Takes the lock or raises `WorkdirLockedError` at once (it never waits)."""
    if not self._enabled or self._fd is not None:
      return self
    if self.path in _HELD:
      _HELD[self.path][1] += 1
      self._fd = _HELD[self.path][0]
      return self
    try:
      os.makedirs(self.workdir, exist_ok=True)
    except OSError as e:
      raise OSError(e.errno, f'cannot create workdir {self.workdir!r}: {e.strerror}') from e
    fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
      fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
      os.close(fd)
      if e.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
        raise
      raise WorkdirLockedError(
        f'workdir {self.workdir} is in use by another run ({_describe(self.path)}); '
        'wait for it to finish or stop it, or use another --workdir.'
      ) from None
    holder = {
      'pid': os.getpid(),
      'host': socket.gethostname(),
      'command': ' '.join(sys.argv),
      'started': time.strftime('%Y-%m-%dT%H:%M:%S%z'),
    }
    # Written in place: the lock belongs to this inode, so it must not be replaced.
    os.ftruncate(fd, 0)
    os.pwrite(fd, (json.dumps(holder) + '\n').encode(), 0)
    self._fd = fd
    _HELD[self.path] = [fd, 1]
    return self

  def release(self) -> None:
    if self._fd is None:
      return
    self._fd = None
    held = _HELD[self.path]
    held[1] -= 1
    if held[1] == 0:
      del _HELD[self.path]
      fcntl.flock(held[0], fcntl.LOCK_UN)
      os.close(held[0])

  def __enter__(self) -> WorkdirLock:
    return self.acquire()

  def __exit__(self, *exc) -> None:
    self.release()


def _describe(lock_path: str) -> str:
  """The holder recorded in a lock file, in words."""
  holder = read_json(lock_path)
  if not isinstance(holder, dict):
    return 'its details are not recorded yet'
  return (
    f'pid {holder.get("pid")} on {holder.get("host")}, started '
    f'{holder.get("started")}: {holder.get("command")}'
  )


# ---------------------------------------------------------------------------------------
# Which data a result measured.


def fingerprint(splits: Mapping[str, Mapping[str, Any] | None]) -> str:
  """A BLAKE2b digest of every array of every split (names, dtypes, shapes, bytes)."""
  h = hashlib.blake2b(digest_size=16)
  for split in sorted(splits):
    arrays = splits[split] or {}
    for name in sorted(arrays):
      a = np.ascontiguousarray(np.asarray(arrays[name]))
      h.update(f'{split}/{name}:{a.dtype.str}:{a.shape};'.encode())
      h.update(a.data)
  return h.hexdigest()


def data_record(config, splits) -> dict:
  """`eval.json`'s record of the data it measured, flat (every value a scalar).

  `data_dir` (absolute, or None), `train_examples`, `validation_examples`,
  `test_examples` and `data_fingerprint` (`fingerprint` of the arrays); `eval.json`
  has `dataset` already. A streamed training split is counted but not hashed (it is
  never all in memory); the resident arrays (its sample, validation and test) are.
  """
  arrays = {'train': splits.train, 'validation': splits.validation, 'test': splits.test}
  record: dict[str, Any] = {
    f'{k}_examples': (len(next(iter(v.values()))) if v else 0) for k, v in arrays.items()
  }
  if splits.train_stream is not None:
    record['train_examples'] = int(splits.train_stream.num_examples)
  data_dir = config.data_dir
  record['data_dir'] = os.path.abspath(data_dir) if data_dir else None
  record['data_fingerprint'] = fingerprint(arrays)
  return record


def keep_other_data_eval(workdir: str, fingerprint_now: str) -> str | None:
  """Renames `workdir/eval.json` to `eval.<step>.json` unless it measured the data of
  `fingerprint_now` (its `data_fingerprint`).

  An `eval.json` that names no data (written before it was recorded) counts as other
  data: it is kept, not overwritten. Returns the new path, or None where nothing moved.
  """
  path = os.path.join(workdir, EVAL_FILENAME)
  old = read_json(path)
  if not os.path.exists(path):
    return None
  if isinstance(old, dict) and old.get('data_fingerprint') == fingerprint_now:
    return None
  step = old.get('train_steps', 'unknown') if isinstance(old, dict) else 'unreadable'
  dst = os.path.join(workdir, f'eval.{step}.json')
  n = 1
  while os.path.exists(dst):
    n += 1
    dst = os.path.join(workdir, f'eval.{step}.{n}.json')
  os.replace(path, dst)
  return dst


def previous_result(workdir: str, key: str) -> Any | None:
  """`key` of an existing `eval.json` (a resumed run that trained no step), else None."""
  old = read_json(os.path.join(workdir, EVAL_FILENAME))
  return old.get(key) if isinstance(old, dict) else None


# ---------------------------------------------------------------------------------------
# Pictures written next to the results.


def save_samples(family, params, key, workdir: str, info, config) -> dict:
  """Draws a grid of samples into `workdir/samples.png`, timing a second (compiled)
  draw for samples/s."""
  from gm_jax.evaluate import images

  num = int(config.num_samples)
  samples = np.asarray(family.sample(params, key, num))  # includes compilation
  t0 = time.perf_counter()
  again = np.asarray(family.sample(params, jax.random.fold_in(key, 1), num))
  seconds = time.perf_counter() - t0
  del again
  if jax.process_index() == 0:
    images.save_image_grid(
      samples, os.path.join(workdir, 'samples.png'), num_levels=info.num_levels
    )
  return {'samples_per_s': num / seconds if seconds > 0 else None}


def without_plots_if_absent(fn, *args):
  """`fn(*args)`; without matplotlib (the `[plots]` extra) its figures are skipped, said in
  `eval.json` (`pictures_skipped`) and the log, and nothing else is lost."""
  try:
    return fn(*args)
  except ImportError as e:
    if 'gm_jax[plots]' not in str(e):
      raise
    logging.warning('%s', e)
    return {'pictures_skipped': str(e)}


def plot_losses(workdir: str, model: str) -> None:
  from gm_jax.evaluate import plots

  records = metrics_lib.read_metrics(workdir)
  keys = ['loss'] + sorted({k for r in records for k in r if k.startswith('val_')})[:2]
  if records:
    plots.plot_loss_curves(records, os.path.join(workdir, 'loss.png'), keys=keys, title=model)
