"""Train-step throughput, FLOPs and MFU of any config, bare and under the trainer.

    python -m gm_jax.bench --config=configs/vae.py [--config.KEY=VALUE ...] \
        [--steps 50] [--out rows.jsonl]
    python -m gm_jax.bench --all [--config.KEY=VALUE ...] [--steps 50] [--out rows.jsonl]
    python -m gm_jax.bench --table rows.jsonl   # their Markdown table

appends one JSON row per config to `--out` (JSONL) and prints it on stdout. `--all` runs
every model config in `configs/` (not `common.py`), each in its own process (device
memory peaks and compilation caches do not carry over), and prints a summary on stderr.
The overrides apply to every config, e.g. `--config.compute_dtype=bfloat16` or
`--config.steps_per_loop=10`.

What a row measures, for the config as the trainer would train it (the family, config
and data come from `gm_jax.families.setup`, what `gm_jax.train.loop.run` is handed, so the naive Bayes full-batch fit, the binarised VAEs and the
diffusion defaults are what the trainer gets):

- the bare step: the trainer's compiled dispatch (`steps_per_loop` train steps wrapped
  by `config.parallel`, state donated) on the trainer's first batch, called back to back
  and timed in windows that end with `block_until_ready`: `step_ms_median`,
  `step_ms_p90` (over windows), `steps_per_s` (the best round's timed steps over its
  time), `compile_s` (lower + compile of that dispatch);
- `flops_per_step`: XLA's cost analysis of a one-step dispatch (per device program,
  times the devices it runs on; a multi-step dispatch's rolled `lax.scan` body would be
  counted once); `achieved_tflops`, and `mfu` against
  `peak_tflops`: the vendor's dense figure for `device_kind` and the compute dtype
  (`PEAK_TFLOPS`), on CPU a jitted matmul timed in the same run;
- `peak_memory_bytes`: the device's own peak (`memory_stats`, GPU) after the bare steps,
  else the compiled dispatch's temp + argument + output bytes (`peak_memory_source`);
- `trainer_steps_per_s`: `gm_jax.train.loop.run` for as many steps in a temporary
  workdir (logs, validation and the checkpoint at the last step only, no final
  evaluation or samples), as the trainer measures itself (`train_steps_per_s`: its first
  dispatch, which compiles, and its logging are not timed); `trainer_overhead` is its
  ratio to the bare `steps_per_s` (1.0: the loop costs nothing).

Machines are shared: the bare steps and the trainer take turns over `--rounds` rounds
(bare, trainer, bare, trainer, ...), each side's best round is kept, and each round
runs at least `--steps / --rounds` steps and `--min_seconds / --rounds` seconds (a 0.1 ms
step gets thousands), so that a burst of load costs one side one round, not the ratio.
The default `--min_seconds 15` (5 s a round) is there for the trainer's side: each of its
rounds is a fresh `loop.run`, and runs of ~0.6 s came out 5-20% slower than the same
loop over 5 s (start-up effects, not per-step cost; `trainer_overhead` on 2 CPU cores,
`--min_seconds 3 --rounds 5` vs `--min_seconds 15`: cyclegan_photos 0.82 -> 0.97, glow
0.90 -> 0.99, flow_matching 0.89 -> 0.96, the same loop profiled over 100 steps: 0.95).

`parallel_modes_main` is `benchmarks/data_parallel.py`: the three `config.parallel`
modes on random batches, and how far the host may run ahead of the device.
"""

from gm_jax import _xla

_xla.configure_cpu_flags()  # before JAX starts its backend

# pylint: disable=g-import-not-at-top,wrong-import-position
import argparse
import ast
import atexit
import contextlib
import dataclasses
import datetime
import glob
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from typing import Any, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

REQUIRED_KEYS = ('model', 'backend', 'device_kind', 'device_count', 'global_batch',
                 'compute_dtype', 'compile_s', 'step_ms_median', 'step_ms_p90',
                 'steps_per_s', 'examples_per_s', 'flops_per_step', 'achieved_tflops',
                 'peak_tflops', 'mfu', 'peak_memory_bytes', 'trainer_steps_per_s',
                 'trainer_overhead')

