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


def test_unprepared_tfds_dataset_without_network_fails_at_once(tmp_path, monkeypatch):
  """No network (every socket connection and name lookup refused here, so nothing leaves
  the machine; tfds's GCS lookups answer "not there"): one retry, then an error saying
  how to prepare or export the dataset, not minutes of back-off."""
  import socket
  import time

  from tensorflow_datasets.core.utils import gcs_utils

  attempts = []

  def no_network(*args, **kwargs):
    attempts.append(args)
    raise OSError('network is unreachable (test)')

  monkeypatch.setattr(socket, 'getaddrinfo', no_network)
  monkeypatch.setattr(socket.socket, 'connect', no_network)
  monkeypatch.setattr(gcs_utils, 'is_dataset_on_gcs', lambda *a, **k: False)
  monkeypatch.setattr(gcs_utils, 'gcs_dataset_info_files', lambda *a, **k: None)
  start = time.monotonic()
  with pytest.raises(RuntimeError) as e:
    reading.load_split('mnist', 'test', data_dir=str(tmp_path))
  elapsed = time.monotonic() - start
  message = str(e.value)
  assert "'mnist'" in message and 'tfds build mnist' in message
  assert 'python -m gm_jax.data.export --dataset mnist' in message
  # tfds's default of 10 retries with exponential back-off takes minutes; one retry: each
  # of MNIST's 4 files tried at most twice.
  assert 0 < len(attempts) <= 2 * 4, attempts
  assert elapsed < 60, elapsed
