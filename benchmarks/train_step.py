"""Training-step throughput of gm_jax against the same models in PyTorch, one process.

    python benchmarks/train_step.py [--cases vae_mlp_digits,pixelcnn_digits]
        [--repeats 5] [--min_seconds 2] [--out benchmarks/results/train_step]

Needs the `[bench]` extra (PyTorch, CPU build). For every case: the family's model
built from a shipped `configs/*.py` (plus the case's overrides), the JAX step is the
trainer's own (`gm_jax.train.loop.make_train_step` on `family.loss` or the family's
`train_update`, with the config's optimiser: clipping, Adam(W), schedule), jitted
with the state donated, and one loss call on the whole batch (`group_size = batch`,
what a user's script does; the trainer's default per-example groups are measured
separately by `benchmarks/data_parallel.py`). The PyTorch step is the replica in
`benchmarks/torch_ref/<family>.py`: same layers and widths (checked: the multiset of
parameter shapes must be equal, up to layout), same loss, same optimiser.

Timing: warm-up (compilation, first calls) excluded; then `--repeats` rounds, each
round timing JAX then PyTorch for at least `--min_seconds` each (interleaved, so
both see the same machine load); steps/s is the median over rounds. JAX blocks on the
step's outputs; PyTorch is synchronous on the CPU. `jax_step_bytes` is XLA's compiled
memory analysis of the step (arguments + outputs + temporaries - donated aliases);
`torch_peak_rss_mb` the process's peak RSS growth during the PyTorch case (coarse).

Prints one JSON line per case: `model`, `jax_steps_per_s`, `torch_steps_per_s`,
`ratio` (jax / torch), `batch`, `shape`, memory and parameter counts; with `--out`,
also writes `<out>.jsonl` and `<out>.md`.

What was tried on the convolution gap (ratios measured by this script, see
benchmarks/results/train_step.md for the current table):
{TRIED}
"""

from gm_jax import _xla

_xla.configure_cpu_flags()

import argparse
from collections.abc import Callable
import dataclasses
import importlib
import json
import os
import platform
import resource
import statistics
import sys
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from gm_jax import families
from gm_jax.data import DatasetInfo
from gm_jax.demo import load_config
from gm_jax.train import loop
from gm_jax.train import optim

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
  sys.path.insert(0, ROOT)

