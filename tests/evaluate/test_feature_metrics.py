"""FID, KID, precision/recall and IS against the reference code on the same arrays:
pytorch-fid 0.3.0's own `calculate_frechet_distance` (when installed), and torch-fidelity
0.4.0's formulas transcribed below line by line (torch-fidelity's wheel installs a
top-level `tests` package that would shadow this suite's, so it is not installed)."""

import numpy as np
import pytest

from gm_jax.evaluate import feature_metrics as fm
from tests.evaluate import pytorch_fid_reference

_REF = pytorch_fid_reference.load()


# --- torch-fidelity 0.4.0, metric_kid.py: mmd2(mmd_est='unbiased'), kernel_poly, and
# kid_features_to_metric's subset loop.
def _tf_mmd2(k_xx, k_xy, k_yy):
  m = k_xx.shape[0]
  diag_x, diag_y = np.diagonal(k_xx), np.diagonal(k_yy)
  kt_xx_sum = (k_xx.sum(axis=1) - diag_x).sum()
  kt_yy_sum = (k_yy.sum(axis=1) - diag_y).sum()
  k_xy_sum = k_xy.sum(axis=0).sum()
  mmd2 = (kt_xx_sum + kt_yy_sum) / (m * (m - 1))
  return mmd2 - 2 * k_xy_sum / (m * m)


def _tf_kernel_poly(x, y, degree=3, gamma=None, coef0=1):
  if gamma is None:
    gamma = 1.0 / x.shape[1]
  return (np.matmul(x, y.T) * gamma + coef0) ** degree


def _tf_kid(f1, f2, subsets, subset_size, seed=2020):
  mmds = np.zeros(subsets)
  rng = np.random.RandomState(seed)
  for i in range(subsets):
    a = f1[rng.choice(len(f1), subset_size, replace=False)]
    b = f2[rng.choice(len(f2), subset_size, replace=False)]
    mmds[i] = _tf_mmd2(_tf_kernel_poly(a, a), _tf_kernel_poly(a, b), _tf_kernel_poly(b, b))
  return float(np.mean(mmds)), float(np.std(mmds))


# --- torch-fidelity 0.4.0, metric_prc.py: calculate_precision_recall_full (torch.cdist,
# kthvalue(neighborhood + 1)) in NumPy.
def _tf_prc(f1, f2, neighborhood=3):
  cdist = lambda a, b: np.sqrt(((a[:, None, :] - b[None, :, :]) ** 2).sum(-1))
  dist_nn_1 = np.sort(cdist(f1, f1), axis=1)[:, neighborhood]
  dist_nn_2 = np.sort(cdist(f2, f2), axis=1)[:, neighborhood]
  dist_2_1 = cdist(f2, f1)
  dist_1_2 = dist_2_1.T
  recall = (dist_2_1 <= dist_nn_1).any(axis=1).mean()
  precision = (dist_1_2 <= dist_nn_2).any(axis=1).mean()
  return precision, recall


