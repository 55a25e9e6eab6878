"""Measuring the bare train step: its compiled dispatch, timing windows, FLOPs, memory, peak.

The dispatch is the trainer's own (`steps_per_loop` steps wrapped by `config.parallel`,
state donated), compiled from what `gm_jax.train.loop.run` prepares; FLOPs come from
XLA's cost analysis, memory from the device or the compiled program, and the peak
FLOP/s from the vendor's sheet (`PEAK_TFLOPS`) or, on CPU, a timed matmul.
"""

from __future__ import annotations

from collections.abc import Sequence
import re
import time

import jax
import jax.numpy as jnp

from gm_jax.train import defaults
from gm_jax.train import loop

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


def peak_dtype(compute_dtype: str, matmul_precision: str = 'default') -> str:
  """The `PEAK_TFLOPS` column a train step's matmuls run in ('tf32': float32 at default)."""
  if compute_dtype in ('bfloat16', 'float16'):
    return compute_dtype
  return 'tf32' if matmul_precision == 'default' else 'float32'


def peak_tflops_for(device_kind: str, dtype: str) -> float | None:
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


def measure_matmul_tflops(dtype: str = 'float32', *, size: int = 2048, repeats: int = 3) -> float:
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
  return 2.0 * size**3 / best / 1e12


def compiled_flops(compiled) -> float:
  """The `'flops'` of `compiled.cost_analysis()` (a dict in jax 0.10; a list of them per
  program in older versions, of which the first, every device running the same program)."""
  cost = compiled.cost_analysis()
  if isinstance(cost, (list, tuple)):
    cost = cost[0] if cost else {}
  return float((cost or {}).get('flops', 0.0))


def compiled_memory_bytes(compiled) -> int | None:
  """temp + argument + output bytes of `compiled.memory_analysis()` (None if unavailable)."""
  stats = compiled.memory_analysis()
  if stats is None:
    return None
  return int(stats.temp_size_in_bytes + stats.argument_size_in_bytes + stats.output_size_in_bytes)


def device_peak_bytes(device) -> int | None:
  """`device.memory_stats()`'s peak bytes in use, or None where the backend has none."""
  try:
    stats = device.memory_stats()
  except Exception:  # not every backend implements it
    return None
  return int(stats['peak_bytes_in_use']) if stats and 'peak_bytes_in_use' in stats else None


def window_sizes(dispatches: int, windows: int) -> list[int]:
  """`dispatches` split into at most `windows` near-equal timing windows."""
  windows = max(1, min(windows, dispatches))
  base, extra = divmod(dispatches, windows)
  return [base + (i < extra) for i in range(windows)]


def time_windows(compiled, state, chunk, sizes: Sequence[int]):
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


def compile_dispatch(config, family, splits, workdir: str):
  """The trainer's dispatch for `config` (`steps_per_loop` steps, `config.parallel`'s
  wrapper, state donated), lowered and compiled for its initial state and first chunk.

  Returns:
    `(setup, state, chunk, compiled, compile_s)`: `setup` and `state` as `loop.run`
    prepares them (the training set in `state['data']` when it is kept on the device),
    `chunk` the first `steps_per_loop` batches in the layout the dispatch takes.
  """
  # The trainer's own preparation, feeder and jitted step (private to the loop, used
  # here so that the bench times exactly what `loop.run` runs).
  setup, state = loop._prepare(config, workdir, family, splits)
  if setup.resident:  # as `loop.run` does: the training set lives on the device
    state = dict(state, data=dict(splits.train))
  state = setup.dp.put_state(state)
  chunk = loop._Feeder(setup).chunk(0, setup.steps_per_loop)
  t0 = time.perf_counter()
  compiled = setup.dp._step.lower(state, chunk).compile()
  return setup, state, chunk, compiled, time.perf_counter() - t0


def flops_per_step(compiled, config, family, splits, workdir: str) -> tuple[float, str]:
  """FLOPs of one train step of one device program, and how they were counted.

  `compiled`'s cost analysis when it runs one step; else a one-step dispatch is compiled
  and counted (XLA's cost analysis counts a rolled `lax.scan`'s body once, and whether
  `gm_jax.train.step.make_multi_step` rolls depends on the backend and the step).
  """
  k = int(defaults.get(config, 'steps_per_loop'))
  if k == 1:
    return compiled_flops(compiled), 'cost_analysis of the dispatch'
  one = config.copy_and_resolve_references()
  with one.unlocked():
    one.steps_per_loop = 1
  single = compile_dispatch(one, family, splits, workdir)[3]
  return compiled_flops(single), 'cost_analysis of a one-step dispatch'
