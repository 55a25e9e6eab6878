"""Data parallelism: one step function, run with `none`, `pmap` or `jit` + sharding.

    from gm_jax import parallel
    dp = parallel.make(config.parallel, step_fn)   # step_fn(state, batch, *, axis_name=None)
    state = dp.put_state(state)
    state, metrics = dp.step(state, dp.put_batch(local_batch))

`gm_jax.train.loop` does this for every family; a family only writes `loss`.
`mean_over_groups` gives each example of the global batch its own key, so the three
modes compute the same numbers. `ShardedEval` splits evaluation batches over every
device of every process, and `map_examples` a per-example function over a whole test
split. `distributed.initialize` joins a multi-process job.
"""

from gm_jax.parallel import distributed
from gm_jax.parallel.distributed import initialize as initialize_distributed
from gm_jax.parallel.evaluation import eval_mesh
from gm_jax.parallel.evaluation import map_examples
from gm_jax.parallel.evaluation import ShardedEval
from gm_jax.parallel.modes import data_mesh
from gm_jax.parallel.modes import DataParallel
from gm_jax.parallel.modes import make
from gm_jax.parallel.modes import MODES
from gm_jax.parallel.modes import NoParallel
from gm_jax.parallel.modes import PmapParallel
from gm_jax.parallel.modes import ShardingParallel
from gm_jax.parallel.per_example import batch_size_of
from gm_jax.parallel.per_example import DATA_AXIS
from gm_jax.parallel.per_example import mean_over_groups
from gm_jax.parallel.per_example import per_example_keys
from gm_jax.parallel.per_example import shard_offset

__all__ = (
  'DATA_AXIS',
  'DataParallel',
  'MODES',
  'NoParallel',
  'ShardedEval',
  'PmapParallel',
  'ShardingParallel',
  'batch_size_of',
  'data_mesh',
  'distributed',
  'eval_mesh',
  'initialize_distributed',
  'make',
  'map_examples',
  'mean_over_groups',
  'per_example_keys',
  'shard_offset',
)