# --- torch-fidelity 0.4.0, metric_isc.py: isc_features_to_metric.
def _tf_isc(feature, splits=10, shuffle=True, rng_seed=2020):
  n = feature.shape[0]
  if shuffle:
    feature = feature[np.random.RandomState(rng_seed).permutation(n), :]
  feature = feature.astype(np.float64)
  log_p = feature - np.log(np.exp(feature).sum(1, keepdims=True))
  p = np.exp(log_p)
  scores = []
  for i in range(splits):
    p_chunk = p[(i * n // splits) : ((i + 1) * n // splits), :]
    log_p_chunk = log_p[(i * n // splits) : ((i + 1) * n // splits), :]
    q_chunk = p_chunk.mean(axis=0, keepdims=True)
    kl = p_chunk * (log_p_chunk - np.log(q_chunk))
    scores.append(np.exp(kl.sum(axis=1).mean()))
  return float(np.mean(scores)), float(np.std(scores))


def _features(seed, n=60, d=8, shift=0.0):
  rng = np.random.default_rng(seed)
  return (rng.normal(size=(n, d)) @ rng.normal(size=(d, d)) / 3 + shift).astype(np.float32)


def _pytorch_fid(mu1, s1, mu2, s2):
  if _REF is None:
    pytest.skip('pytorch-fid not installed (extra [bench])')
  return _REF[1].calculate_frechet_distance(mu1, s1, mu2, s2)


@pytest.mark.parametrize('n,d', [(200, 16), (10, 24)])  # full rank; fewer samples than dims
def test_frechet_distance_equals_pytorch_fid(n, d):
  a, b = _features(0, n, d), _features(1, n, d, shift=0.3)
  ours = fm.fid_from_features(a, b)
  want = _pytorch_fid(*fm.gaussian_stats(a), *fm.gaussian_stats(b))
  np.testing.assert_allclose(ours, want, rtol=1e-9, atol=1e-9)
  assert ours > 0.1


@pytest.mark.filterwarnings('ignore:Matrix is singular')
def test_frechet_distance_singular_product_takes_pytorch_fids_eps_route(capsys):
  # Integer PSD matrices whose product has no finite sqrtm: pytorch-fid adds eps to both
  # diagonals (and prints so); ours must take the same route to the same number.
  s1 = np.array(
    [
      [1, -1, 1, -1, -1],
      [-1, 1, -1, 1, 1],
      [1, -1, 2, -1, -2],
      [-1, 1, -1, 1, 1],
      [-1, 1, -2, 1, 2],
    ],
    np.float64,
  )
  s2 = np.array(
    [[1, 1, -1, 1, 0], [1, 1, -1, 1, 0], [-1, -1, 1, -1, 0], [1, 1, -1, 1, 0], [0, 0, 0, 0, 0]],
    np.float64,
  )
  mu = np.arange(5.0)
  import scipy.linalg

  assert not np.isfinite(scipy.linalg.sqrtm(s1 @ s2)).all()
  want = _pytorch_fid(mu, s1, mu + 1, s2)
  assert 'adding 1e-06 to diagonal' in capsys.readouterr().out
  ours = fm.frechet_distance(mu, s1, mu + 1, s2)
  assert np.isfinite(ours)
  np.testing.assert_allclose(ours, want, rtol=1e-9)


def test_fid_of_a_set_with_itself_is_zero_and_fid_is_symmetric():
  a, b = _features(2, 300, 32), _features(3, 300, 32, shift=0.5)
  assert abs(fm.fid_from_features(a, a)) < 1e-6
  np.testing.assert_allclose(fm.fid_from_features(a, b), fm.fid_from_features(b, a), rtol=1e-9)


def test_kid_equals_torch_fidelity():
  a, b = _features(4, 50), _features(5, 40, shift=0.2)
  got = fm.kernel_inception_distance(a, b, num_subsets=7, subset_size=20)
  mean, std = _tf_kid(a, b, 7, 20)
  np.testing.assert_allclose([got['kid_mean'], got['kid_std']], [mean, std], rtol=1e-10)
  assert got['kid_mean'] > 0


def test_kid_expectation_over_subsets_is_the_full_unbiased_estimate():
  # Each subset's estimate is unbiased for the full sample's U-statistic (pairs i != j
  # within each set, all pairs across): their mean converges to the full estimate.
  a, b = _features(6, 40, 5), _features(7, 40, 5, shift=0.3)
  full = fm.mmd2_unbiased(a.astype(np.float64), b.astype(np.float64))
  num = 3000
  got = fm.kernel_inception_distance(
    a.astype(np.float64), b.astype(np.float64), num_subsets=num, subset_size=8, seed=0
  )
  assert abs(got['kid_mean'] - full) < 4 * got['kid_std'] / np.sqrt(num)
  assert full > 10 * got['kid_std'] / np.sqrt(num)  # the shift is detected
  # All rows as the single subset: the full estimate exactly.
  one = fm.kernel_inception_distance(a, b, num_subsets=1, subset_size=40)
  np.testing.assert_allclose(one['kid_mean'], fm.mmd2_unbiased(a, b), rtol=1e-6)


def test_precision_recall_equal_torch_fidelity():
  real = _features(8, 70)
  gen = np.concatenate([_features(9, 30), _features(10, 20, shift=3.0)])  # 20 off-manifold
  got = fm.precision_recall(gen, real, batch_size=16)  # blocks smaller than the sets
  precision, recall = _tf_prc(gen.astype(np.float64), real.astype(np.float64))
  assert got['precision'] == pytest.approx(precision, abs=1e-12)
  assert got['recall'] == pytest.approx(recall, abs=1e-12)
  assert got['f_score'] == pytest.approx(2 * precision * recall / (precision + recall))
  assert 0 < got['precision'] < 1 and 0 < got['recall'] < 1


def test_inception_score_equals_torch_fidelity():
  logits = np.random.default_rng(11).normal(size=(53, 12)) * 3
  got = fm.inception_score(logits, splits=4)
  np.testing.assert_allclose([got['is_mean'], got['is_std']], _tf_isc(logits, splits=4), rtol=1e-10)
  one_hot = np.eye(10)[np.arange(100) % 10] * 50  # confident and uniform: IS = #classes
  assert fm.inception_score(one_hot, splits=1)['is_mean'] == pytest.approx(10, rel=1e-6)
