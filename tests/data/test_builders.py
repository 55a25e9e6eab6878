"""The offline tfds builders reproduce their sources exactly."""

import socket

import numpy as np
import pytest
from sklearn import datasets
import tensorflow_datasets as tfds

from gm_jax.data import builders
from gm_jax.data import catalogue
from gm_jax.data import reading


def _read(name, split, data_dir):
  """All features of a prepared split, straight from tfds (no pipeline)."""
  builder = reading.prepared_builder(name, data_dir)
  return tfds.as_numpy(builder.as_dataset(split=split, batch_size=-1))


@pytest.mark.parametrize('name', catalogue.EMBEDDED_DATASETS)
def test_registered_with_version(name, data_dir):
  builder = reading.prepared_builder(name, data_dir)
  assert builder.name == name
  assert str(builder.version) == '1.0.0'
  assert builder.info.disable_shuffling
  assert builder.is_prepared()


def test_digits_are_sklearn_digits_in_order(data_dir):
  digits = datasets.load_digits()
  assert np.array_equal(digits.images, np.round(digits.images))
  images = digits.images.astype(np.uint8)[..., None]
  train = _read('digits', 'train', data_dir)
  test = _read('digits', 'test', data_dir)
  assert train['image'].shape == (1437, 8, 8, 1)
  assert test['image'].shape == (360, 8, 8, 1)
  assert train['image'].dtype == np.uint8
  np.testing.assert_array_equal(train['image'], images[:1437])
  np.testing.assert_array_equal(train['label'], digits.target[:1437])
  np.testing.assert_array_equal(test['image'], images[-360:])
  np.testing.assert_array_equal(test['label'], digits.target[-360:])
  assert train['image'].max() == 16  # 17 grey levels, 0..16.


def _photos():
  sample = datasets.load_sample_images()
  by_name = {f.rsplit('/', 1)[-1]: im for f, im in zip(sample.filenames, sample.images)}
  return [by_name['china.jpg'], by_name['flower.jpg']]


def test_photo_patches_are_crops_and_splits_share_no_pixel(data_dir):
  photos = _photos()
  covered, counts = {}, {}
  for split in ('train', 'test'):
    ex = _read('photo_patches', split, data_dir)
    counts[split] = len(ex['label'])
    assert ex['image'].shape[1:] == (32, 32, 3)
    assert ex['image'].dtype == np.uint8
    assert set(ex['label']) == {0, 1}
    masks = [np.zeros(p.shape[:2], bool) for p in photos]
    for image, label, y, x in zip(ex['image'], ex['label'], ex['y'], ex['x']):
      np.testing.assert_array_equal(image, photos[label][y : y + 32, x : x + 32])
      masks[label][y : y + 32, x : x + 32] = True
    covered[split] = masks
  assert counts == {'train': 1550, 'test': 350}
  for label, photo in enumerate(photos):
    train, test = covered['train'][label], covered['test'][label]
    assert not np.any(train & test)
    # Test crops span the right-most 20% of the columns.
    test_columns = np.flatnonzero(test.any(axis=0))
    assert test_columns.min() == photo.shape[1] - 128
    assert test_columns.max() == photo.shape[1] - 1


def test_photo_patches_deterministic_and_offline(tmp_path, monkeypatch, data_dir):
  def no_network(*args, **kwargs):
    raise AssertionError('dataset preparation tried to use the network')

  monkeypatch.setattr(socket.socket, 'connect', no_network)
  monkeypatch.setattr(socket, 'create_connection', no_network)
  again = _read('photo_patches', 'train', str(tmp_path))
  first = _read('photo_patches', 'train', data_dir)
  for key in ('image', 'label', 'y', 'x'):
    np.testing.assert_array_equal(again[key], first[key])


def test_pydoc_chars_round_trip_to_topic_bytes(data_dir):
  from pydoc_data import topics

  names = sorted(topics.topics)
  seen = set()
  for split in ('train', 'test'):
    ex = _read('pydoc_chars', split, data_dir)
    assert ex['tokens'].shape[1:] == (128,)
    assert ex['tokens'].dtype == np.uint8
    for label in np.unique(ex['label']):
      assert builders.pydoc_topic_split(label) == split
      rows = ex['label'] == label
      order = np.argsort(ex['window'][rows])
      np.testing.assert_array_equal(order, np.arange(rows.sum()))
      text = topics.topics[names[label]].encode('utf-8')
      n = len(text) // 128 * 128
      assert ex['tokens'][rows].tobytes() == text[:n]
      seen.add(int(label))
  expected = {i for i, k in enumerate(names) if len(topics.topics[k].encode()) >= 128}
  assert seen == expected
  test_topics = {i for i in seen if i % 10 == 9}
  assert set(np.unique(_read('pydoc_chars', 'test', data_dir)['label'])) == test_topics


def test_photo_patch_grid_rejects_unknown_split():
  with pytest.raises(ValueError, match='split'):
    builders.photo_patch_grid(64, 640, 'validation')