TRIED = """
  Baseline (flax.linen layers, idle 2-core x86_64, this script): vae_conv_mnist 0.84,
  pixelcnn_mnist 0.91, dcgan_digits 0.56, dcgan_photos 0.34, cyclegan_photos 1.43;
  every other case >= 1.23.
  1. Transposed convolutions as stride-1 convolutions (`gm_jax.nn.layers.ConvTranspose`,
     same parameters): XLA:CPU runs the input-dilated convolution of
     `nn.ConvTranspose`, above all its kernel gradient, on a slow path (8x8x128 ->
     16x16x64, batch 64, forward + backward 344 ms vs 44.5 ms per-phase; PyTorch 36 ms).
     With 2.: vae_conv_mnist 0.84 -> 1.38, dcgan_photos 0.34 -> 0.99, dcgan_digits
     0.56 -> 0.85, cyclegan_photos 1.43 -> 1.89.
  2. DCGAN: one generator forward per step (its VJP reused for G's gradient; the step
     ran G forward twice). Measured together with 1.
  3. Strided 4x4/2 convolutions as space-to-depth + stride-1 convolution
     (`layers.Conv`; the kernel gradient of the strided form is 10x its forward):
     dcgan_digits 0.85 -> 1.63, dcgan_photos 0.99 -> 1.00, cyclegan_photos 1.89 -> 2.06.
  4. One wide convolution for narrow transposed convolutions (`conv_transpose_fused`,
     prod(strides) * features <= 128): 16x16x64 -> 32x32x3 23.3 -> 15.0 ms.
  5. Categorical log-likelihood as logit[label] - logsumexp (no gather/scatter):
     [64, 28, 28, 256] forward + backward 81 -> 48 ms; no step-level change beyond noise.
  6. Dropout from 8-bit draws, four per threefry word (`layers.Dropout`; rate rounded to
     1/256): [64, 28, 28, 128] mask 151-173 -> 38 ms; pixelcnn_mnist 0.81 -> 1.14,
     char_lm_wide 1.09 -> 1.29 (dropout was 36% of the PixelCNN step: 0.255 steps/s
     with dropout 0.3 vs 0.402 without).
  7. Kernel gradients as GEMMs (found with XLA's per-op profile, `jax.profiler`): XLA
     computes the kernel gradient of a 1x1 convolution as a whole-image convolution
     over transposed operands and fuses the producer's elementwise work (the PixelCNN's
     gate, ELU) into that transpose: 7 such transposes took ~870 ms of the 3.04 s
     PixelCNN 28x28 step. `layers.pointwise_conv` (a dot over channels) for its 1x1
     layers: 3.04 -> 2.64 s per step; `layers.conv_tapwise_grad` (one GEMM per tap)
     for its (1, 2) horizontal convolutions: 2.64 -> 2.32 s; pixelcnn_mnist 1.06 ->
     1.22 (final table).
  Tried and dropped: space-to-depth for 3x3/2 convolutions (16/9 the multiply-adds:
  14x14x32 -> 64, 5.9 -> 10.7 ms), one wide convolution for wide transposed
  convolutions (8x8x128 -> 64: 42.6 -> 68.2 ms), 1x1 convolutions as einsum in the
  flows and before 7. (no consistent change), rbg keys for dropout (0.255 -> 0.298
  steps/s only, and rbg keys are not per-example under vmap, which the data-parallel
  equivalence needs). Tap-wise kernel gradients for larger windows: PixelCNN (2, 3)
  vertical convolutions 2.32 -> 2.74 s per step; DCGAN 32x32x3 per-phase transposed
  convolutions 205 -> 246 ms, its fused output layer 205 -> 235 ms, its space-to-depth
  convolutions 205 -> 206 ms; the char model's dilated 1-D convolution as per-tap dots
  88 -> 113 ms (char_lm_pydoc). DCGAN: the discriminator's real and fake passes as one
  vmapped pass (batch statistics kept per half) 203 -> 205 ms. XLA flags:
  `--xla_cpu_enable_concurrency_optimized_scheduler=false`, `--xla_cpu_use_onednn`,
  `--xla_cpu_experimental_onednn_custom_call` (jaxlib 0.10.2 emits no oneDNN
  convolution: no change beyond the +-10% noise). Earlier sessions measured
  im2col/GEMM rewrites of whole convolutions and bf16 slower.
  Left: dcgan_photos is compute-bound on both sides: 12.9 GFLOP per step (XLA's cost
  analysis), JAX ~175-205 ms = 63-74 GFLOP/s, PyTorch ~209 ms = 62 GFLOP/s, against a
  2048^3 matmul at 117 (JAX) / 96 (PyTorch) GFLOP/s on this machine; a ratio of 1.2
  would need 74 GFLOP/s sustained over 8x8-16x16 convolutions.
  Note: PyTorch's OpenMP threads collapse when the machine is busy (a VAE step 2.8
  steps/s with 2 threads under load vs 33 with 1 thread), so the ratios are only
  meaningful on an idle machine (the load average is recorded).
"""
__doc__ = __doc__.replace('{TRIED}', TRIED)

DIGITS = DatasetInfo('digits', 'image', (8, 8, 1), 17, 10)
MNIST = DatasetInfo('mnist_offline', 'image', (28, 28, 1), 256, 10)
PHOTOS = DatasetInfo('photo_patches', 'image', (32, 32, 3), 256, 2)
PYDOC = DatasetInfo('pydoc_chars', 'text', (128,), 256, 10)


@dataclasses.dataclass(frozen=True)
class Case:
  """One model to time: a shipped config, overrides, the data it sees."""

  name: str
  config: str  # path under configs/
  info: DatasetInfo
  family: str  # gm_jax.families.<family> and benchmarks.torch_ref.<family>
  overrides: tuple = ()

  def load_config(self):
    config = load_config(os.path.join(ROOT, 'configs', self.config))
    with config.unlocked():
      config.dataset = self.info.name
      for k, v in self.overrides:
        config[k] = v
    return families.complete(config)  # the family's DEFAULTS, as the trainer gets them


