"""The command line of `python -m gm_jax.bench` (the flags: the `gm_jax.bench` docstring)."""

from __future__ import annotations

import argparse
import atexit
from collections.abc import Sequence
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import jax

from gm_jax.bench import table
from gm_jax.bench import trainer
from gm_jax.bench.configs import BenchError
from gm_jax.bench.configs import load_config
from gm_jax.bench.configs import model_configs

_DESCRIPTION = 'Train-step throughput, FLOPs and MFU of any config, bare and under the trainer.'


def _parse(argv: Sequence[str]):
  p = argparse.ArgumentParser(prog='python -m gm_jax.bench', description=_DESCRIPTION)
  p.add_argument('--config', default=None, help='a config file, e.g. configs/vae.py')
  p.add_argument(
    '--all',
    action='store_true',
    help='every model config in --configs_dir, each in its own process',
  )
  p.add_argument('--configs_dir', default='configs')
  p.add_argument(
    '--steps',
    type=int,
    default=50,
    help='train steps timed, bare and under the trainer (default 50)',
  )
  p.add_argument('--windows', type=int, default=10, help='timing windows of the bare step')
  p.add_argument(
    '--rounds',
    type=int,
    default=3,
    help='turns of bare steps and trainer; the best of each counts (default 3)',
  )
  p.add_argument(
    '--min_seconds',
    type=float,
    default=15.0,
    help="least time of the bare steps over all rounds, and so of the trainer's (default 15)",
  )
  p.add_argument('--out', default=None, help='JSONL file the rows are appended to')
  p.add_argument(
    '--table', default=None, help='print the Markdown table of the rows in this JSONL file and exit'
  )
  args, rest = p.parse_known_args(list(argv))
  if args.table is not None:
    if rest or args.all or args.config is not None:
      raise BenchError('--table takes no other argument')
    return args, []
  overrides = []
  it = iter(rest)
  for item in it:
    if not item.startswith('--config.'):
      raise BenchError(
        f'unknown argument {item!r} (expected --config.KEY=VALUE, --config, '
        '--all, --steps, --windows, --rounds, --min_seconds, --out, --table)'
      )
    key, eq, value = item[len('--config.') :].partition('=')
    if not eq:
      following = next(it, None)
      if following is None:
        raise BenchError(f'{item} needs a value: --config.{key}=VALUE')
      value = following
    overrides.append((key, value))
  if args.all == (args.config is not None):
    raise BenchError('give exactly one of --config=PATH and --all')
  if args.steps <= 0:
    raise BenchError(f'--steps must be a positive integer, got {args.steps}')
  if args.rounds <= 0:
    raise BenchError(f'--rounds must be a positive integer, got {args.rounds}')
  if args.min_seconds < 0:
    raise BenchError(f'--min_seconds must be >= 0, got {args.min_seconds}')
  return args, overrides


def _emit(row: dict, out: str | None) -> None:
  line = json.dumps(row, sort_keys=False)
  if out:
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with open(out, 'a') as f:
      f.write(line + '\n')
  print(line, flush=True)


def _run_all(args, overrides) -> int:
  paths = model_configs(args.configs_dir)
  if not paths:
    raise BenchError(f'--all: no model configs in {args.configs_dir!r}')
  rows, failed = [], []
  for path in paths:
    cmd = [
      sys.executable,
      '-m',
      'gm_jax.bench',
      f'--config={path}',
      *[f'--config.{key}={value}' for key, value in overrides],
      f'--steps={args.steps}',
      f'--windows={args.windows}',
      f'--rounds={args.rounds}',
      f'--min_seconds={args.min_seconds}',
    ]
    if args.out:
      cmd.append(f'--out={args.out}')
    print(f'gm_jax.bench: {path}', file=sys.stderr, flush=True)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, check=False)
    row = None
    for line in proc.stdout.splitlines():
      try:
        parsed = json.loads(line)
      except json.JSONDecodeError:
        parsed = None
      if isinstance(parsed, dict) and 'model' in parsed:
        row = parsed
        print(line, flush=True)
      else:
        print(line, file=sys.stderr)
    if proc.returncode or row is None:
      failed.append(path)
      print(f'gm_jax.bench: {path} FAILED (exit {proc.returncode})', file=sys.stderr, flush=True)
    else:
      rows.append(row)
      print(
        f'gm_jax.bench: {path} done in {time.perf_counter() - t0:.0f} s',
        file=sys.stderr,
        flush=True,
      )
  print(table.summary_table(rows), file=sys.stderr)
  if failed:
    print(f'gm_jax.bench: failed: {", ".join(failed)}', file=sys.stderr)
  return 1 if failed else 0


def _fresh_compilation_cache() -> None:
  """An empty persistent XLA cache for this process (removed at exit), before anything
  compiles: `compile_s` is a real compilation, and the trainer's rounds, which compile
  the same programs again, load them instead of spending minutes of the run."""
  path = tempfile.mkdtemp(prefix='gm_jax_bench_xla_cache_')
  atexit.register(shutil.rmtree, path, ignore_errors=True)
  jax.config.update('jax_compilation_cache_dir', path)
  jax.config.update('jax_persistent_cache_min_compile_time_secs', 0.0)


def main(argv: Sequence[str]) -> int:
  """The command line (without the program name); returns the exit status.

  Raises:
    BenchError: a bad flag, config path or config key (the message names it).
  """
  args, overrides = _parse(argv)
  if args.table is not None:
    print(table.summary_table(table.read_rows(args.table)))
    return 0
  if args.all:
    return _run_all(args, overrides)
  config = load_config(args.config, overrides)
  row = trainer.bench_config(
    config,
    steps=args.steps,
    windows=args.windows,
    rounds=args.rounds,
    min_seconds=args.min_seconds,
    config_path=args.config,
  )
  _emit(row, args.out)
  return 0


def run() -> int:
  """`python -m gm_jax.bench`: errors in the command line exit 2 with their message."""
  os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
  from absl import logging

  logging.set_verbosity(logging.WARNING)  # orbax/tfds INFO lines
  if '--all' not in sys.argv and not any(a.startswith('--table') for a in sys.argv):
    _fresh_compilation_cache()  # one config in this process
  try:
    return main(sys.argv[1:])
  except BenchError as e:
    print(f'gm_jax.bench: error: {e}', file=sys.stderr)
    return 2
