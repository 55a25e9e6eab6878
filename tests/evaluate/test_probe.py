"""Linear-probe accuracy against cases whose answer is known."""

import numpy as np
import pytest

from gm_jax.evaluate import probe


def test_separable_features_give_full_accuracy():
  rng = np.random.default_rng(0)
  labels = rng.integers(0, 3, 300)
  centres = np.array([[10.0, 0.0], [0.0, 10.0], [-10.0, -10.0]])
  feats = centres[labels] + rng.normal(size=(300, 2))
  assert probe.linear_probe_accuracy(feats[:200], labels[:200], feats[200:], labels[200:]) == 1.0


def test_features_independent_of_labels_give_chance():
  rng = np.random.default_rng(1)
  feats, labels = rng.normal(size=(2000, 4)), rng.integers(0, 2, 2000)
  acc = probe.linear_probe_accuracy(feats[:1000], labels[:1000], feats[1000:], labels[1000:])
  assert 0.45 < acc < 0.55


def test_scale_of_the_latent_does_not_matter():
  rng = np.random.default_rng(2)
  labels = rng.integers(0, 2, 400)
  feats = np.stack([labels + rng.normal(scale=0.8, size=400), rng.normal(size=400)], 1)
  a = probe.linear_probe_accuracy(feats[:300], labels[:300], feats[300:], labels[300:])
  scaled = feats * np.array([1e-4, 1e4])
  b = probe.linear_probe_accuracy(scaled[:300], labels[:300], scaled[300:], labels[300:])
  assert a == pytest.approx(b, abs=0.011)


def test_bad_features_are_named():
  with pytest.raises(ValueError, match='NaN'):
    probe.linear_probe_accuracy(np.full((4, 2), np.nan), [0, 1, 0, 1], np.zeros((2, 2)), [0, 1])
  with pytest.raises(ValueError, match='dims'):
    probe.linear_probe_accuracy(np.zeros((4, 2)), [0, 1, 0, 1], np.zeros((2, 3)), [0, 1])


def test_probe_splits_encodes_in_batches_and_reports_dims():
  from gm_jax import data as gm_data

  rng = np.random.default_rng(3)

  def split(n):
    labels = rng.integers(0, 2, n).astype(np.int32)
    images = (labels[:, None, None, None] * 10 + rng.integers(0, 3, (n, 4, 4, 1))).astype(np.uint8)
    return {'image': images, 'label': labels}

  info = gm_data.DatasetInfo('toy', 'image', (4, 4, 1), 16, 2)
  splits = gm_data.Splits(train=split(300), validation=split(10), test=split(100), info=info)
  calls = []
  encode = lambda x: calls.append(len(x)) or np.asarray(x, np.float32)[:, :2, :2]
  out = probe.probe_splits(encode, splits, batch_size=128)
  assert out == {'latent_dims': 4, 'linear_probe_accuracy': 1.0}
  assert max(calls) <= 128 and sum(calls) == 400
