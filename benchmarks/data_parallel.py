"""Train-step throughput of `none`, `pmap` and `sharding` on the available devices.

    python benchmarks/data_parallel.py [--model vae] [--architecture conv] \
        [--dataset digits] [--per_device_batch 64] [--steps 100]
    # CPU, to try the parallel modes without accelerators:
    XLA_FLAGS=--xla_force_host_platform_device_count=4 python benchmarks/data_parallel.py

Runs the trainer's own step (`gm_jax.train.loop.make_train_step` wrapped by
`gm_jax.parallel`), including the host-to-device copy of every batch, on random
images shaped like `--dataset` (no data download). `pmap` and `sharding` use every
device with a global batch of `per_device_batch * device_count`; `none` runs the same
global batch on one device. Prints one JSON line per mode, then one line comparing
`pmap` with `sharding`. Like the trainer, every step's loss is read back before the
next step starts (`--in_flight 0`). `--in_flight K` (K >= 1) instead lets the host run
K steps ahead: before dispatching step i + 1 it waits only for step i - K, and every
loss is checked for NaN at the end. With several values, e.g. `--in_flight 0,1,16`, each
mode runs under each and a last line gives the ratios to the first. `--set FIELD=VALUE`
overrides a config field (a Python literal). On one H100 (jax 0.11.2, 2026-11-28) 16
steps ahead over 1 step ahead was 1.02 for the IWAE paper row's step (k = 50, batch
250, ~980 steps/s), 1.06 for the ELBO step at batch 500 and 0.74 at batch 100
(benchmarks/results/data_parallel_in_flight_h100.jsonl); 0 (the trainer) was not
measured there. The IWAE row:

    python benchmarks/data_parallel.py --model vae --architecture mlp --dataset binarized_mnist \
        --per_device_batch 250 --modes none --in_flight 0,1,16 --set likelihood="'bernoulli'" \
        --set objective="'iwae'" --set iwae_train_samples=50 --set hidden='(200,200)' \
        --set activation="'tanh'" --set latent_dim=50

Timings exclude compilation (a warm-up of `--warmup` steps); the runs take turns
`--repeats` times and each one's best is reported.
"""

from gm_jax import _xla

_xla.configure_cpu_flags()

# pylint: disable=g-import-not-at-top,wrong-import-position
import argparse
import importlib
import json
import os
import platform
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

from gm_jax import data as gm_data
from gm_jax import parallel
from gm_jax.train import loop
from gm_jax.train import optim
from gm_jax.train import registry

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # configs/

from benchmarks.papers import _common  # noqa: E402  (needs the path above)


def _config(args):
  module = importlib.import_module(f'configs.{args.model}')
  config = module.get_config()
  if args.architecture and 'architecture' in config:
    config.architecture = args.architecture
  config.dataset = args.dataset
  config.warmup_steps = 0
  for item in args.set:
    field, value = _common.parse_set(item)
    config[field] = value
  return config


def _prepare(mode, family, config, batches, args):
  """The mode's `DataParallel` and state, compiled and warmed up."""
  init_key, train_key = jax.random.split(jax.random.key(0))
  tx = optim.make_optimizer(config)
  params = jax.tree.map(np.asarray, family.init(init_key, batches[0]))
  group = args.loss_group_size or args.per_device_batch
  dp = parallel.make(mode, loop.make_train_step(family, tx, train_key, group_size=group))
  state = dp.put_state({'step': np.int32(0), 'params': params,
                        'opt_state': tx.init(jax.tree.map(jnp.asarray, params))})
  for i in range(args.warmup):
    state, metrics = dp.step(state, dp.put_batch(batches[i % len(batches)]))
    float(metrics['loss'])
  return dp, state


def _time_steps(dp, state, batches, steps, in_flight):
  """`steps` train steps, the host at most `in_flight` ahead (0: the trainer's read-back)."""
  t0 = time.perf_counter()
  losses = []
  for i in range(steps):
    state, metrics = dp.step(state, dp.put_batch(batches[i % len(batches)]))
    losses.append(metrics['loss'])
    if in_flight == 0:
      float(losses[-1])  # the trainer reads every step's loss (NaN guard)
    elif len(losses) > in_flight:
      jax.block_until_ready(losses[-1 - in_flight])
  jax.block_until_ready(state)
  finite = np.isfinite(np.asarray(jax.device_get(losses))).all()
  seconds = time.perf_counter() - t0
  assert finite
  return state, seconds


