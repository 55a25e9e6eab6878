"""Loading into NumPy, deterministic batching and input errors."""
import os
import subprocess
import sys

import numpy as np
import pytest
from sklearn import datasets

from gm_jax import data


@pytest.fixture(scope='session')
def digits_splits(data_dir):
  return data.load_splits('digits', data_dir=data_dir)


# --- get_info ---------------------------------------------------------------


@pytest.mark.parametrize(
    'name, kind, shape, levels, classes',
    [
        ('digits', 'image', (8, 8, 1), 17, 10),
        ('photo_patches', 'image', (32, 32, 3), 256, 2),
        ('mnist', 'image', (28, 28, 1), 256, 10),
        ('binarized_mnist', 'image', (28, 28, 1), 2, None),
        ('cifar10', 'image', (32, 32, 3), 256, 10),
        ('cycle_gan/horse2zebra', 'image', (256, 256, 3), 256, 2),
        ('mnist:3.0.1', 'image', (28, 28, 1), 256, 10),
    ],
)
def test_get_info(name, kind, shape, levels, classes):
  info = data.get_info(name)
  assert (info.kind, info.shape, info.num_levels, info.num_classes) == (
      kind, shape, levels, classes)
  assert info.num_dims == int(np.prod(shape))


def test_get_info_text():
  from pydoc_data import topics  # pylint: disable=g-import-not-at-top

  info = data.get_info('pydoc_chars')
  assert (info.kind, info.shape, info.num_levels) == ('text', (128,), 256)
  assert info.num_classes == len(topics.topics)
  assert info.num_dims == 128


def test_unknown_dataset_is_named_with_the_known_ones(tmp_path):
  with pytest.raises(ValueError, match=r"'mnistt'.*digits.*mnist"):
    data.get_info('mnistt')
  with pytest.raises(ValueError, match="'mnistt'"):
    data.load_split('mnistt', 'train', data_dir=str(tmp_path))
  assert not os.listdir(tmp_path)  # Rejected before touching data_dir.


# --- load_split / load_splits ----------------------------------------------


def test_load_split_digits_matches_sklearn(data_dir):
  digits = datasets.load_digits()
  for split, rows in (('train', slice(None, 1437)), ('test', slice(-360, None))):
    arrays = data.load_split('digits', split, data_dir=data_dir)
    assert set(arrays) == {'image', 'label'}
    assert arrays['image'].dtype == np.uint8
    assert arrays['label'].dtype == np.int32
    np.testing.assert_array_equal(
        arrays['image'][..., 0], digits.images[rows].astype(np.uint8))
    np.testing.assert_array_equal(arrays['label'], digits.target[rows])


def test_load_split_accepts_tfds_split_strings(data_dir):
  head = data.load_split('digits', 'train[:100]', data_dir=data_dir)
  full = data.load_split('digits', 'train', data_dir=data_dir)
  np.testing.assert_array_equal(head['image'], full['image'][:100])
  np.testing.assert_array_equal(head['label'], full['label'][:100])


def test_load_split_text_and_photos(data_dir):
  text = data.load_split('pydoc_chars', 'test', data_dir=data_dir)
  assert set(text) == {'tokens', 'label'}
  assert text['tokens'].dtype == np.int32 and text['tokens'].shape[1:] == (128,)
  assert text['label'].dtype == np.int32
  assert 0 <= text['tokens'].min() and text['tokens'].max() < 256
  photos = data.load_split('photo_patches', 'test', data_dir=data_dir)
  assert set(photos) == {'image', 'label'}
  assert photos['image'].shape == (350, 32, 32, 3)
  assert photos['image'].dtype == np.uint8


def test_load_splits_validation_is_tail_of_train(digits_splits, data_dir):
  s = digits_splits
  assert s.info == data.get_info('digits')
  assert len(s.train['label']) == 1293 and len(s.validation['label']) == 144
  full = data.load_split('digits', 'train', data_dir=data_dir)
  for key in ('image', 'label'):
    np.testing.assert_array_equal(s.train[key], full[key][:1293])
    np.testing.assert_array_equal(s.validation[key], full[key][1293:])
  assert len(s.test['label']) == 360


