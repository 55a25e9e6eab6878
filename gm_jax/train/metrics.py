"""Metric writers: `metrics.jsonl` (one JSON object per logged step) and TensorBoard.

A resumed run first trims `metrics.jsonl` back to its checkpoint (`resume_step`): a
last line cut by a kill and the records logged after the checkpoint (steps the resumed
run trains again) are dropped, and said, so the file ends as an uninterrupted run's.
"""

from __future__ import annotations

from collections.abc import Mapping
import json
import math
import os
from typing import Any

import numpy as np


def _to_python(value: Any) -> Any:
  value = np.asarray(value)
  if value.ndim == 0:
    item = value.item()
    if isinstance(item, float) and not math.isfinite(item):
      return str(item)  # JSON has no NaN/inf; keep them visible as strings.
    return item
  return value.tolist()


def _summary_writer_class():
  """tensorboardX's `SummaryWriter`, imported without torch where torch is not loaded yet.

  tensorboardX imports torch at import time when it is installed, only to accept torch
  tensors as values; the trainer writes floats, and that import was ~1.5 s of CPU at the
  start of every run (measured: `from tensorboardX import SummaryWriter` 1.5-2.0 s with
  torch 2.13 installed, 0.15 s without). `import torch` fails for the duration of this one
  import (then `sys.modules` is as before, and torch imports normally later).
  """
  import sys

  if 'tensorboardX' in sys.modules or 'torch' in sys.modules:
    from tensorboardX import SummaryWriter

    return SummaryWriter
  sys.modules['torch'] = None
  try:
    from tensorboardX import SummaryWriter
  finally:
    if sys.modules.get('torch', 0) is None:
      del sys.modules['torch']
  return SummaryWriter


class MetricWriter:
  """Appends scalars to `workdir/metrics.jsonl` and TensorBoard event files.

  Only the primary process writes (`enabled=False` makes every call a no-op).
  """

  def __init__(self, workdir: str, *, enabled: bool = True, resume_step: int | None = None):
    self._enabled = enabled
    self._path = os.path.join(workdir, 'metrics.jsonl')
    self._tb = None
    if enabled:
      trim(self._path, resume_step or 0)
      try:
        self._tb = _summary_writer_class()(logdir=workdir, flush_secs=30)
      except ImportError:  # pragma: no cover - tensorboardX is a dependency.
        self._tb = None

  def write(self, step: int, scalars: Mapping[str, Any], *, prefix: str = '') -> None:
    if not self._enabled:
      return
    record = {'step': int(step)}
    record.update({prefix + k: _to_python(v) for k, v in scalars.items()})
    with open(self._path, 'a') as f:
      f.write(json.dumps(record) + '\n')
    if self._tb is not None:
      for k, v in scalars.items():
        v = np.asarray(v)
        if v.ndim == 0:
          self._tb.add_scalar(prefix + k, float(v), int(step))

  def close(self) -> None:
    """Flushes and closes the TensorBoard files; where that fails (a full disk), says so
    in one line and abandons them rather than hide the error that stopped the run."""
    if self._tb is None:
      return
    tb, self._tb = self._tb, None
    try:
      tb.flush()
      tb.close()
    except OSError as e:
      print(
        f'WARNING: TensorBoard events in {os.path.dirname(self._path)} not flushed: {e}', flush=True
      )
      for file_writer in getattr(tb, 'all_writers', {}).values():
        # Without this, tensorboardX's atexit hook retries the flush and prints tracebacks.
        events = getattr(file_writer, 'event_writer', None)
        if events is not None:
          events._closed = True


def trim(path: str, last_step: int) -> None:
  """Drops a cut last line and the records after `last_step` from `path` (atomically)."""
  try:
    with open(path, 'rb') as f:
      data = f.read()
  except FileNotFoundError:
    return
  lines = data.split(b'\n')
  cut = lines.pop()  # b'' when the file ends with a newline
  kept, later = [], 0
  for line in lines:
    try:
      step = json.loads(line)['step']
    except (ValueError, KeyError, TypeError):
      step = None  # an unreadable line in the middle: kept as it is
    if step is not None and step > last_step:
      later += 1
    else:
      kept.append(line + b'\n')
  if not cut and not later:
    return
  tmp = f'{path}.tmp.{os.getpid()}'
  with open(tmp, 'wb') as f:
    f.write(b''.join(kept))
  os.replace(tmp, path)
  said = []
  if cut:
    said.append(f'a last line cut by a kill ({len(cut)} bytes)')
  if later:
    said.append(f'{later} record(s) after step {last_step}, which this run trains again')
  print(f'{path}: dropped ' + ' and '.join(said) + '.', flush=True)


def read_metrics(workdir: str, *, keys: list[str] | None = None) -> list[dict]:
  """Reads `metrics.jsonl`; when a step was logged twice (a resumed run), keeps the last."""
  path = os.path.join(workdir, 'metrics.jsonl')
  if not os.path.exists(path):
    return []
  by_key: dict[tuple, dict] = {}
  with open(path) as f:
    for line in f:
      line = line.strip()
      if not line:
        continue
      try:
        rec = json.loads(line)
      except json.JSONDecodeError:
        continue  # A line cut by a kill: skip it.
      if keys and not any(k in rec for k in keys):
        continue
      kind = tuple(sorted(k for k in rec if k != 'step'))
      by_key[(rec['step'], kind)] = rec
  return [by_key[k] for k in sorted(by_key, key=lambda k: k[0])]
