"""`benchmarks/data_parallel.py`: the three `config.parallel` modes on random batches.

How fast each mode (`none`, `pmap`, `sharding`) runs one config's train step on random
batches of its dataset's shape, and how far the host may run ahead of the device
(`--in_flight`). The family comes from `gm_jax.bench.setup.trainer_inputs`, as the
trainer would build it.
"""

from __future__ import annotations

import argparse
import ast
from collections.abc import Sequence
import json
import os
import platform
import tempfile
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from gm_jax.bench import setup
from gm_jax.bench.configs import BenchError
from gm_jax.bench.configs import load_config

# The repository's `configs/` folder (gm_jax/bench/ is two levels below the root).
_CONFIGS_DIR = os.path.join(
  os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), 'configs'
)


def parse_set(item: str) -> tuple[str, Any]:
  """`--set FIELD=VALUE` -> `(FIELD, VALUE as a Python literal, or the bare word as a str)`."""
  field, eq, value = item.partition('=')
  if not eq:
    raise SystemExit(f'--set needs FIELD=VALUE; got {item!r}')
  try:
    return field, ast.literal_eval(value)
  except (ValueError, SyntaxError):
    return field, value


def _modes_config(args):
  path = os.path.join(args.configs_dir, f'{args.model}.py')
  try:
    config = load_config(path)
  except BenchError as e:
    raise SystemExit(str(e)) from e
  if args.architecture and 'architecture' in config:
    config.architecture = args.architecture
  config.dataset = args.dataset
  config.warmup_steps = 0
  for item in args.set:
    field, value = parse_set(item)
    config[field] = value
  return config


def _modes_prepare(mode, family, config, batches, args):
  """The mode's `DataParallel` and state, compiled and warmed up."""
  from gm_jax import parallel
  from gm_jax.train import optim
  from gm_jax.train import step as step_lib

  init_key, train_key = jax.random.split(jax.random.key(0))
  tx = optim.make_optimizer(config)
  params = jax.tree.map(np.asarray, family.init(init_key, batches[0]))
  group = args.loss_group_size or args.per_device_batch
  dp = parallel.make(mode, step_lib.make_train_step(family, tx, train_key, group_size=group))
  state = dp.put_state(
    {'step': np.int32(0), 'params': params, 'opt_state': tx.init(jax.tree.map(jnp.asarray, params))}
  )
  for i in range(args.warmup):
    state, metrics = dp.step(state, dp.put_batch(batches[i % len(batches)]))
    float(metrics['loss'])
  return dp, state


def _modes_time_steps(dp, state, batches, steps, in_flight):
  """`steps` train steps, the host at most `in_flight` ahead (0: read back every loss)."""
  t0 = time.perf_counter()
  losses = []
  for i in range(steps):
    state, metrics = dp.step(state, dp.put_batch(batches[i % len(batches)]))
    losses.append(metrics['loss'])
    if in_flight == 0:
      float(losses[-1])
    elif len(losses) > in_flight:
      jax.block_until_ready(losses[-1 - in_flight])
  jax.block_until_ready(state)
  finite = np.isfinite(np.asarray(jax.device_get(losses))).all()
  seconds = time.perf_counter() - t0
  assert finite
  return state, seconds


