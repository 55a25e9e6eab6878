"""The trainer-side measure and the row: `bench_config`.

The bare dispatch (`gm_jax.bench.measure`) and `gm_jax.train.loop.run` take turns over
the rounds, each side's best round counts (see the `gm_jax.bench` docstring), and the
row carries every key of `REQUIRED_KEYS`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import os
import platform
import shutil
import sys
import tempfile
import time

import jax
import numpy as np

from gm_jax.bench import measure
from gm_jax.bench import setup
from gm_jax.bench.configs import BenchError
from gm_jax.train import defaults
from gm_jax.train import loop

REQUIRED_KEYS = (
  'model',
  'backend',
  'device_kind',
  'device_count',
  'global_batch',
  'compute_dtype',
  'compile_s',
  'step_ms_median',
  'step_ms_p90',
  'steps_per_s',
  'examples_per_s',
  'flops_per_step',
  'achieved_tflops',
  'peak_tflops',
  'mfu',
  'peak_memory_bytes',
  'trainer_steps_per_s',
  'trainer_overhead',
)


def bench_settings(config, steps: int):
  """`config` set to train `steps` (rounded up to whole dispatches, at least two) with
  logs, validation and a checkpoint at the last step only."""
  k = int(defaults.get(config, 'steps_per_loop'))
  if not isinstance(steps, int) or steps <= 0:
    raise BenchError(f'--steps must be a positive integer, got {steps!r}')
  # The trainer does not time its first dispatch (it compiles), so two at least.
  n = max(-(-steps // k), 2) * k
  config = _with_steps(config, n)
  with config.unlocked():
    config.progress_bar = False
    config.max_train_seconds = 0.0
    config.init_from = ''
    config.max_to_keep = 1
  return config, n, k


_MAX_DISPATCHES = 20_000  # a round's cap, whatever --min_seconds asks


def _with_steps(config, n: int):
  """`config` training `n` steps, logging, validating and saving at the last only."""
  config = config.copy_and_resolve_references()
  with config.unlocked():
    config.num_train_steps = n
    config.log_every = config.checkpoint_every = config.eval_every = n
  return config


def _no_final_evaluation(family):
  return dataclasses.replace(family, evaluate=lambda *a, **k: {}, sample=None, pictures=None)


def bench_config(
  config,
  *,
  steps: int = 50,
  windows: int = 10,
  rounds: int = 3,
  min_seconds: float = 15.0,
  config_path: str = '',
) -> dict:
  """Benchmarks one config (see the module docstring); returns its row.

  Args:
    config: a model config (`configs/*.py`'s `get_config()`, overrides applied).
    steps: train steps timed for the bare step and for the trainer, each over all
      rounds (rounded up to whole `steps_per_loop` dispatches, at least two a round).
    windows: timing windows of the bare step over all rounds (median and p90 are over
      windows).
    rounds: turns of bare steps and trainer; each side's best round counts.
    min_seconds: the bare steps' least time over all rounds (more steps if needed).
    config_path: recorded in the row.

  Returns:
    A dict with every key of `REQUIRED_KEYS` and a few more.
  """
  config, n, k = bench_settings(config, steps)
  tmp = tempfile.mkdtemp(prefix='gm_jax_bench_')
  try:
    # The trainer's prints (resume notes, warnings) go to stderr: stdout is the rows.
    with contextlib.redirect_stdout(sys.stderr):
      config, family, splits = setup.trainer_inputs(config, os.path.join(tmp, 'build'))
      prepared, state, chunk, compiled, compile_s = measure.compile_dispatch(
        config, family, splits, os.path.join(tmp, 'bare')
      )
      backend = jax.default_backend()
      compute_dtype = str(defaults.get(config, 'compute_dtype'))
      # CPU: the ceiling is timed before and after the step (best of both), under the
      # same machine load as the step.
      ceiling = measure.measure_matmul_tflops(compute_dtype) if backend == 'cpu' else None
      used = prepared.dp.num_devices
      state, metrics = compiled(state, chunk)  # warm-up
      jax.block_until_ready((state, metrics))
      t0 = time.perf_counter()
      state, metrics = compiled(state, chunk)
      jax.block_until_ready((state, metrics))
      one = time.perf_counter() - t0
      per_round = min(
        max(-(-n // (k * rounds)), int(min_seconds / rounds / one) + 1, 2), _MAX_DISPATCHES
      )
      sizes = measure.window_sizes(per_round, max(1, -(-windows // rounds)))
      trainer_config = _with_steps(config, per_round * k)
      device = jax.devices()[0]
      times, bare_rates, trainer_rates = [], [], []
      for r in range(rounds):
        state, metrics, more = measure.time_windows(compiled, state, chunk, sizes)
        times += more
        bare_rates.append(per_round * k / sum(t for t, _ in more))
        if r == 0:
          peak_bytes = measure.device_peak_bytes(device)
          memory_source = 'device.memory_stats'
          if peak_bytes is None:
            peak_bytes = measure.compiled_memory_bytes(compiled)
            memory_source = 'compiled.memory_analysis'
          # After the memory peak is read: this compiles a one-step dispatch.
          flops, flops_source = measure.flops_per_step(
            compiled, config, family, splits, os.path.join(tmp, 'flops')
          )
        trainer = loop.run(
          trainer_config, os.path.join(tmp, f'trainer{r}'), _no_final_evaluation(family), splits
        )
        trainer_rates.append(trainer.get('train_steps_per_s') or 0.0)
      last_loss = np.asarray(jax.device_get(metrics['loss']))
      if backend == 'cpu':
        ceiling = max(ceiling or 0.0, measure.measure_matmul_tflops(compute_dtype))
  finally:
    shutil.rmtree(tmp, ignore_errors=True)
  per_step_ms = [1e3 * t / (size * k) for t, size in times]
  bare_steps = sum(size for _, size in times) * k
  steps_per_s = max(bare_rates)
  precision = str(defaults.get(config, 'matmul_precision'))
  if backend == 'cpu':
    # The whole host is one device's ceiling, however many host devices are forced.
    peak = ceiling
    peak_source = f'measured: jitted {compute_dtype} 2048x2048 matmul, best of 6'
    column = compute_dtype
  else:
    column = measure.peak_dtype(compute_dtype, precision)
    per_device = measure.peak_tflops_for(device.device_kind, column)
    peak = per_device * used if per_device is not None else None
    peak_source = f'PEAK_TFLOPS[{device.device_kind!r}][{column!r}] x {used}'
  step_flops = flops * used
  achieved = step_flops * steps_per_s / 1e12
  trainer_steps_per_s = max(trainer_rates) or None
  global_batch = int(config.batch_size)
  return {
    'model': str(config.model),
    'backend': backend,
    'device_kind': device.device_kind,
    'device_count': int(used),
    'global_batch': global_batch,
    'compute_dtype': compute_dtype,
    'compile_s': compile_s,
    'step_ms_median': float(np.median(per_step_ms)),
    'step_ms_p90': float(np.percentile(per_step_ms, 90)),
    'steps_per_s': steps_per_s,
    'examples_per_s': steps_per_s * global_batch,
    'flops_per_step': step_flops,
    'achieved_tflops': achieved,
    'peak_tflops': peak,
    'mfu': achieved / peak if peak else None,
    'peak_memory_bytes': peak_bytes,
    'trainer_steps_per_s': trainer_steps_per_s,
    'trainer_overhead': (trainer_steps_per_s / steps_per_s if trainer_steps_per_s else None),
    # More than the contract asks for.
    'config': config_path,
    'dataset': str(config.dataset),
    'parallel': str(config.parallel),
    'steps_per_loop': k,
    'matmul_precision': precision,
    'steps': per_round * k * rounds,
    'rounds': rounds,
    'bare_steps_per_s_rounds': bare_rates,
    'trainer_steps_per_s_rounds': trainer_rates,
    'bare_steps_timed': bare_steps,
    'trainer_steps_timed': (per_round - 1) * k * rounds,
    'timing_windows': len(times),
    'flops_source': flops_source,
    'peak_tflops_source': peak_source,
    'peak_dtype': column,
    'peak_memory_source': memory_source,
    'final_loss': float(np.ravel(last_loss)[-1]),
    'devices_available': jax.device_count(),
    'jax': jax.__version__,
    'python': platform.python_version(),
    'cpu_count': os.cpu_count(),
    'load_avg_1m': os.getloadavg()[0] if hasattr(os, 'getloadavg') else None,
    'xla_flags': os.environ.get('XLA_FLAGS', ''),
    'time_utc': datetime.datetime.now(datetime.UTC).isoformat(timespec='seconds'),
  }
