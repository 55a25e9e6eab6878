"""Streaming a training split that is not read into memory: each process its own part.

`load_splits(..., input_pipeline='stream')` (or `'auto'` for a tfds split larger than
`memory_max_bytes`) returns `Splits.train_stream`, a `StreamSource`; the trainer reads
it with `StreamedBatches`:

* **Per process.** Process `p` of `P` reads only its part of the split,
  `tfds.split_for_jax_process(split, drop_remainder=True)`: the parts are disjoint,
  equal in size (`N // P` rows of each piece of the split; the at most `P - 1` rows
  left over are never read) and together the split.
* **Fixed global batch.** Each process yields `batch_size // P` rows per step; the
  global batch of step `t` is the processes' step-`t` batches in process order, the
  layout `batch_at_step(shard_index=p, shard_count=P)` has in memory.
* **Deterministic order from the seed.** Epoch `e` (`steps_per_epoch = part rows //
  local batch` steps, the remainder of each epoch skipped) reads the part with its
  files shuffled by, and its rows passed through a `shuffle_buffer`-row shuffle
  seeded with, `np.random.SeedSequence([seed, e])`; `tf.data.Options().deterministic`
  holds the order fixed whatever the parallelism of the map and the reads. So a
  run's batches are a function of `(seed, step)`, like `batch_at_step`, but the
  shuffle is a windowed one (rows farther apart than the buffer never swap) and
  the order differs from the in-memory path's. It also depends on the number of
  processes (each shuffles its own part), where the in-memory order does not: a
  streamed run resumes exactly under the same process count only.
* **Exact resume.** `iterate(start_step)` starts epoch `start_step //
  steps_per_epoch` and skips the batches of it already consumed: the same batches
  as a run that never stopped. The cost: reading, decoding and shuffling (not
  training on) up to one epoch of this process's part before the first batch.
* **Prefetch.** tf.data prefetches `prefetch` batches; the trainer puts the next
  chunk of `steps_per_loop` batches on the devices while the current one runs.

Validation and test splits, and a sample of the training split for what a family's
evaluation reads from training data, stay in memory (`load_splits`).

TensorFlow and tfds (`pip install gm_jax[tfds]`) are imported only when a stream is
read.
"""

from __future__ import annotations

from collections.abc import Iterator
import dataclasses

import numpy as np

from gm_jax.data import reading
from gm_jax.data.batching import check_batch_size
from gm_jax.data.catalogue import get_info

# Rows in the streamed shuffle's buffer (`config.shuffle_buffer_size` in the trainer).
DEFAULT_SHUFFLE_BUFFER = 16_384


@dataclasses.dataclass(frozen=True)
class StreamSource:
  """A training split read by tf.data instead of into memory.

  Attributes:
    name: dataset name (see `gm_jax.data.get_info`).
    split: tfds split string of the training rows, e.g. 'train[:54000]'.
    data_dir: tfds data directory (None: tfds's default).
    num_examples: rows of `split` (all processes together).
  """

  name: str
  split: str
  data_dir: str | None
  num_examples: int


def process_split(split: str, *, process_index: int, process_count: int):
  """The tfds split argument of process `process_index`'s part of `split`.

  `tfds.split_for_jax_process` with `drop_remainder=True`: disjoint parts of equal
  size that together are `split` less at most `process_count - 1` rows per piece.
  """
  tfds = reading.import_tfds()
  if not 0 <= process_index < process_count:
    raise ValueError(f'process_index must be in [0, {process_count}), got {process_index}')
  return tfds.split_for_jax_process(
    split, process_index=process_index, process_count=process_count, drop_remainder=True
  )


def num_examples(builder, split) -> int:
  """Rows of tfds split argument `split` of a prepared `builder`.

  From the dataset's metadata where tfds has it, else from the cardinality of the
  `tf.data.Dataset` (tfds's mock data has no split metadata).

  Raises:
    ValueError: neither knows the number (names the dataset and split).
  """
  try:
    return int(builder.info.splits[split].num_examples)
  except (KeyError, ValueError, TypeError, AttributeError):
    pass
  n = int(builder.as_dataset(split=split, shuffle_files=False).cardinality())
  if n < 0:
    raise ValueError(
      f'{builder.info.full_name}: the number of rows of split {split!r} '
      'is unknown, so it cannot be streamed in steps of a fixed batch'
    )
  return n


def _epoch_seed(seed: int, epoch: int) -> int:
  return int(np.random.SeedSequence([int(seed), int(epoch)]).generate_state(1)[0] >> 1)


