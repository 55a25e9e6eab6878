"""gm_jax.data.reading: one split into NumPy or tf.data, data_dir errors, no TF at import."""

import os
import subprocess
import sys

import numpy as np
import pytest
from sklearn import datasets

from gm_jax import data
from gm_jax.data import reading


def test_load_split_digits_matches_sklearn(data_dir):
  digits = datasets.load_digits()
  for split, rows in (('train', slice(None, 1437)), ('test', slice(-360, None))):
    arrays = data.load_split('digits', split, data_dir=data_dir)
    assert set(arrays) == {'image', 'label'}
    assert arrays['image'].dtype == np.uint8
    assert arrays['label'].dtype == np.int32
    np.testing.assert_array_equal(arrays['image'][..., 0], digits.images[rows].astype(np.uint8))
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


def test_data_dir_under_a_file_is_named(tmp_path):
  blocker = tmp_path / 'a_file'
  blocker.write_text('not a directory')
  bad = str(blocker / 'tfds')
  with pytest.raises(ValueError, match='data_dir') as e:
    data.load_split('digits', 'train', data_dir=bad)
  assert bad in str(e.value)


@pytest.mark.skipif(
  hasattr(os, 'geteuid') and os.geteuid() == 0, reason='root can write to read-only directories'
)
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
  code = (
    'import sys, gm_jax.data; '
    "assert 'tensorflow' not in sys.modules; "
    "assert 'tensorflow_datasets' not in sys.modules"
  )
  subprocess.run([sys.executable, '-c', code], check=True)


def test_make_tf_dataset_digits(data_dir):
  test = data.load_split('digits', 'test', data_dir=data_dir)
  ds = data.make_tf_dataset('digits', 'test', batch_size=100, data_dir=data_dir)
  batches = list(ds.as_numpy_iterator())
  assert len(batches) == 3  # 360 // 100, remainder dropped.
  assert batches[0]['image'].shape == (100, 8, 8, 1)
  assert batches[0]['image'].dtype == np.uint8
  assert batches[0]['label'].dtype == np.int32
  np.testing.assert_array_equal(np.concatenate([b['label'] for b in batches]), test['label'][:300])

  shuffled = data.make_tf_dataset(
    'digits', 'test', batch_size=100, data_dir=data_dir, shuffle_seed=0, drop_remainder=False
  )
  labels = [np.concatenate([b['label'] for b in shuffled.as_numpy_iterator()]) for _ in range(2)]
  again = data.make_tf_dataset(
    'digits', 'test', batch_size=100, data_dir=data_dir, shuffle_seed=0, drop_remainder=False
  )
  np.testing.assert_array_equal(
    np.concatenate([b['label'] for b in again.as_numpy_iterator()]), labels[0]
  )
  assert not np.array_equal(labels[0], test['label'])
  np.testing.assert_array_equal(np.sort(labels[0]), np.sort(test['label']))
  with pytest.raises(ValueError, match='batch_size must be positive'):
    data.make_tf_dataset('digits', 'test', batch_size=0, data_dir=data_dir)


def test_concurrent_first_prepares_of_one_dataset_both_succeed(tmp_path):
  # Two trainers starting at once on a fresh data_dir used to race: the second's
  # rename of its `incomplete.*` folder onto the finished version failed.
  import threading

  results, errors = [], []
  barrier = threading.Barrier(2)

  def prepare():
    try:
      barrier.wait()
      # The tfds copy (load_split builds digits without tfds, preparing nothing).
      builder = reading.prepared_builder('digits', str(tmp_path))
      ds = builder.as_dataset(split='test', batch_size=-1, shuffle_files=False)
      results.append({k: v.numpy() for k, v in ds.items()})
    except Exception as e:
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


def test_preparing_leaves_nothing_in_the_system_temporary_folder(tmp_path, monkeypatch):
  """tfds makes an empty `mkdtemp('tfds')` folder for every builder of a dataset not
  prepared yet, and never removes it (`reading._builder` keeps it out of /tmp)."""
  import tempfile

  system_tmp = tmp_path / 'system_tmp'
  system_tmp.mkdir()
  monkeypatch.setattr(tempfile, 'tempdir', str(system_tmp))
  builder = reading.prepared_builder('digits', str(tmp_path / 'tfds'))
  assert builder.is_prepared()
  assert tempfile.tempdir == str(system_tmp)
  assert sorted(os.listdir(system_tmp)) == []