def test_load_splits_without_validation(data_dir):
  s = data.load_splits('digits', data_dir=data_dir, validation_fraction=0)
  assert len(s.train['label']) == 1437
  assert s.validation['image'].shape == (0, 8, 8, 1)
  assert s.validation['label'].shape == (0,)
  with pytest.raises(ValueError, match='validation_fraction'):
    data.load_splits('digits', data_dir=data_dir, validation_fraction=1.0)


def test_data_dir_under_a_file_is_named(tmp_path):
  blocker = tmp_path / 'a_file'
  blocker.write_text('not a directory')
  bad = str(blocker / 'tfds')
  with pytest.raises(ValueError, match='data_dir') as e:
    data.load_split('digits', 'train', data_dir=bad)
  assert bad in str(e.value)


@pytest.mark.skipif(
    hasattr(os, 'geteuid') and os.geteuid() == 0,
    reason='root can write to read-only directories')
def test_read_only_data_dir_is_named(tmp_path):
  ro = tmp_path / 'read_only'
  ro.mkdir()
  ro.chmod(0o555)
  try:
    # tfds prepares its copy of digits in data_dir; load_split writes nothing.
    with pytest.raises(ValueError, match='not writable') as e:
      data.make_tf_dataset('digits', 'train', batch_size=8, data_dir=str(ro))
    assert str(ro) in str(e.value)
    assert len(data.load_split('digits', 'test', data_dir=str(ro))['label']) == 360
  finally:
    ro.chmod(0o755)


def test_import_does_not_load_tensorflow():
  code = ('import sys, gm_jax.data; '
          "assert 'tensorflow' not in sys.modules; "
          "assert 'tensorflow_datasets' not in sys.modules")
  subprocess.run([sys.executable, '-c', code], check=True)


# --- batch_at_step -----------------------------------------------------------


def _indexed(n):
  return {'index': np.arange(n), 'x': np.arange(n) * 10.0}


def test_batch_at_step_matches_definition():
  n, bs, seed = 53, 8, 3
  arrays = _indexed(n)
  steps_per_epoch = n // bs
  for step in (0, 5, 6, 7, 20):
    epoch, pos = divmod(step, steps_per_epoch)
    perm = np.random.default_rng([seed, epoch]).permutation(n)
    want = perm[pos * bs:(pos + 1) * bs]
    got = data.batch_at_step(arrays, step, batch_size=bs, seed=seed)
    np.testing.assert_array_equal(got['index'], want)
    np.testing.assert_array_equal(got['x'], want * 10.0)


def test_batch_at_step_is_a_pure_function_of_step_and_seed():
  arrays = _indexed(40)
  forward = [data.batch_at_step(arrays, s, batch_size=8, seed=1)['index']
             for s in range(12)]
  backward = [data.batch_at_step(arrays, s, batch_size=8, seed=1)['index']
              for s in reversed(range(12))][::-1]
  for a, b in zip(forward, backward):
    np.testing.assert_array_equal(a, b)
  other = data.batch_at_step(arrays, 0, batch_size=8, seed=2)['index']
  assert not np.array_equal(forward[0], other)


def test_each_epoch_covers_every_example_once():
  arrays = _indexed(40)
  epochs = []
  for epoch in range(3):
    seen = np.concatenate([
        data.batch_at_step(arrays, epoch * 5 + s, batch_size=8, seed=0)['index']
        for s in range(5)])
    np.testing.assert_array_equal(np.sort(seen), np.arange(40))
    epochs.append(seen)
  assert not np.array_equal(epochs[0], epochs[1])


def test_remainder_is_skipped_without_repeats():
  arrays = _indexed(43)  # 5 batches of 8; 3 examples skipped per epoch.
  seen = np.concatenate([
      data.batch_at_step(arrays, s, batch_size=8, seed=0)['index']
      for s in range(5)])
  assert len(np.unique(seen)) == 40


def test_shards_concatenate_to_the_global_batch():
  arrays = _indexed(64)
  for step in (0, 9):
    full = data.batch_at_step(arrays, step, batch_size=16, seed=4)
    shards = [data.batch_at_step(arrays, step, batch_size=16, seed=4,
                                 shard_index=i, shard_count=4)
              for i in range(4)]
    assert all(len(s['index']) == 4 for s in shards)
    for key in full:
      np.testing.assert_array_equal(
          np.concatenate([s[key] for s in shards]), full[key])


