"""ECE against a direct NumPy loop over bins."""

import jax
import numpy as np
import pytest

from gm_jax.evaluate import calibration


def _ece_loop(probs, labels, num_bins):
  """Guo et al. (2017) eq. 3, written as a plain loop over bins."""
  probs = np.asarray(probs, np.float64)
  conf = probs.max(axis=1)
  pred = probs.argmax(axis=1)
  n = len(labels)
  ece = 0.0
  for b in range(num_bins):
    lo, hi = b / num_bins, (b + 1) / num_bins
    in_bin = (conf > lo) & (conf <= hi) if b > 0 else (conf <= hi)
    if in_bin.sum() == 0:
      continue
    acc = np.mean(pred[in_bin] == labels[in_bin])
    ece += in_bin.sum() / n * abs(acc - conf[in_bin].mean())
  return ece


def _random_probs(seed, n, c, temperature):
  rng = np.random.default_rng(seed)
  logits = rng.normal(size=(n, c)) * temperature
  probs = np.exp(logits - logits.max(1, keepdims=True))
  probs /= probs.sum(1, keepdims=True)
  labels = rng.integers(0, c, size=n)
  return probs.astype(np.float32), labels.astype(np.int32)


@pytest.mark.parametrize('num_bins', [1, 4, 15, 40])
@pytest.mark.parametrize('seed,temperature', [(0, 0.3), (1, 3.0), (2, 10.0)])
def test_matches_numpy_loop(num_bins, seed, temperature):
  probs, labels = _random_probs(seed, 500, 5, temperature)
  got = calibration.expected_calibration_error(probs, labels, num_bins=num_bins)
  np.testing.assert_allclose(got, _ece_loop(probs, labels, num_bins), atol=1e-6)


def test_edges_are_upper_inclusive():
  # Confidences exactly on interior edges 0.5 and 0.75 of 4 bins.
  probs = np.array(
    [[0.5, 0.5, 0.0], [0.75, 0.25, 0.0], [0.25, 0.75, 0.0], [1.0, 0.0, 0.0]], np.float32
  )
  labels = np.array([1, 0, 0, 0], np.int32)
  bins = calibration.reliability_bins(probs, labels, num_bins=4)
  np.testing.assert_array_equal(bins.count, [0, 1, 2, 1])
  np.testing.assert_allclose(bins.accuracy, [0, 0, 0.5, 1])
  np.testing.assert_allclose(bins.confidence, [0, 0.5, 0.75, 1])
  # By hand: 1/4*|0-.5| + 2/4*|.5-.75| + 1/4*0 = 0.25.
  np.testing.assert_allclose(
    calibration.expected_calibration_error(probs, labels, num_bins=4), 0.25
  )
  np.testing.assert_allclose(_ece_loop(probs, labels, 4), 0.25)


def test_calibrated_by_construction_is_near_zero():
  # Labels drawn from the predicted distribution: ECE -> 0 as N grows.
  rng = np.random.default_rng(0)
  probs, _ = _random_probs(3, 200_000, 4, 1.0)
  u = rng.uniform(size=(len(probs), 1))
  labels = (u > np.cumsum(probs, 1)).sum(1).astype(np.int32)
  ece = calibration.expected_calibration_error(probs, labels)
  assert ece < 0.01
  # and an overconfident version of the same predictions is not.
  sharp = probs**4 / (probs**4).sum(1, keepdims=True)
  assert calibration.expected_calibration_error(sharp, labels) > 0.05


def test_jit_and_vmap():
  probs, labels = _random_probs(4, 300, 3, 2.0)
  stack_p = np.stack([probs, probs[::-1], probs**2 / (probs**2).sum(1, keepdims=True)])
  stack_l = np.stack([labels, labels[::-1], labels])
  f = jax.jit(lambda p, l: calibration.expected_calibration_error(p, l, num_bins=10))
  got = jax.vmap(f)(stack_p, stack_l)
  want = [_ece_loop(p, l, 10) for p, l in zip(stack_p, stack_l)]
  np.testing.assert_allclose(got, want, atol=1e-6)


@pytest.mark.parametrize(
  'kwargs,field',
  [
    (dict(probs=np.ones((3,)), labels=np.zeros(3, np.int32)), 'probs'),
    (dict(probs=np.ones((3, 2)), labels=np.zeros(4, np.int32)), 'labels'),
    (dict(probs=np.ones((3, 2)), labels=np.zeros(3)), 'labels'),
    (dict(probs=np.ones((3, 2)), labels=np.array([0, 2, 1], np.int32)), 'labels'),
    (dict(probs=np.ones((3, 2)), labels=np.zeros(3, np.int32), num_bins=0), 'num_bins'),
  ],
)
def test_bad_input(kwargs, field):
  with pytest.raises(ValueError, match=field):
    calibration.expected_calibration_error(**kwargs)


def test_classification_metrics_against_sklearn():
  from sklearn import metrics

  probs, labels = _random_probs(5, 400, 4, 2.0)
  probs = probs.astype(np.float64)
  probs /= probs.sum(1, keepdims=True)
  got = calibration.classification_metrics(np.log(probs).astype(np.float32), labels, num_bins=10)
  assert got['accuracy'] == pytest.approx(metrics.accuracy_score(labels, probs.argmax(1)))
  assert got['log_loss'] == pytest.approx(
    metrics.log_loss(labels, probs, labels=range(4)), rel=1e-5
  )
  assert got['ece'] == pytest.approx(_ece_loop(probs, labels, 10), abs=1e-6)
