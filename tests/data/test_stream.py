"""gm_jax.data.stream: per-process parts, epochs, seeded order and exact resume.

Read through tfds from the real `digits` builder (prepared offline into the session's
data_dir, with tfds's own split metadata), the path a large tfds dataset takes.
"""

import numpy as np
import pytest

pytest.importorskip('tensorflow_datasets')

from gm_jax import data as gm_data
from gm_jax.data import reading
from gm_jax.data import stream

pytestmark = pytest.mark.xdist_group('tfds_mock')  # one worker imports TensorFlow


def _keys(images) -> list[bytes]:
  return [np.asarray(x).tobytes() for x in images]


@pytest.fixture(scope='module')
def digits(tfds_dir):
  splits = gm_data.load_splits(
    'digits', data_dir=tfds_dir, input_pipeline='stream', validation_fraction=0.1
  )
  return splits


def test_streamed_splits_hold_out_the_same_validation_rows_as_memory(digits, tfds_dir):
  memory = gm_data.load_splits('digits', data_dir=tfds_dir, validation_fraction=0.1)
  source = digits.train_stream
  assert memory.train_stream is None
  assert source == stream.StreamSource(
    name='digits', split='train[:1293]', data_dir=tfds_dir, num_examples=1293
  )
  for k in memory.validation:
    np.testing.assert_array_equal(digits.validation[k], memory.validation[k])
    np.testing.assert_array_equal(digits.test[k], memory.test[k])
    np.testing.assert_array_equal(digits.train[k], memory.train[k])  # the sample: all 1,293


def test_two_process_parts_are_disjoint_and_together_the_split(digits, tfds_dir):
  tfds = reading.import_tfds()
  builder = reading.prepared_builder('digits', tfds_dir)
  split = digits.train_stream.split
  whole = _keys(digits.train['image'])
  parts = []
  for p in range(2):
    part = stream.process_split(split, process_index=p, process_count=2)
    ds = builder.as_dataset(split=part, shuffle_files=False)
    parts.append(_keys(np.stack([ex['image'] for ex in tfds.as_numpy(ds)])))
    assert stream.num_examples(builder, part) == len(parts[-1]) == 1293 // 2
  assert not set(parts[0]) & set(parts[1])
  # Together: the split less its last row (1,293 is odd), which drop_remainder leaves out.
  assert parts[0] + parts[1] == whole[:1292]
  with pytest.raises(ValueError, match=r'process_index must be in \[0, 2\)'):
    stream.process_split(split, process_index=2, process_count=2)


@pytest.mark.parametrize('process_count', [1, 2])
def test_each_epoch_visits_every_row_of_the_part_once_in_a_new_order(digits, process_count):
  batch = 64
  seen_by_process = []
  for p in range(process_count):
    reader = gm_data.StreamedBatches(
      digits.train_stream,
      batch_size=batch,
      seed=3,
      process_index=p,
      process_count=process_count,
      shuffle_buffer=256,
    )
    local = batch // process_count
    assert reader.local_batch_size == local
    assert reader.steps_per_epoch == (1293 // process_count) // local
    it = reader.iterate(0)
    epochs = []
    for _ in range(2):
      rows = [next(it) for _ in range(reader.steps_per_epoch)]
      for b in rows:
        assert b['image'].shape == (local, 8, 8, 1) and b['image'].dtype == np.uint8
        assert b['label'].shape == (local,) and b['label'].dtype == np.int32
      epochs.append(_keys(np.concatenate([b['image'] for b in rows])))
    for keys in epochs:
      assert len(set(keys)) == len(keys) == reader.steps_per_epoch * local  # once each
      # At most one batch's worth of the part is left over each epoch.
      assert reader.part_examples - len(keys) < local
    assert epochs[0] != epochs[1]  # a new order per epoch
    assert set(epochs[0]) != set(_keys(digits.train['image'][: len(epochs[0])]))  # shuffled
    seen_by_process.append(set(epochs[0]))
  if process_count == 2:
    assert not seen_by_process[0] & seen_by_process[1]


def test_order_is_a_function_of_the_seed_and_resume_gives_the_same_batches(digits):
  def reader(seed, p=1):
    return gm_data.StreamedBatches(
      digits.train_stream,
      batch_size=128,
      seed=seed,
      process_index=p,
      process_count=2,
      shuffle_buffer=100,
    )

  r = reader(5)
  spe = r.steps_per_epoch  # 646 // 64 = 10
  it = r.iterate(0)
  straight = [next(it) for _ in range(2 * spe + 3)]
  again = reader(5).iterate(0)
  for b in straight[:3]:
    np.testing.assert_array_equal(next(again)['image'], b['image'])
  assert not np.array_equal(next(reader(6).iterate(0))['image'], straight[0]['image'])
  # Resumed mid-epoch, at an epoch boundary, and in the third epoch.
  for start in (4, spe, 2 * spe + 1):
    resumed = reader(5).iterate(start)
    for b in straight[start:]:
      got = next(resumed)
      np.testing.assert_array_equal(got['image'], b['image'])
      np.testing.assert_array_equal(got['label'], b['label'])


def test_errors_name_the_problem(digits, tfds_dir):
  with pytest.raises(
    ValueError,
    match=r'batch_size \(63\) must be divisible by the number '
    r'of processes \(2\)',
  ):
    gm_data.StreamedBatches(digits.train_stream, batch_size=63, seed=0, process_count=2)
  with pytest.raises(ValueError, match='fewer than the 2000 of one step'):
    gm_data.StreamedBatches(digits.train_stream, batch_size=2000, seed=0)
  with pytest.raises(ValueError, match='input_pipeline must be one of'):
    gm_data.load_splits('digits', data_dir=tfds_dir, input_pipeline='disk')
  with pytest.raises(ValueError, match="'trainA\\+trainB', several tfds splits"):
    gm_data.load_splits('cycle_gan/horse2zebra', data_dir=tfds_dir, input_pipeline='stream')


def test_auto_keeps_embedded_datasets_in_memory(tfds_dir):
  splits = gm_data.load_splits(
    'digits', data_dir=tfds_dir, input_pipeline='auto', memory_max_bytes=0
  )
  assert splits.train_stream is None
