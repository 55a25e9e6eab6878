"""FID against SciPy's general matrix square root; coverage; the feature classifier."""

import numpy as np
import pytest
import scipy.linalg

from gm_jax.evaluate import fid


def _scipy_fid(mu1, s1, mu2, s2):
  """The textbook formula with `scipy.linalg.sqrtm` of the non-symmetric product."""
  covmean = scipy.linalg.sqrtm(s1 @ s2)
  covmean = np.real(covmean)
  return float(np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


def _random_cov(rng, d, rank=None):
  a = rng.normal(size=(d, rank or d))
  return a @ a.T / d


@pytest.mark.parametrize('d', [1, 5, 16])
def test_frechet_distance_matches_scipy_sqrtm(d):
  rng = np.random.default_rng(d)
  mu1, mu2 = rng.normal(size=d), rng.normal(size=d)
  s1, s2 = _random_cov(rng, d), _random_cov(rng, d)
  np.testing.assert_allclose(
    fid.frechet_distance(mu1, s1, mu2, s2), _scipy_fid(mu1, s1, mu2, s2), rtol=1e-8, atol=1e-8
  )


def test_frechet_distance_rank_deficient_is_stable():
  # Rank-3 covariances in 12 dims (fewer samples than features): sqrtm of the product is
  # ill-conditioned; the symmetric route stays real, finite and agrees with SciPy.
  rng = np.random.default_rng(0)
  s1, s2 = _random_cov(rng, 12, rank=3), _random_cov(rng, 12, rank=3)
  mu = np.zeros(12)
  ours = fid.frechet_distance(mu, s1, mu, s2)
  assert np.isfinite(ours)
  np.testing.assert_allclose(ours, _scipy_fid(mu, s1, mu, s2), rtol=1e-4, atol=1e-6)
  assert fid.frechet_distance(mu, s1, mu, s1) == pytest.approx(0.0, abs=1e-9)


def test_fid_closed_forms():
  rng = np.random.default_rng(1)
  f = rng.normal(size=(400, 4))
  assert fid.fid_from_features(f, f) == pytest.approx(0.0, abs=1e-9)
  shift = np.array([1.0, -2.0, 0.0, 0.5])
  assert fid.fid_from_features(f + shift, f) == pytest.approx(np.sum(shift**2), rel=1e-9)
  # Isotropic scaling: N(0, I) vs N(0, 4 I) in 4 dims: 4 + 16 - 2 * 8 = 4 (up to sampling).
  mu, s = fid.gaussian_stats(f)
  np.testing.assert_allclose(fid.frechet_distance(mu, s, mu, 4 * s), np.trace(s), rtol=1e-9)


def test_gaussian_stats_rejects_bad_shape():
  with pytest.raises(ValueError, match='features must be'):
    fid.gaussian_stats(np.zeros(5))


def test_class_coverage():
  collapsed = fid.class_coverage(np.full(500, 3), 10)
  assert collapsed['class_coverage'] == 1 and collapsed['class_entropy_nats'] == 0.0
  uniform = fid.class_coverage(np.arange(1000) % 10, 10)
  assert uniform['class_coverage'] == 10
  assert uniform['class_entropy_nats'] == pytest.approx(np.log(10))
  # 5 stray samples of class 7 among 1000 (0.5% < 2%) do not count as covering it.
  stray = fid.class_coverage(np.concatenate([np.full(995, 2), np.full(5, 7)]), 10)
  assert stray['class_coverage'] == 1 and stray['class_histogram'][7] == 0.005


def test_feature_classifier_is_deterministic_and_accurate():
  from sklearn import datasets

  digits = datasets.load_digits()
  x = digits.images.astype(np.uint8)[..., None]
  y = digits.target.astype(np.int32)
  kw = dict(num_levels=17, num_classes=10, seed=0, num_steps=300)
  a = fid.train_feature_classifier(x[:1437], y[:1437], **kw)
  b = fid.train_feature_classifier(x[:1437], y[:1437], **kw)
  for u, v in zip(
    np.asarray(a.params['params']['Dense_0']['kernel']),
    np.asarray(b.params['params']['Dense_0']['kernel']),
  ):
    np.testing.assert_array_equal(u, v)
  assert a.accuracy(x[1437:], y[1437:]) > 0.85  # held-out tail, as the digits test split
  logits, feats = a.logits_and_features(x[:10])
  assert logits.shape == (10, 10) and feats.shape == (10, 64)