# Dense (no structured sparsity) peak TFLOP/s of one device, by `device_kind` pattern and
# the precision the matmuls run in. A pattern matches a `device_kind` holding each of its
# words (case-insensitive; 'A100-SXM4-80GB' holds 'a100'; 'L40S' does not hold 'l4'); the
# first match wins, so 'h100 pcie' precedes 'h100'. GPU
# float32 matmuls at `matmul_precision='default'` run on the TF32 tensor cores ('tf32');
# TPUs run float32 matmuls at default precision as bfloat16 passes, so their bf16 figure
# is used for both.
PEAK_TFLOPS: tuple[tuple[str, dict[str, float]], ...] = (
    # NVIDIA H100 Tensor Core GPU datasheet (nvidia.com/en-us/data-center/h100), H100 PCIe
    # column; the sheet's BF16/FP16/TF32 figures are with sparsity, halved here.
    ('h100 pcie', {'bfloat16': 756.0, 'float16': 756.0, 'tf32': 378.0, 'float32': 51.0}),
    # Same datasheet, H100 NVL column (per GPU).
    ('h100 nvl', {'bfloat16': 835.0, 'float16': 835.0, 'tf32': 417.5, 'float32': 60.0}),
    # Same datasheet, H100 SXM column (device_kind 'NVIDIA H100 80GB HBM3').
    ('h100', {'bfloat16': 989.4, 'float16': 989.4, 'tf32': 494.7, 'float32': 67.0}),
    # NVIDIA H200 Tensor Core GPU datasheet (nvidia.com/en-us/data-center/h200), H200 NVL
    # column; sparsity figures halved.
    ('h200 nvl', {'bfloat16': 835.0, 'float16': 835.0, 'tf32': 417.5, 'float32': 60.0}),
    # Same datasheet, H200 SXM column (device_kind 'NVIDIA H200').
    ('h200', {'bfloat16': 989.4, 'float16': 989.4, 'tf32': 494.7, 'float32': 67.0}),
    # NVIDIA A100 Tensor Core GPU datasheet (nvidia.com/en-us/data-center/a100): the same
    # dense figures for the SXM4 and PCIe, 40 and 80 GB parts.
    ('a100', {'bfloat16': 312.0, 'float16': 312.0, 'tf32': 156.0, 'float32': 19.5}),
    # NVIDIA L4 Tensor Core GPU datasheet (nvidia.com/en-us/data-center/l4); sparsity
    # figures (BF16/FP16 242, TF32 120) halved.
    ('l4', {'bfloat16': 121.0, 'float16': 121.0, 'tf32': 60.0, 'float32': 30.3}),
    # Google Cloud TPU v4 system architecture (cloud.google.com/tpu/docs/v4): 275 bf16
    # TFLOP/s per chip.
    ('tpu v4', {'bfloat16': 275.0, 'float32': 275.0}),
    # cloud.google.com/tpu/docs/v5e (device_kind 'TPU v5 lite'): 197 bf16 TFLOP/s per chip.
    ('tpu v5 lite', {'bfloat16': 197.0, 'float32': 197.0}),
    ('tpu v5e', {'bfloat16': 197.0, 'float32': 197.0}),
    # cloud.google.com/tpu/docs/v5p (device_kind 'TPU v5' or 'TPU v5p'): 459 bf16
    # TFLOP/s per chip.
    ('tpu v5p', {'bfloat16': 459.0, 'float32': 459.0}),
    ('tpu v5', {'bfloat16': 459.0, 'float32': 459.0}),
    # cloud.google.com/tpu/docs/v6e, Trillium (device_kind 'TPU v6 lite' or 'TPU v6e'):
    # 918 bf16 TFLOP/s per chip.
    ('tpu v6e', {'bfloat16': 918.0, 'float32': 918.0}),
    ('tpu v6', {'bfloat16': 918.0, 'float32': 918.0}),
)


class BenchError(ValueError):
  """A bad command line or config (the message names the flag or field)."""


# ---------------------------------------------------------------------------------------
# Peak FLOP/s, FLOPs, memory.