def parallel_modes_main(argv: Sequence[str] | None = None, *, doc: str = '') -> None:
  """`benchmarks/data_parallel.py`'s command line (see its docstring); JSON lines on stdout."""
  p = argparse.ArgumentParser(description=(doc or __doc__).split('\n')[0])
  p.add_argument('--model', default='vae', help='a config in configs/ (not a classifier)')
  p.add_argument('--configs_dir', default=_CONFIGS_DIR)
  p.add_argument('--architecture', default='conv', help="'mlp' or 'conv' where the model has it")
  p.add_argument('--dataset', default='digits', help='shapes only: random images are used')
  p.add_argument('--per_device_batch', type=int, default=64)
  p.add_argument('--steps', type=int, default=100)
  p.add_argument('--warmup', type=int, default=5)
  p.add_argument('--repeats', type=int, default=3)
  p.add_argument('--modes', default='none,pmap,sharding')
  p.add_argument(
    '--in_flight',
    default='0',
    help='comma-separated counts of steps the host may run ahead of the '
    'device (0 = read every loss back before the next step)',
  )
  p.add_argument(
    '--set',
    action='append',
    default=[],
    metavar='FIELD=VALUE',
    help='override a config field (Python literal), repeatable',
  )
  # Default 0: one loss call per device shard, the throughput setting (measured on 4
  # forced CPU devices: pmap/sharding 1.007; with per-example groups, 1, it was 0.755).
  p.add_argument(
    '--loss_group_size',
    type=int,
    default=0,
    help='config.loss_group_size; 0 = the per-device batch (one loss call '
    'per device, as a trainer without per-example keys would do)',
  )
  args = p.parse_args(argv)

  n = jax.device_count()
  config = _modes_config(args)
  with tempfile.TemporaryDirectory(prefix='gm_jax_bench_modes_') as workdir:
    config, family, splits = setup.trainer_inputs(config, workdir)
  info = splits.info
  global_batch = args.per_device_batch * n
  rng = np.random.default_rng(0)
  batches = [
    {
      'image': rng.integers(0, info.num_levels, (global_batch,) + info.shape).astype(np.uint8),
      'label': rng.integers(0, info.num_classes or 1, global_batch).astype(np.int32),
    }
    for _ in range(4)
  ]
  device = jax.devices()[0]
  common = {
    'model': args.model,
    'architecture': config.get('architecture'),
    'dataset_shape': list(info.shape),
    'platform': device.platform,
    'device_kind': device.device_kind,
    'device_count': n,
    'global_batch': global_batch,
    'loss_group_size': args.loss_group_size or args.per_device_batch,
    'steps': args.steps,
    'set': args.set,
    'jax': jax.__version__,
    'python': platform.python_version(),
  }
  modes = args.modes.split(',')
  in_flights = [int(v) for v in args.in_flight.split(',')]
  if min(in_flights) < 0:
    raise SystemExit(f'--in_flight values must be >= 0, got {args.in_flight}')
  runs = [(mode, k) for mode in modes for k in in_flights]
  prepared = {mode: _modes_prepare(mode, family, config, batches, args) for mode in modes}
  # Runs take turns, so a change in machine load hits all of them alike.
  best = {run: float('inf') for run in runs}
  for _ in range(args.repeats):
    for mode, k in runs:
      dp, state = prepared[mode]
      state, seconds = _modes_time_steps(dp, state, batches, args.steps, k)
      prepared[mode] = (dp, state)
      best[mode, k] = min(best[mode, k], seconds)
  results = {}
  for mode, k in runs:
    results[mode, k] = global_batch * args.steps / best[mode, k]
    print(
      json.dumps(
        dict(
          common,
          mode=mode,
          devices_used=1 if mode == 'none' else n,
          in_flight=k,
          examples_per_s=round(results[mode, k], 1),
          steps_per_s=round(args.steps / best[mode, k], 2),
        )
      ),
      flush=True,
    )
  for k in in_flights:
    if ('pmap', k) in results and ('sharding', k) in results:
      ratio = results['pmap', k] / results['sharding', k]
      print(
        json.dumps(
          {
            'in_flight': k,
            'pmap_over_sharding': round(ratio, 4),
            'within_5_percent': abs(ratio - 1) <= 0.05,
          }
        ),
        flush=True,
      )
  if len(in_flights) > 1:
    base = in_flights[0]
    print(
      json.dumps(
        {
          f'in_flight_{k}_over_{base}': {
            mode: round(results[mode, k] / results[mode, base], 4) for mode in modes
          }
          for k in in_flights[1:]
        }
      ),
      flush=True,
    )
