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
and data come from the family's own `train_and_evaluate`, stopped where it calls
`gm_jax.train.loop.run`, so the naive Bayes full-batch fit, the binarised VAEs and the
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

Modules: `measure` (the bare step: compile, timing windows, FLOPs, peak FLOP/s, memory),
`trainer` (the trainer-side rounds and the row, `bench_config`), `setup` (the one place
that reaches a family: `trainer_inputs`), `configs` (config files and their
`--config.KEY=VALUE` overrides, parsed by ml_collections as `gm_jax.main` does),
`table` (the Markdown table), `cli` (the command line; `__main__` runs it) and
`parallel_modes`.
"""

from gm_jax import _xla

_xla.configure_cpu_flags()  # before JAX starts its backend

from gm_jax.bench.cli import main
from gm_jax.bench.cli import run
from gm_jax.bench.configs import apply_overrides
from gm_jax.bench.configs import BenchError
from gm_jax.bench.configs import load_config
from gm_jax.bench.configs import model_configs
from gm_jax.bench.measure import compile_dispatch
from gm_jax.bench.measure import compiled_flops
from gm_jax.bench.measure import compiled_memory_bytes
from gm_jax.bench.measure import flops_per_step
from gm_jax.bench.measure import measure_matmul_tflops
from gm_jax.bench.measure import peak_dtype
from gm_jax.bench.measure import PEAK_TFLOPS
from gm_jax.bench.measure import peak_tflops_for
from gm_jax.bench.parallel_modes import parallel_modes_main
from gm_jax.bench.parallel_modes import parse_set
from gm_jax.bench.setup import trainer_inputs
from gm_jax.bench.table import read_rows
from gm_jax.bench.table import summary_table
from gm_jax.bench.trainer import bench_config
from gm_jax.bench.trainer import bench_settings
from gm_jax.bench.trainer import REQUIRED_KEYS

__all__ = (
  'BenchError',
  'PEAK_TFLOPS',
  'REQUIRED_KEYS',
  'apply_overrides',
  'bench_config',
  'bench_settings',
  'compile_dispatch',
  'compiled_flops',
  'compiled_memory_bytes',
  'flops_per_step',
  'load_config',
  'main',
  'measure_matmul_tflops',
  'model_configs',
  'parallel_modes_main',
  'parse_set',
  'peak_dtype',
  'peak_tflops_for',
  'read_rows',
  'run',
  'summary_table',
  'trainer_inputs',
)