def peak_dtype(compute_dtype: str, matmul_precision: str = 'default') -> str:
  """The `PEAK_TFLOPS` column a train step's matmuls run in ('tf32': float32 at default)."""
  if compute_dtype in ('bfloat16', 'float16'):
    return compute_dtype
  return 'tf32' if matmul_precision == 'default' else 'float32'


def peak_tflops_for(device_kind: str, dtype: str) -> Optional[float]:
  """Dense peak TFLOP/s of one `device_kind` device in `dtype` (a `PEAK_TFLOPS` column).

  Args:
    device_kind: `jax.Device.device_kind`, e.g. `'NVIDIA H100 80GB HBM3'`, `'TPU v5 lite'`.
    dtype: `'bfloat16'`, `'float16'`, `'tf32'` or `'float32'`.

  Returns:
    The vendor figure, or None for a device the table does not know (or a dtype its
    sheet does not give; 'tf32' falls back to 'float32' where the device has no TF32).
  """
  words = set(re.split(r'[^a-z0-9]+', device_kind.lower()))
  for pattern, peaks in PEAK_TFLOPS:
    if all(word in words for word in pattern.split()):
      if dtype in peaks:
        return peaks[dtype]
      return peaks.get('float32') if dtype == 'tf32' else None
  return None


def measure_matmul_tflops(dtype: str = 'float32', *, size: int = 2048,
                          repeats: int = 3) -> float:
  """TFLOP/s of a jitted `[size, size] @ [size, size]` matmul on the default device.

  The best of `repeats` timed calls after one that compiles; `2 * size**3` FLOPs each.
  """
  a = jax.random.normal(jax.random.key(0), (size, size), jnp.float32).astype(dtype)
  b = jax.random.normal(jax.random.key(1), (size, size), jnp.float32).astype(dtype)
  matmul = jax.jit(jnp.matmul)
  matmul(a, b).block_until_ready()
  best = float('inf')
  for _ in range(repeats):
    t0 = time.perf_counter()
    matmul(a, b).block_until_ready()
    best = min(best, time.perf_counter() - t0)
  return 2.0 * size ** 3 / best / 1e12


def compiled_flops(compiled) -> float:
  """The `'flops'` of `compiled.cost_analysis()` (a dict in jax 0.10; a list of them per
  program in older versions, of which the first, every device running the same program)."""
  cost = compiled.cost_analysis()
  if isinstance(cost, (list, tuple)):
    cost = cost[0] if cost else {}
  return float((cost or {}).get('flops', 0.0))


def compiled_memory_bytes(compiled) -> Optional[int]:
  """temp + argument + output bytes of `compiled.memory_analysis()` (None if unavailable)."""
  stats = compiled.memory_analysis()
  if stats is None:
    return None
  return int(stats.temp_size_in_bytes + stats.argument_size_in_bytes
             + stats.output_size_in_bytes)


def _device_peak_bytes(device) -> Optional[int]:
  try:
    stats = device.memory_stats()
  except Exception:  # pylint: disable=broad-except  # not every backend implements it
    return None
  return int(stats['peak_bytes_in_use']) if stats and 'peak_bytes_in_use' in stats else None


# ---------------------------------------------------------------------------------------
# Configs.


def load_config(path: str, overrides: Sequence[tuple[str, str]] = ()):
  """`get_config()` of the config file at `path`, with `--config.KEY=VALUE` overrides.

  Raises:
    BenchError: naming the path when it is not a config file, or the key when the
      config has no such field or the value does not fit its type.
  """
  from gm_jax import demo  # pylint: disable=g-import-not-at-top
  if not os.path.isfile(path):
    raise BenchError(f'--config={path}: no such config file')
  try:
    config = demo.load_config(path)
  except AttributeError as e:
    raise BenchError(f'--config={path}: not a config file (no get_config): {e}') from e
  except TypeError as e:
    raise BenchError(f'--config={path}: its get_config() cannot be called without '
                     f'arguments ({e}); not a model config') from e
  if 'model' not in config:
    raise BenchError(f'--config={path}: the config has no `model` field')
  for key, raw in overrides:
    _override(config, key, raw, path)
  return config