class StreamedBatches:
  """This process's batches of a `StreamSource`, step after step (see the module doc).

  Attributes:
    local_batch_size: rows per step on this process, `batch_size // process_count`.
    part: this process's tfds split argument (`process_split`).
    part_examples: rows of `part`.
    steps_per_epoch: steps per pass over the part (the same on every process).
  """

  def __init__(
    self,
    source: StreamSource,
    *,
    batch_size: int,
    seed: int,
    process_index: int = 0,
    process_count: int = 1,
    shuffle_buffer: int = DEFAULT_SHUFFLE_BUFFER,
    prefetch: int = 2,
  ):
    batch_size = check_batch_size(batch_size)
    if batch_size % process_count:
      raise ValueError(
        f'batch_size ({batch_size}) must be divisible by the number of '
        f'processes ({process_count}): each reads an equal part'
      )
    if int(shuffle_buffer) < 1:
      raise ValueError(f'shuffle_buffer must be positive, got {shuffle_buffer!r}')
    if int(seed) < 0:
      raise ValueError(f'seed must be non-negative, got {seed}')
    self.source = source
    self.info = get_info(source.name)
    self.seed = int(seed)
    self.local_batch_size = batch_size // process_count
    self.shuffle_buffer = int(shuffle_buffer)
    self.prefetch = int(prefetch)
    self._builder = reading.prepared_builder(source.name, source.data_dir)
    self.part = process_split(
      source.split, process_index=process_index, process_count=process_count
    )
    self.part_examples = num_examples(self._builder, self.part)
    self.steps_per_epoch = self.part_examples // self.local_batch_size
    if self.steps_per_epoch < 1:
      raise ValueError(
        f'{source.name}: the part of split {source.split!r} each of {process_count} '
        f'process(es) streams has {self.part_examples} rows, fewer than the '
        f'{self.local_batch_size} of one step (batch_size {batch_size})'
      )

  def epoch_dataset(self, epoch: int, skip: int = 0):
    """The batched `tf.data.Dataset` of epoch `epoch`, its first `skip` batches dropped."""
    tf = reading.import_tf(self.source.name)
    tfds = reading.import_tfds(self.source.name)
    seed = _epoch_seed(self.seed, epoch)
    options = tf.data.Options()
    options.deterministic = True
    ds = self._builder.as_dataset(
      split=self.part,
      # tfds refuses to shuffle the files of datasets stored in order (the embedded
      # ones); the row shuffle below still mixes them.
      shuffle_files=not self._builder.info.disable_shuffling,
      read_config=tfds.ReadConfig(shuffle_seed=seed, options=options),
    )
    ds = ds.map(reading.select_features(self.info), num_parallel_calls=tf.data.AUTOTUNE)
    ds = ds.shuffle(self.shuffle_buffer, seed=seed, reshuffle_each_iteration=False)
    ds = ds.batch(self.local_batch_size, drop_remainder=True).take(self.steps_per_epoch)
    if skip:
      ds = ds.skip(skip)  # reads the skipped batches: the cost of resuming mid-epoch
    return ds.prefetch(self.prefetch).with_options(options)

  def iterate(self, start_step: int = 0) -> Iterator[dict[str, np.ndarray]]:
    """This process's batches of steps `start_step, start_step + 1, ...` (endless).

    Yields:
      `{key: [local_batch_size, ...]}` with `load_split`'s keys and dtypes.

    Raises:
      RuntimeError: an epoch ended early (the data changed since its row count was
        read); names the dataset, split and epoch.
    """
    start_step = int(start_step)
    if start_step < 0:
      raise ValueError(f'start_step must be non-negative, got {start_step}')
    tfds = reading.import_tfds(self.source.name)
    epoch, position = divmod(start_step, self.steps_per_epoch)
    while True:
      seen = position
      for batch in tfds.as_numpy(self.epoch_dataset(epoch, skip=position)):
        seen += 1
        yield batch
      if seen != self.steps_per_epoch:
        raise RuntimeError(
          f"{self.source.name}: epoch {epoch} of this process's part of "
          f'{self.source.split!r} gave {seen} batches, expected {self.steps_per_epoch}; '
          'the data changed while training'
        )
      epoch, position = epoch + 1, 0


def source_nbytes(info, rows: int) -> int:
  """Bytes of `rows` examples of `info` in memory (`load_split`'s dtypes)."""
  per_row = int(np.prod(info.shape)) * (1 if info.kind == 'image' else 4)
  if info.num_classes is not None:
    per_row += 4
  return per_row * int(rows)