CASES = (
  Case('vae_mlp_digits', 'vae.py', DIGITS, 'vae'),
  Case('vae_conv_mnist', 'vae.py', MNIST, 'vae', (('architecture', 'conv'),)),
  Case('pixelcnn_digits', 'pixelcnn.py', DIGITS, 'autoregressive'),
  Case('pixelcnn_mnist', 'pixelcnn.py', MNIST, 'autoregressive'),
  Case('realnvp_digits', 'realnvp.py', DIGITS, 'flows'),
  Case('glow_digits', 'glow.py', DIGITS, 'flows'),
  Case('glow_photos', 'glow_photos.py', PHOTOS, 'flows'),
  Case('dcgan_digits', 'dcgan.py', DIGITS, 'gan'),
  Case('dcgan_photos', 'dcgan.py', PHOTOS, 'gan'),
  Case('cyclegan_photos', 'cyclegan_photos.py', PHOTOS, 'cyclegan'),
  Case('char_lm_pydoc', 'char_lm.py', PYDOC, 'autoregressive'),
  Case(
    'char_lm_wide', 'char_lm.py', PYDOC, 'autoregressive', (('channels', 128), ('batch_size', 32))
  ),
)


def make_batch(case: Case, batch_size: int, seed: int = 0) -> dict:
  """A deterministic batch in the dataset's format (levels uniform at random)."""
  rng = np.random.default_rng(seed)
  info = case.info
  if info.kind == 'text':
    return {
      'tokens': rng.integers(0, info.num_levels, (batch_size,) + info.shape, np.int32),
      'label': rng.integers(0, info.num_classes, (batch_size,), np.int32),
    }
  images = lambda: rng.integers(0, info.num_levels, (batch_size,) + info.shape).astype(np.uint8)
  if case.family == 'cyclegan':
    return {'image_a': images(), 'image_b': images()}
  batch = {'image': images()}
  if info.num_classes:
    batch['label'] = rng.integers(0, info.num_classes, (batch_size,), np.int32)
  return batch


def trained_leaves(params) -> list:
  """The leaves under a `'params'` collection (batch-norm statistics excluded), or all
  leaves when the tree has no such key (CycleGAN keeps only weights in `params`)."""
  flat = jax.tree_util.tree_leaves_with_path(params)
  under = [x for path, x in flat if any(getattr(k, 'key', None) == 'params' for k in path)]
  return under or [x for _, x in flat]


def build_family(case: Case, batch_size: int, extra: tuple = ()):
  """`(config, batch, family, params)` of `case` (plus `extra` overrides), params from
  `family.init` with key 0 on a `make_batch` batch of `batch_size`."""
  config = case.load_config()
  with config.unlocked():
    for k, v in extra:
      config[k] = v
  batch = make_batch(case, batch_size)
  family = importlib.import_module(f'gm_jax.families.{case.family}').make_family(config, case.info)
  return config, batch, family, family.init(jax.random.key(0), batch)


def flax_signature(params) -> list:
  """`torch_ref.common.shape_signature` of the trained Flax parameters."""
  from benchmarks.torch_ref import common

  return common.shape_signature(tuple(x.shape) for x in trained_leaves(params))


def jax_side(case: Case, config, batch: dict):
  """The trainer's jitted step for `case`: `(step, state, params, compiled)`."""
  module = importlib.import_module(f'gm_jax.families.{case.family}')
  family = module.make_family(config, case.info)
  key = jax.random.key(int(config.seed))
  init_key, train_key = jax.random.split(key)
  params = family.init(init_key, batch)
  tx = optim.make_optimizer(config)
  opt_state = tx.init(params) if family.train_update is None else family.train_update.init(params)
  group = len(next(iter(batch.values())))
  train_step = loop.make_train_step(family, tx, train_key, group_size=group)
  state = {'step': jnp.asarray(0, jnp.int32), 'params': params, 'opt_state': opt_state}
  step = jax.jit(lambda s, b: train_step(s, b), donate_argnums=0)
  device_batch = jax.device_put(batch)
  compiled = step.lower(state, device_batch).compile()
  return compiled, state, device_batch, params