def _override(config, key: str, raw: str, path: str) -> None:
  *parents, name = key.split('.')
  node = config
  for part in parents:
    if part not in node:
      raise BenchError(f'--config.{key}: {path} has no field {part!r}')
    node = node[part]
  if name not in node:
    raise BenchError(f'--config.{key}: {path} has no field {key!r} '
                     f'(its fields: {", ".join(sorted(node.keys()))})')
  current = node[name]
  if isinstance(current, bool):
    if raw.lower() not in ('true', 'false', '1', '0'):
      raise BenchError(f'--config.{key}={raw}: expected true or false')
    value = raw.lower() in ('true', '1')
  elif isinstance(current, str):
    value = raw
  else:
    try:
      value = ast.literal_eval(raw)
    except (ValueError, SyntaxError):
      value = raw
  try:
    with node.unlocked():
      node[name] = value
  except (TypeError, ValueError) as e:
    raise BenchError(f'--config.{key}={raw}: {e}') from e


def model_configs(configs_dir: str) -> list[str]:
  """The files of `configs_dir` whose `get_config()` is a model config (not `common.py`)."""
  paths = []
  for path in sorted(glob.glob(os.path.join(configs_dir, '*.py'))):
    if os.path.basename(path) in ('__init__.py', 'common.py'):
      continue
    try:
      load_config(path)
    except BenchError:
      continue
    paths.append(path)
  return paths


# ---------------------------------------------------------------------------------------
# One config.


def build(config, workdir: str):
  """`(config, family, splits)` as `gm_jax.families.setup` hands them to
  `gm_jax.train.loop.run` (the family's data loading, config completion and closed-form
  pre-fits run, its training does not)."""
  del workdir  # nothing is written
  from gm_jax import families
  return families.setup(config)


def _bench_settings(config, steps: int):
  """`config` set to train `steps` (rounded up to whole dispatches, at least two) with
  logs, validation and a checkpoint at the last step only."""
  from gm_jax.train import defaults  # pylint: disable=g-import-not-at-top
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


def _window_sizes(dispatches: int, windows: int) -> list[int]:
  windows = max(1, min(windows, dispatches))
  base, extra = divmod(dispatches, windows)
  return [base + (i < extra) for i in range(windows)]


def _time_windows(compiled, state, chunk, sizes: Sequence[int]):
  """Runs `compiled` back to back, `sizes[i]` dispatches in window `i`, each window
  ending with `block_until_ready`. Returns `(state, metrics, [(seconds, dispatches)])`."""
  metrics, times = None, []
  for size in sizes:
    t0 = time.perf_counter()
    for _ in range(size):
      state, metrics = compiled(state, chunk)
    jax.block_until_ready((state, metrics))
    times.append((time.perf_counter() - t0, size))
  return state, metrics, times


def _no_final_evaluation(family):
  return dataclasses.replace(family, evaluate=lambda *a, **k: {}, sample=None, pictures=None)