@pytest.mark.parametrize(
    'kwargs, match',
    [
        (dict(batch_size=0), 'batch_size must be positive'),
        (dict(batch_size=-4), 'batch_size must be positive'),
        (dict(batch_size=11), 'larger than the number of examples'),
        (dict(batch_size=6, shard_count=4), 'divisible by shard_count'),
        (dict(batch_size=4, shard_count=2, shard_index=2), 'shard_index'),
        (dict(batch_size=4, seed=-1), 'seed'),
    ],
)
def test_batch_at_step_errors(kwargs, match):
  kwargs = {'seed': 0, **kwargs}
  with pytest.raises(ValueError, match=match):
    data.batch_at_step(_indexed(10), 0, **kwargs)


def test_batch_at_step_on_real_data(digits_splits):
  batch = data.batch_at_step(digits_splits.train, 7, batch_size=32, seed=0)
  assert batch['image'].shape == (32, 8, 8, 1)
  assert batch['label'].shape == (32,)


# --- iterate_batches ---------------------------------------------------------


def test_iterate_batches_in_order_with_short_last_batch():
  arrays = _indexed(10)
  batches = list(data.iterate_batches(arrays, 4))
  assert [len(b['index']) for b in batches] == [4, 4, 2]
  np.testing.assert_array_equal(
      np.concatenate([b['index'] for b in batches]), np.arange(10))
  with pytest.raises(ValueError, match='batch_size must be positive'):
    list(data.iterate_batches(arrays, 0))


# --- make_tf_dataset ---------------------------------------------------------


def test_make_tf_dataset_digits(data_dir):
  test = data.load_split('digits', 'test', data_dir=data_dir)
  ds = data.make_tf_dataset('digits', 'test', batch_size=100, data_dir=data_dir)
  batches = list(ds.as_numpy_iterator())
  assert len(batches) == 3  # 360 // 100, remainder dropped.
  assert batches[0]['image'].shape == (100, 8, 8, 1)
  assert batches[0]['image'].dtype == np.uint8
  assert batches[0]['label'].dtype == np.int32
  np.testing.assert_array_equal(
      np.concatenate([b['label'] for b in batches]), test['label'][:300])

  shuffled = data.make_tf_dataset('digits', 'test', batch_size=100,
                                  data_dir=data_dir, shuffle_seed=0,
                                  drop_remainder=False)
  labels = [np.concatenate([b['label'] for b in shuffled.as_numpy_iterator()])
            for _ in range(2)]
  again = data.make_tf_dataset('digits', 'test', batch_size=100,
                               data_dir=data_dir, shuffle_seed=0,
                               drop_remainder=False)
  np.testing.assert_array_equal(
      np.concatenate([b['label'] for b in again.as_numpy_iterator()]), labels[0])
  assert not np.array_equal(labels[0], test['label'])
  np.testing.assert_array_equal(np.sort(labels[0]), np.sort(test['label']))
  with pytest.raises(ValueError, match='batch_size must be positive'):
    data.make_tf_dataset('digits', 'test', batch_size=0, data_dir=data_dir)


def test_concurrent_first_prepares_of_one_dataset_both_succeed(tmp_path):
  # Two trainers starting at once on a fresh data_dir used to race: the second's
  # rename of its `incomplete.*` folder onto the finished version failed.
  import threading  # pylint: disable=g-import-not-at-top

  from gm_jax.data import pipeline  # pylint: disable=g-import-not-at-top
  results, errors = [], []
  barrier = threading.Barrier(2)

  def prepare():
    try:
      barrier.wait()
      # The tfds copy (load_split builds digits without tfds, preparing nothing).
      builder = pipeline._prepared_builder('digits', str(tmp_path))  # pylint: disable=protected-access
      ds = builder.as_dataset(split='test', batch_size=-1, shuffle_files=False)
      results.append({k: v.numpy() for k, v in ds.items()})
    except Exception as e:  # pylint: disable=broad-except
      errors.append(e)

  threads = [threading.Thread(target=prepare) for _ in range(2)]
  for t in threads:
    t.start()
  for t in threads:
    t.join()
  assert not errors, errors
  assert len(results) == 2
  np.testing.assert_array_equal(results[0]['image'], results[1]['image'])
  assert len(results[0]['image']) == 360
  assert not [p for p in os.listdir(tmp_path / 'digits') if p.startswith('incomplete')]