def _memory_bytes(compiled) -> int | None:
  try:
    m = compiled.memory_analysis()
    return int(
      m.argument_size_in_bytes
      + m.output_size_in_bytes
      + m.temp_size_in_bytes
      - m.alias_size_in_bytes
    )
  except Exception:
    return None


def _rss_mb() -> float:
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _time(fn: Callable[[], Any], min_seconds: float) -> float:
  """Steps/s of `fn` over at least `min_seconds` (and at least 3 calls)."""
  n, t0 = 0, time.perf_counter()
  while True:
    fn()
    n += 1
    elapsed = time.perf_counter() - t0
    if elapsed >= min_seconds and n >= 3:
      return n / elapsed


def run_case(case: Case, *, repeats: int, min_seconds: float, warmup: int = 3) -> dict:
  import torch

  torch_ref = importlib.import_module(f'benchmarks.torch_ref.{case.family}')
  from benchmarks.torch_ref import common

  config = case.load_config()
  batch = make_batch(case, int(config.batch_size))
  compiled, state, device_batch, params = jax_side(case, config, batch)
  torch.manual_seed(int(config.seed))
  rss0 = _rss_mb()
  torch_step, torch_module = torch_ref.make_step(config, case.info, batch)
  jax_sig, torch_sig = flax_signature(params), common.torch_signature(torch_module)
  if jax_sig != torch_sig:
    raise AssertionError(
      f'{case.name}: the PyTorch replica has other weights than the '
      f'Flax model:\n  jax   {jax_sig}\n  torch {torch_sig}'
    )

  holder = {'state': state}

  def jax_step():
    holder['state'], metrics = compiled(holder['state'], device_batch)
    jax.block_until_ready(metrics['loss'])
    return metrics

  jax_losses = [float(jax_step()['loss']) for _ in range(warmup)]
  torch_losses = [torch_step() for _ in range(warmup)]
  torch_rss = _rss_mb() - rss0
  jax_rates, torch_rates = [], []
  busy0 = _cpu_seconds()
  for _ in range(repeats):
    jax_rates.append(_time(jax_step, min_seconds))
    torch_rates.append(_time(torch_step, min_seconds))
  others = _others_cores(busy0, _cpu_seconds())
  jax_rate, torch_rate = statistics.median(jax_rates), statistics.median(torch_rates)
  return {
    'model': case.name,
    'family': case.family,
    'config': f'configs/{case.config}' + ''.join(f' {k}={v}' for k, v in case.overrides),
    'batch': int(config.batch_size),
    'shape': list(case.info.shape),
    'jax_steps_per_s': round(jax_rate, 3),
    'torch_steps_per_s': round(torch_rate, 3),
    'ratio': round(jax_rate / torch_rate, 3),
    'jax_rates': [round(r, 3) for r in jax_rates],
    'torch_rates': [round(r, 3) for r in torch_rates],
    'jax_step_bytes': _memory_bytes(compiled),
    'torch_peak_rss_mb': round(torch_rss, 1),
    'num_params': int(sum(x.size for x in trained_leaves(params))),
    'torch_num_params': common.num_params(torch_module),
    'first_loss_jax': jax_losses[0],
    'first_loss_torch': torch_losses[0],
    # The machine while this case was timed: the 1-min load average at its end (this
    # process's own threads included) and the CPU cores other processes used meanwhile.
    'load_avg_1m': round(os.getloadavg()[0], 2),
    'others_cpu_cores': None if others is None else round(others, 2),
  }


def _cpu_seconds() -> tuple[float, float, float] | None:
  """(wall, busy CPU seconds of the whole machine, CPU seconds of this process)."""
  try:
    with open('/proc/stat') as f:
      fields = [float(x) for x in f.readline().split()[1:]]
  except (OSError, ValueError):
    return None
  busy = sum(fields) - fields[3] - (fields[4] if len(fields) > 4 else 0.0)  # idle, iowait
  own = resource.getrusage(resource.RUSAGE_SELF)
  return (time.perf_counter(), busy / os.sysconf('SC_CLK_TCK'), own.ru_utime + own.ru_stime)