def bench_config(config, *, steps: int = 50, windows: int = 10, rounds: int = 3,
                 min_seconds: float = 15.0, config_path: str = '') -> dict:
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
  from gm_jax.train import defaults  # pylint: disable=g-import-not-at-top
  from gm_jax.train import loop  # pylint: disable=g-import-not-at-top
  config, n, k = _bench_settings(config, steps)
  tmp = tempfile.mkdtemp(prefix='gm_jax_bench_')
  try:
    # The trainer's prints (resume notes, warnings) go to stderr: stdout is the rows.
    with contextlib.redirect_stdout(sys.stderr):
      config, family, splits = build(config, os.path.join(tmp, 'build'))
      setup, state, chunk, compiled, compile_s = compile_dispatch(
          config, family, splits, os.path.join(tmp, 'bare'))
      backend = jax.default_backend()
      compute_dtype = str(defaults.get(config, 'compute_dtype'))
      # CPU: the ceiling is timed before and after the step (best of both), under the
      # same machine load as the step.
      ceiling = measure_matmul_tflops(compute_dtype) if backend == 'cpu' else None
      used = setup.dp.num_devices
      state, metrics = compiled(state, chunk)  # warm-up
      jax.block_until_ready((state, metrics))
      t0 = time.perf_counter()
      state, metrics = compiled(state, chunk)
      jax.block_until_ready((state, metrics))
      one = time.perf_counter() - t0
      per_round = min(max(-(-n // (k * rounds)), int(min_seconds / rounds / one) + 1, 2),
                      _MAX_DISPATCHES)
      sizes = _window_sizes(per_round, max(1, -(-windows // rounds)))
      trainer_config = _with_steps(config, per_round * k)
      device = jax.devices()[0]
      times, bare_rates, trainer_rates = [], [], []
      for r in range(rounds):
        state, metrics, more = _time_windows(compiled, state, chunk, sizes)
        times += more
        bare_rates.append(per_round * k / sum(t for t, _ in more))
        if r == 0:
          peak_bytes = _device_peak_bytes(device)
          memory_source = 'device.memory_stats'
          if peak_bytes is None:
            peak_bytes = compiled_memory_bytes(compiled)
            memory_source = 'compiled.memory_analysis'
          # After the memory peak is read: this compiles a one-step dispatch.
          flops, flops_source = flops_per_step(compiled, config, family, splits,
                                               os.path.join(tmp, 'flops'))
        trainer = loop.run(trainer_config, os.path.join(tmp, f'trainer{r}'),
                           _no_final_evaluation(family), splits)
        trainer_rates.append(trainer.get('train_steps_per_s') or 0.0)
      last_loss = np.asarray(jax.device_get(metrics['loss']))
      if backend == 'cpu':
        ceiling = max(ceiling, measure_matmul_tflops(compute_dtype))
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
    column = peak_dtype(compute_dtype, precision)
    per_device = peak_tflops_for(device.device_kind, column)
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
      'trainer_overhead': (trainer_steps_per_s / steps_per_s
                           if trainer_steps_per_s else None),
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
      'time_utc': datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds'),
  }


def compile_dispatch(config, family, splits, workdir: str):
  """The trainer's dispatch for `config` (`steps_per_loop` steps, `config.parallel`'s
  wrapper, state donated), lowered and compiled for its initial state and first chunk.

  Returns:
    `(setup, state, chunk, compiled, compile_s)`: `setup` and `state` as `loop.run`
    prepares them (the training set in `state['data']` when it is kept on the device),
    `chunk` the first `steps_per_loop` batches in the layout the dispatch takes.
  """
  from gm_jax.train import loop  # pylint: disable=g-import-not-at-top
  # The trainer's own preparation, feeder and jitted step (private to the loop, used
  # here so that the bench times exactly what `loop.run` runs).
  setup, state = loop._prepare(config, workdir, family, splits)  # pylint: disable=protected-access
  if setup.resident:  # as `loop.run` does: the training set lives on the device
    state = dict(state, data=dict(splits.train))
  state = setup.dp.put_state(state)
  chunk = loop._Feeder(setup).chunk(0, setup.steps_per_loop)  # pylint: disable=protected-access
  t0 = time.perf_counter()
  compiled = setup.dp._step.lower(state, chunk).compile()  # pylint: disable=protected-access
  return setup, state, chunk, compiled, time.perf_counter() - t0


def flops_per_step(compiled, config, family, splits, workdir: str) -> tuple[float, str]:
  """FLOPs of one train step of one device program, and how they were counted.

  `compiled`'s cost analysis when it runs one step; else a one-step dispatch is compiled
  and counted (XLA's cost analysis counts a rolled `lax.scan`'s body once, and whether
  `gm_jax.train.step.make_multi_step` rolls depends on the backend and the step).
  """
  from gm_jax.train import defaults  # pylint: disable=g-import-not-at-top
  k = int(defaults.get(config, 'steps_per_loop'))
  if k == 1:
    return compiled_flops(compiled), 'cost_analysis of the dispatch'
  one = config.copy_and_resolve_references()
  with one.unlocked():
    one.steps_per_loop = 1
  single = compile_dispatch(one, family, splits, workdir)[3]
  return compiled_flops(single), 'cost_analysis of a one-step dispatch'


# ---------------------------------------------------------------------------------------
# Command line.


def _parse(argv: Sequence[str]):
  p = argparse.ArgumentParser(prog='python -m gm_jax.bench',
                              description=__doc__.split('\n')[0])
  p.add_argument('--config', default=None, help='a config file, e.g. configs/vae.py')
  p.add_argument('--all', action='store_true',
                 help='every model config in --configs_dir, each in its own process')
  p.add_argument('--configs_dir', default='configs')
  p.add_argument('--steps', type=int, default=50,
                 help='train steps timed, bare and under the trainer (default 50)')
  p.add_argument('--windows', type=int, default=10, help='timing windows of the bare step')
  p.add_argument('--rounds', type=int, default=3,
                 help='turns of bare steps and trainer; the best of each counts (default 3)')
  p.add_argument('--min_seconds', type=float, default=15.0,
                 help='least time of the bare steps over all rounds, and so of the '
                      "trainer's (default 15)")
  p.add_argument('--out', default=None, help='JSONL file the rows are appended to')
  p.add_argument('--table', default=None,
                 help='print the Markdown table of the rows in this JSONL file and exit')
  args, rest = p.parse_known_args(list(argv))
  if args.table is not None:
    if rest or args.all or args.config is not None:
      raise BenchError('--table takes no other argument')
    return args, []
  overrides = []
  it = iter(rest)
  for item in it:
    if not item.startswith('--config.'):
      raise BenchError(f'unknown argument {item!r} (expected --config.KEY=VALUE, --config, '
                       '--all, --steps, --windows, --rounds, --min_seconds, --out, --table)')
    key, eq, value = item[len('--config.'):].partition('=')
    if not eq:
      value = next(it, None)
      if value is None:
        raise BenchError(f'{item} needs a value: --config.{key}=VALUE')
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


def _emit(row: dict, out: Optional[str]) -> None:
  line = json.dumps(row, sort_keys=False)
  if out:
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with open(out, 'a') as f:
      f.write(line + '\n')
  print(line, flush=True)


def summary_table(rows: Sequence[dict]) -> str:
  """Markdown table of rows: the config, its step, the trainer's overhead and the MFU."""
  def fmt(v, spec):
    return '-' if v is None else format(v, spec)
  lines = ['| config | batch | K | step ms (median) | steps/s | trainer steps/s | '
           'trainer_overhead | GFLOP/step | achieved TFLOP/s | MFU | load 1m |',
           '|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|']
  for r in rows:
    flops = r.get('flops_per_step')
    lines.append(
        f"| {os.path.basename(r.get('config') or '') or r['model']} | {r['global_batch']} | "
        f"{r.get('steps_per_loop', 1)} | {fmt(r['step_ms_median'], '.3g')} | "
        f"{fmt(r['steps_per_s'], ',.1f')} | {fmt(r['trainer_steps_per_s'], ',.1f')} | "
        f"{fmt(r['trainer_overhead'], '.2f')} | {fmt(flops and flops / 1e9, '.3g')} | "
        f"{fmt(r['achieved_tflops'], '.3f')} | {fmt(r['mfu'], '.2f')} | "
        f"{fmt(r.get('load_avg_1m'), '.1f')} |")
  return '\n'.join(lines)


def read_rows(path: str) -> list[dict]:
  """The rows of a JSONL file `--out` wrote (the last row of each config wins)."""
  try:
    with open(path) as f:
      rows = [json.loads(line) for line in f if line.strip()]
  except OSError as e:
    raise BenchError(f'--table: cannot read {path!r}: {e}') from e
  except json.JSONDecodeError as e:
    raise BenchError(f'--table: {path!r} is not JSONL of bench rows: {e}') from e
  last = {}
  for r in rows:
    if not isinstance(r, dict) or 'model' not in r:
      raise BenchError(f'--table: {path!r} holds a line that is not a bench row')
    last[(r.get('config'), r['model'], r.get('compute_dtype'), r.get('steps_per_loop'),
          r.get('device_kind'))] = r
  return list(last.values())


def _run_all(args, overrides) -> int:
  paths = model_configs(args.configs_dir)
  if not paths:
    raise BenchError(f'--all: no model configs in {args.configs_dir!r}')
  rows, failed = [], []
  for path in paths:
    cmd = [sys.executable, '-m', 'gm_jax.bench', f'--config={path}',
           *[f'--config.{key}={value}' for key, value in overrides],
           f'--steps={args.steps}', f'--windows={args.windows}', f'--rounds={args.rounds}',
           f'--min_seconds={args.min_seconds}']
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
      print(f'gm_jax.bench: {path} FAILED (exit {proc.returncode})', file=sys.stderr,
            flush=True)
    else:
      rows.append(row)
      print(f'gm_jax.bench: {path} done in {time.perf_counter() - t0:.0f} s',
            file=sys.stderr, flush=True)
  print(summary_table(rows), file=sys.stderr)
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
    print(summary_table(read_rows(args.table)))
    return 0
  if args.all:
    return _run_all(args, overrides)
  config = load_config(args.config, overrides)
  row = bench_config(config, steps=args.steps, windows=args.windows, rounds=args.rounds,
                     min_seconds=args.min_seconds, config_path=args.config)
  _emit(row, args.out)
  return 0


# ---------------------------------------------------------------------------------------
# benchmarks/data_parallel.py: the three parallel modes on random batches.


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
  from gm_jax import parallel  # pylint: disable=g-import-not-at-top
  from gm_jax.train import optim  # pylint: disable=g-import-not-at-top
  from gm_jax.train import step as step_lib  # pylint: disable=g-import-not-at-top
  init_key, train_key = jax.random.split(jax.random.key(0))
  tx = optim.make_optimizer(config)
  params = jax.tree.map(np.asarray, family.init(init_key, batches[0]))
  group = args.loss_group_size or args.per_device_batch
  dp = parallel.make(mode, step_lib.make_train_step(family, tx, train_key, group_size=group))
  state = dp.put_state({'step': np.int32(0), 'params': params,
                        'opt_state': tx.init(jax.tree.map(jnp.asarray, params))})
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


def parallel_modes_main(argv: Optional[Sequence[str]] = None, *, doc: str = '') -> None:
  """`benchmarks/data_parallel.py`'s command line (see its docstring); JSON lines on stdout."""
  from gm_jax import data as gm_data  # pylint: disable=g-import-not-at-top
  from gm_jax import families
  p = argparse.ArgumentParser(description=(doc or __doc__).split('\n')[0])
  p.add_argument('--model', default='vae', help='a config in configs/ (not a classifier)')
  p.add_argument('--configs_dir', default=os.path.join(
      os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'configs'))
  p.add_argument('--architecture', default='conv', help="'mlp' or 'conv' where the model has it")
  p.add_argument('--dataset', default='digits', help='shapes only: random images are used')
  p.add_argument('--per_device_batch', type=int, default=64)
  p.add_argument('--steps', type=int, default=100)
  p.add_argument('--warmup', type=int, default=5)
  p.add_argument('--repeats', type=int, default=3)
  p.add_argument('--modes', default='none,pmap,sharding')
  p.add_argument('--in_flight', default='0',
                 help='comma-separated counts of steps the host may run ahead of the '
                      'device (0 = read every loss back before the next step)')
  p.add_argument('--set', action='append', default=[], metavar='FIELD=VALUE',
                 help='override a config field (Python literal), repeatable')
  # Default 0: one loss call per device shard, the throughput setting (measured on 4
  # forced CPU devices: pmap/sharding 1.007; with per-example groups, 1, it was 0.755).
  p.add_argument('--loss_group_size', type=int, default=0,
                 help='config.loss_group_size; 0 = the per-device batch (one loss call '
                      'per device, as a trainer without per-example keys would do)')
  args = p.parse_args(argv)

  n = jax.device_count()
  config = _modes_config(args)
  info = gm_data.get_info(args.dataset)
  config = families.complete(config)
  family = families.module_for(args.model).make_family(config, info)
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


def run() -> int:
  """`python -m gm_jax.bench`: errors in the command line exit 2 with their message."""
  os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
  from absl import logging  # pylint: disable=g-import-not-at-top
  logging.set_verbosity(logging.WARNING)  # orbax/tfds INFO lines
  if '--all' not in sys.argv and not any(a.startswith('--table') for a in sys.argv):
    _fresh_compilation_cache()  # one config in this process
  try:
    return main(sys.argv[1:])
  except BenchError as e:
    print(f'gm_jax.bench: error: {e}', file=sys.stderr)
    return 2


if __name__ == '__main__':
  sys.exit(run())
