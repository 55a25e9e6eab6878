"""A family's datasets under the config's input settings (`gm_jax.data.load_splits`).

    config.input_pipeline = 'auto'   # 'auto' | 'memory' | 'stream'
    config.input_memory_max_bytes    # 'auto' streams a tfds training split above this
    config.shuffle_buffer_size       # rows of the streamed shuffle

'memory': every process reads the training split into memory and the batch of step
`s` is `gm_jax.data.batch_at_step` (the order the test numbers were measured with).
'stream': each process streams its own part through tf.data (`gm_jax.data.stream`).
'auto' streams only a tfds dataset whose training rows exceed
`input_memory_max_bytes`; the embedded datasets (`digits`, `photo_patches`,
`pydoc_chars`) and exported files are always in memory. Defaults:
`gm_jax.train.defaults.TRAINING`.
"""

from __future__ import annotations

import numpy as np

from gm_jax import data as gm_data
from gm_jax.train import defaults
from gm_jax.train.step import chunk_layout


def check(config) -> str:
  """`config.input_pipeline` (its default where absent), checked; errors name the field."""
  defaults.check_one_of(defaults.complete(config), 'input_pipeline', gm_data.INPUT_PIPELINES)
  return defaults.get(config, 'input_pipeline')


def load_splits(config) -> gm_data.Splits:
  """`gm_data.load_splits` of `config.dataset` with the config's data settings."""
  return gm_data.load_splits(
    config.dataset,
    data_dir=config.data_dir,
    validation_fraction=defaults.get(config, 'validation_fraction'),
    input_pipeline=check(config),
    memory_max_bytes=int(defaults.get(config, 'input_memory_max_bytes')),
  )


def require_memory(config, why: str) -> None:
  """A ValueError where `config.input_pipeline='stream'` for a family that cannot stream.

  Args:
    why: what needs the training split in memory, e.g. 'naive Bayes fits the whole
      training split in one step'.
  """
  if check(config) == 'stream':
    raise ValueError(
      f"config.input_pipeline='stream' is not supported here: {why}. Use 'memory' or 'auto'."
    )


class Feeder:
  """Puts chunk after chunk of step-determined batches on the devices, one ahead.

  In memory: step `t`'s batch is `batch_at_step` (of the example indices where the
  data is resident). Streamed: this process's batches of `gm_data.StreamedBatches`,
  consumed in step order from the first chunk's step. `s`: the loop's `_Setup`.
  """

  def __init__(self, s):
    self._s = s
    train = s.splits.train
    n = len(next(iter(train.values())))
    # The indices of step `t`'s batch are `batch_at_step` of the example indices.
    self._index = {'index': np.arange(n, dtype=np.int32)} if s.resident else train
    self._stream, self._next_step = None, None
    if s.splits.train_stream is not None:
      self._stream = gm_data.StreamedBatches(
        s.splits.train_stream,
        batch_size=s.config.batch_size,
        seed=s.seed,
        process_index=s.dp.shard_index,
        process_count=s.dp.shard_count,
        shuffle_buffer=int(s.config.shuffle_buffer_size),
      )

  def _streamed(self, start: int, steps: int) -> list:
    if self._next_step is None:
      self._batches, self._next_step = self._stream.iterate(start), start
    if start != self._next_step:
      raise ValueError(
        f'streamed batches are read in step order: asked for step {start}, '
        f'the stream is at step {self._next_step}'
      )
    self._next_step += steps
    return [next(self._batches) for _ in range(steps)]

  def chunk(self, start: int, steps: int):
    s = self._s
    if self._stream is not None:
      per_step = self._streamed(start, steps)
    else:
      per_step = [
        gm_data.batch_at_step(
          self._index,
          t,
          batch_size=s.config.batch_size,
          seed=s.seed,
          shard_index=s.dp.shard_index,
          shard_count=s.dp.shard_count,
        )
        for t in range(start, start + steps)
      ]
    return s.dp.put_batch(chunk_layout(per_step, s.group_devices))