def _others_cores(start, end) -> float | None:
  """Mean CPU cores used by other processes between two `_cpu_seconds()`."""
  if start is None or end is None or end[0] <= start[0]:
    return None
  return max(0.0, ((end[1] - start[1]) - (end[2] - start[2])) / (end[0] - start[0]))


def to_markdown(rows: list[dict], meta: dict) -> str:
  lines = [
    '# Training step: gm_jax vs the same model in PyTorch (one process, interleaved)',
    '',
    f'Machine: {meta["machine"]}; jax {meta["jax"]}, torch {meta["torch"]}, '
    f'{meta["torch_threads"]} torch threads; XLA_FLAGS=`{meta["xla_flags"]}`.',
    f'Median of {meta["repeats"]} rounds of >= {meta["min_seconds"]} s per side. '
    'ratio = JAX steps/s / PyTorch steps/s (target >= 1.2). 1-min load average '
    f"{meta['load_avg_before']} before, {meta['load_avg_after']} after (PyTorch's "
    'OpenMP threads collapse on a busy machine: run it idle). Per row: the load '
    'average at the end of the case and the CPU cores other processes used while it '
    'was timed.',
    '',
    '| model | batch | shape | params | JAX steps/s | PyTorch steps/s | ratio | '
    "JAX step MiB | load 1m | others' cores |",
    '|---|---:|---|---:|---:|---:|---:|---:|---:|---:|',
  ]
  for r in rows:
    mib = f'{r["jax_step_bytes"] / 2**20:.1f}' if r.get('jax_step_bytes') else '-'
    others = r.get('others_cpu_cores')
    lines.append(
      f'| {r["model"]} | {r["batch"]} | {"x".join(map(str, r["shape"]))} | '
      f'{r["num_params"]:,} | {r["jax_steps_per_s"]:.2f} | '
      f'{r["torch_steps_per_s"]:.2f} | {r["ratio"]:.2f} | {mib} | '
      f'{r.get("load_avg_1m", "-")} | {"-" if others is None else others} |'
    )
  return '\n'.join(lines) + '\n'


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  p.add_argument('--cases', default='all', help='comma-separated case names, or all')
  p.add_argument('--repeats', type=int, default=5)
  p.add_argument('--min_seconds', type=float, default=2.0)
  p.add_argument('--out', default=None, help='write <out>.jsonl and <out>.md')
  p.add_argument('--list', action='store_true', help='print the case names and exit')
  args = p.parse_args(argv)
  if args.list:
    print('\n'.join(c.name for c in CASES))
    return
  names = [c.name for c in CASES]
  chosen = names if args.cases == 'all' else args.cases.split(',')
  unknown = [n for n in chosen if n not in names]
  if unknown:
    p.error(f'unknown case(s) {unknown}; known: {", ".join(names)}')
  try:
    import torch
  except ImportError:
    p.error("PyTorch is not installed: pip install -e '.[bench]'")
  load_before = os.getloadavg()[0]
  rows = []
  for case in CASES:
    if case.name in chosen:
      row = run_case(case, repeats=args.repeats, min_seconds=args.min_seconds)
      print(json.dumps(row), flush=True)
      rows.append(row)
  meta = {
    'machine': f'{platform.machine()}, {os.cpu_count()} cores',
    'jax': jax.__version__,
    'torch': torch.__version__,
    'torch_threads': torch.get_num_threads(),
    'xla_flags': os.environ.get('XLA_FLAGS', ''),
    'repeats': args.repeats,
    'load_avg_before': round(load_before, 2),
    'load_avg_after': round(os.getloadavg()[0], 2),
    'min_seconds': args.min_seconds,
  }
  if args.out:
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out + '.jsonl', 'w') as f:
      for row in rows:
        f.write(json.dumps(dict(row, **meta)) + '\n')
    with open(args.out + '.md', 'w') as f:
      f.write(to_markdown(rows, meta))


if __name__ == '__main__':
  main()
