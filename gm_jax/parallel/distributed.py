"""Multi-process start-up: `jax.distributed.initialize` from command-line flags.

Every process runs the same command with its own `process_id`:

    python -m gm_jax.main --config=configs/vae.py --workdir=/tmp/vae \
        --config.parallel=sharding \
        --coordinator_address=10.0.0.1:1234 --num_processes=2 --process_id=0   # host 0
    ...                                      --num_processes=2 --process_id=1   # host 1

Must run before anything asks JAX for its devices.
"""

from __future__ import annotations

from typing import Any

import jax


def initialize(
  coordinator_address: str | None = None,
  num_processes: int | None = None,
  process_id: int | None = None,
  *,
  auto: bool = False,
) -> bool:
  """Joins this process to a multi-process JAX job.

  Args:
    coordinator_address: `HOST:PORT` of process 0's coordinator service.
    num_processes: number of processes in the job.
    process_id: this process's index in `[0, num_processes)`.
    auto: let JAX detect what is not given from the cluster (Cloud TPU pod
      slices, SLURM, Open MPI) instead of requiring all three.

  Returns:
    True if `jax.distributed.initialize` was called; False for a single-process run
    (no argument given).

  Raises:
    ValueError: a partial or inconsistent set of arguments (names the flag).
  """
  given: dict[str, Any] = {
    'coordinator_address': coordinator_address,
    'num_processes': num_processes,
    'process_id': process_id,
  }
  if not auto and all(v is None for v in given.values()):
    return False
  if not auto:
    if coordinator_address is None or num_processes is None or process_id is None:
      missing = [f'--{k}' for k, v in given.items() if v is None]
      raise ValueError(
        f'multi-process training needs --coordinator_address, '
        f'--num_processes and --process_id; missing {", ".join(missing)}'
      )
    if ':' not in coordinator_address:
      raise ValueError(f'--coordinator_address must be HOST:PORT, got {coordinator_address!r}')
    if num_processes < 1:
      raise ValueError(f'--num_processes must be >= 1, got {num_processes}')
    if not 0 <= process_id < num_processes:
      raise ValueError(f'--process_id must be in [0, {num_processes}), got {process_id}')
  # CPU devices of different processes talk through gloo (TCP); without it the CPU
  # backend has no cross-process collectives. GPUs and TPUs ignore this setting.
  jax.config.update('jax_cpu_collectives_implementation', 'gloo')
  # With `auto`, whatever is not given is detected from the cluster's environment.
  jax.distributed.initialize(**{k: v for k, v in given.items() if v is not None})
  return True


def is_primary() -> bool:
  """Whether this process writes checkpoints, metrics and pictures (process 0)."""
  return jax.process_index() == 0