def main():
  p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  p.add_argument('--model', default='vae', help='a config in configs/ (not a classifier)')
  p.add_argument('--architecture', default='conv', help="'mlp' or 'conv' where the model has it")
  p.add_argument('--dataset', default='digits', help='shapes only: random images are used')
  p.add_argument('--per_device_batch', type=int, default=64)
  p.add_argument('--steps', type=int, default=100)
  p.add_argument('--warmup', type=int, default=5)
  p.add_argument('--repeats', type=int, default=3)
  p.add_argument('--modes', default='none,pmap,sharding')
  p.add_argument('--in_flight', default='0',
                 help='comma-separated counts of steps the host may run ahead of the '
                      'device (0 = read every loss back before the next step, as the '
                      'trainer does)')
  p.add_argument('--set', action='append', default=[], metavar='FIELD=VALUE',
                 help='override a config field (Python literal), repeatable')
  # Default 0: one loss call per device shard, the throughput setting (measured on 4
  # forced CPU devices: pmap/sharding 1.007; with per-example groups, 1, it was 0.755).
  p.add_argument('--loss_group_size', type=int, default=0,
                 help='config.loss_group_size; 0 = the per-device batch (one loss call '
                      'per device, as a trainer without per-example keys would do)')
  args = p.parse_args()

  n = jax.device_count()
  config = _config(args)
  info = gm_data.get_info(args.dataset)
  family = importlib.import_module(registry.MODELS[args.model]).make_family(config, info)
  global_batch = args.per_device_batch * n
  rng = np.random.default_rng(0)
  batches = [{'image': rng.integers(0, info.num_levels, (global_batch,) + info.shape
                                    ).astype(np.uint8),
              'label': rng.integers(0, info.num_classes or 1, global_batch).astype(np.int32)}
             for _ in range(4)]
  device = jax.devices()[0]
  common = {'model': args.model, 'architecture': config.get('architecture'),
            'dataset_shape': list(info.shape), 'platform': device.platform,
            'device_kind': device.device_kind, 'device_count': n,
            'global_batch': global_batch,
            'loss_group_size': args.loss_group_size or args.per_device_batch,
            'steps': args.steps, 'set': args.set, 'jax': jax.__version__,
            'python': platform.python_version()}
  modes = args.modes.split(',')
  in_flights = [int(v) for v in args.in_flight.split(',')]
  if min(in_flights) < 0:
    raise SystemExit(f'--in_flight values must be >= 0, got {args.in_flight}')
  runs = [(mode, k) for mode in modes for k in in_flights]
  prepared = {mode: _prepare(mode, family, config, batches, args) for mode in modes}
  # Runs take turns, so a change in machine load hits all of them alike.
  best = {run: float('inf') for run in runs}
  for _ in range(args.repeats):
    for mode, k in runs:
      dp, state = prepared[mode]
      state, seconds = _time_steps(dp, state, batches, args.steps, k)
      prepared[mode] = (dp, state)
      best[mode, k] = min(best[mode, k], seconds)
  results = {}
  for mode, k in runs:
    results[mode, k] = global_batch * args.steps / best[mode, k]
    print(json.dumps(dict(common, mode=mode, devices_used=1 if mode == 'none' else n,
                          in_flight=k, examples_per_s=round(results[mode, k], 1),
                          steps_per_s=round(args.steps / best[mode, k], 2))), flush=True)
  for k in in_flights:
    if ('pmap', k) in results and ('sharding', k) in results:
      ratio = results['pmap', k] / results['sharding', k]
      print(json.dumps({'in_flight': k, 'pmap_over_sharding': round(ratio, 4),
                        'within_5_percent': abs(ratio - 1) <= 0.05}), flush=True)
  if len(in_flights) > 1:
    base = in_flights[0]
    print(json.dumps({f'in_flight_{k}_over_{base}': {
        mode: round(results[mode, k] / results[mode, base], 4) for mode in modes}
        for k in in_flights[1:]}), flush=True)


if __name__ == '__main__':
  main()
