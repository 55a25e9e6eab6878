"""gm_jax.data.reading: tfds arrays are checked where they enter (issue #40, part 3)."""

import pytest

pytest.importorskip('tensorflow_datasets')

from gm_jax.data import reading
from tests.data import tfds_mock

pytestmark = pytest.mark.xdist_group('tfds_mock')  # one worker imports TensorFlow


def test_tfds_split_in_range_loads(tmp_path):
  with tfds_mock.mock_tfds():
    arrays = reading.load_split('binarized_mnist', 'test', data_dir=str(tmp_path))
  assert arrays['image'].shape == (12, 28, 28, 1) and int(arrays['image'].max()) <= 1


def test_tfds_values_outside_the_levels_are_named(tmp_path, monkeypatch):
  rows = tfds_mock.rows

  def corrupt(name, split, indices):
    out = rows(name, split, indices)
    out['image'][3, 5, 6, 0] = 7  # a grey pixel in a dataset of 2 levels
    return out

  monkeypatch.setattr(tfds_mock, 'rows', corrupt)
  with tfds_mock.mock_tfds(), pytest.raises(ValueError) as e:
    reading.load_split('binarized_mnist', 'test', data_dir=str(tmp_path))
  message = str(e.value)
  for part in ("'binarized_mnist'", "'test'", "'image'", '7'):
    assert part in message, (part, message)
  assert len(message.splitlines()) <= 2
