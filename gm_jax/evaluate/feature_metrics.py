"""Sample-quality metrics over feature arrays, with the reference implementations' definitions.

Pure functions of host arrays (features `[N, D]`, logits `[N, K]`); the networks that make
the features live in `gm_jax.evaluate.inception` (and `gm_jax.evaluate.fid` for the digits
classifier). Each matches the code people report numbers with:

* `frechet_distance`: pytorch-fid 0.3.0's `calculate_frechet_distance` (Heusel et al. 2017,
  eq. 6), including its retry with `eps` added to both covariances' diagonals when the
  matrix square root of the product is not finite.
* `kernel_inception_distance`: torch-fidelity 0.4.0's KID (Binkowski et al. 2018, "Demystifying
  MMD GANs", eq. 4 / appendix A): the unbiased MMD^2 estimate with the cubic polynomial kernel
  `k(x, y) = (x.y / D + 1)^3`, averaged over `num_subsets` random subsets of `subset_size`
  rows drawn without replacement by `np.random.RandomState(seed)` (torch-fidelity's defaults:
  100 subsets of 1000, seed 2020), so the same features give the same subsets.
* `precision_recall`: Kynkaenniemi et al. 2019 ("Improved Precision and Recall Metric for
  Assessing Generative Models", sec. 2): each set's manifold is the union of balls around its
  points with radius the distance to the k-th nearest other point (k = 3); precision is the
  share of generated points inside the real manifold, recall the share of real points inside
  the generated one (torch-fidelity's `prc`, its `<=` and its F-score).
* `inception_score`: Salimans et al. 2016 as torch-fidelity's `isc`: `exp E_x KL(p(y|x) ||
  p(y))` per split of the (seeded-shuffled) logits, mean and std over `splits` splits.
"""

from __future__ import annotations

import functools

import numpy as np
import scipy.linalg

KID_SUBSETS = 100
KID_SUBSET_SIZE = 1000
PRC_NEIGHBORHOOD = 3
IS_SPLITS = 10
SEED = 2020  # torch-fidelity's `rng_seed`


def gaussian_stats(features) -> tuple[np.ndarray, np.ndarray]:
  """Mean `[D]` and unbiased covariance `[D, D]` in float64 of `features [N, D]`, as
  pytorch-fid (`np.mean(act, axis=0)`, `np.cov(act, rowvar=False)`)."""
  f = np.asarray(features, np.float64)
  if f.ndim != 2 or f.shape[0] < 2:
    raise ValueError(f'features must be [N >= 2, D], got shape {f.shape}')
  return f.mean(0), np.cov(f, rowvar=False)


def frechet_distance(mu1, sigma1, mu2, sigma2, *, eps: float = 1e-6) -> float:
  """pytorch-fid's Frechet distance `||mu1 - mu2||^2 + tr(S1 + S2 - 2 (S1 S2)^{1/2})`.

  Args:
    mu1, mu2: means `[D]`.
    sigma1, sigma2: covariances `[D, D]`.
    eps: added to both diagonals when `sqrtm(S1 S2)` is not finite (near-singular
      covariances, e.g. fewer samples than features), as pytorch-fid does.
  Returns:
    The distance (float64); it may be slightly negative for identical statistics, as
    pytorch-fid's.
  """
  mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
  sigma1 = np.atleast_2d(np.asarray(sigma1, np.float64))
  sigma2 = np.atleast_2d(np.asarray(sigma2, np.float64))
  if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape or sigma1.shape != mu1.shape * 2:
    raise ValueError(
      f'mismatched statistics: mu1 {mu1.shape}, mu2 {mu2.shape}, sigma1 '
      f'{sigma1.shape}, sigma2 {sigma2.shape}'
    )
  diff = mu1 - mu2
  covmean = scipy.linalg.sqrtm(sigma1.dot(sigma2))
  if not np.isfinite(covmean).all():
    offset = np.eye(sigma1.shape[0]) * eps
    covmean = scipy.linalg.sqrtm((sigma1 + offset).dot(sigma2 + offset))
  if np.iscomplexobj(covmean):
    if not np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3):
      raise ValueError(
        f'sqrtm(sigma1 sigma2) has an imaginary component {np.max(np.abs(covmean.imag))}'
      )
    covmean = covmean.real
  return float(diff.dot(diff) + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean))


def fid_from_features(features_1, features_2) -> float:
  """`frechet_distance` between the Gaussian statistics of two feature sets `[N, D]`."""
  return frechet_distance(*gaussian_stats(features_1), *gaussian_stats(features_2))


def polynomial_kernel(
  x, y, *, degree: int = 3, gamma: float | None = None, coef0: float = 1.0
) -> np.ndarray:
  """`(x y^T gamma + coef0)^degree`, `gamma = 1 / D` by default: `[N, D], [M, D] -> [N, M]`."""
  if gamma is None:
    gamma = 1.0 / x.shape[1]
  return (np.matmul(x, y.T) * gamma + coef0) ** degree


def mmd2_unbiased(
  features_1, features_2, *, degree: int = 3, gamma: float | None = None, coef0: float = 1.0
) -> float:
  """Unbiased MMD^2 with the polynomial kernel between two sets of `m` rows each.

  `sum_{i != j} k(x_i, x_j) / (m (m - 1)) + sum_{i != j} k(y_i, y_j) / (m (m - 1))
  - 2 sum_{i, j} k(x_i, y_j) / m^2` (torch-fidelity's `mmd2(..., mmd_est='unbiased')`).
  """
  x, y = np.asarray(features_1), np.asarray(features_2)
  m = x.shape[0]
  if y.shape[0] != m or m < 2:
    raise ValueError(f'mmd2_unbiased needs two sets of m >= 2 rows; got {x.shape}, {y.shape}')
  kernel = functools.partial(polynomial_kernel, degree=degree, gamma=gamma, coef0=coef0)
  k_xx, k_yy, k_xy = kernel(x, x), kernel(y, y), kernel(x, y)
  # torch-fidelity's order of summation (row sums less the diagonal), which matters in
  # float32, the dtype it computes in for float32 features.
  kt_xx = (k_xx.sum(axis=1) - np.diagonal(k_xx)).sum()
  kt_yy = (k_yy.sum(axis=1) - np.diagonal(k_yy)).sum()
  return float((kt_xx + kt_yy) / (m * (m - 1)) - 2 * k_xy.sum(axis=0).sum() / (m * m))


def kernel_inception_distance(
  features_1,
  features_2,
  *,
  num_subsets: int = KID_SUBSETS,
  subset_size: int = KID_SUBSET_SIZE,
  degree: int = 3,
  gamma: float | None = None,
  coef0: float = 1.0,
  seed: int = SEED,
) -> dict:
  """KID as torch-fidelity: mean and std of `mmd2_unbiased` over random subsets.

  Args:
    features_1, features_2: `[N_1, D]`, `[N_2, D]` (torch-fidelity: generated, real).
    num_subsets: subsets drawn.
    subset_size: rows per subset, without replacement; at most `min(N_1, N_2)`.
    degree, gamma, coef0: the polynomial kernel.
    seed: of the `np.random.RandomState` that draws the subsets, in torch-fidelity's order
      (set 1's rows, then set 2's, per subset).
  Returns:
    `{'kid_mean', 'kid_std'}`.
  """
  f1, f2 = np.asarray(features_1), np.asarray(features_2)
  if f1.ndim != 2 or f2.ndim != 2 or f1.shape[1] != f2.shape[1]:
    raise ValueError(f'features must be [N, D] with one D; got {f1.shape}, {f2.shape}')
  if subset_size > min(len(f1), len(f2)) or subset_size < 2:
    raise ValueError(
      f'subset_size={subset_size} must be in [2, min(N_1, N_2) = {min(len(f1), len(f2))}]'
    )
  if num_subsets < 1:
    raise ValueError(f'num_subsets must be >= 1; got {num_subsets}')
  rng = np.random.RandomState(seed)
  mmds = np.zeros(num_subsets)
  for i in range(num_subsets):
    a = f1[rng.choice(len(f1), subset_size, replace=False)]
    b = f2[rng.choice(len(f2), subset_size, replace=False)]
    mmds[i] = mmd2_unbiased(a, b, degree=degree, gamma=gamma, coef0=coef0)
  return {'kid_mean': float(np.mean(mmds)), 'kid_std': float(np.std(mmds))}


def _pairwise_distances(a, b, batch_size: int) -> np.ndarray:
  """Euclidean distances `[N, M]` in float64, by blocks of rows."""
  b2 = np.sum(b * b, 1)
  out = np.empty((len(a), len(b)))
  for s in range(0, len(a), batch_size):
    x = a[s : s + batch_size]
    d2 = np.sum(x * x, 1)[:, None] + b2[None, :] - 2.0 * x @ b.T
    out[s : s + batch_size] = np.sqrt(np.maximum(d2, 0.0))
  return out


def _knn_radii(f, k: int, batch_size: int) -> np.ndarray:
  """Distance of each row to its k-th nearest other row (`kthvalue(k + 1)` of its
  distances, the first being its own 0)."""
  radii = np.empty(len(f))
  for s in range(0, len(f), batch_size):
    d = _pairwise_distances(f[s : s + batch_size], f, batch_size)
    radii[s : s + batch_size] = np.partition(d, k, axis=1)[:, k]
  return radii


def _covered(points, centres, radii, batch_size: int) -> np.ndarray:
  """`[N]` bool: is each point within `radii[j]` of some centre `j`."""
  out = np.empty(len(points), bool)
  for s in range(0, len(points), batch_size):
    d = _pairwise_distances(points[s : s + batch_size], centres, batch_size)
    out[s : s + batch_size] = np.any(d <= radii[None, :], axis=1)
  return out


def precision_recall(
  generated, real, *, k: int = PRC_NEIGHBORHOOD, batch_size: int = 10000
) -> dict:
  """Improved precision and recall (Kynkaenniemi et al. 2019) with k-NN radii.

  Args:
    generated: `[N_g, D]` features of generated samples.
    real: `[N_r, D]` features of real samples.
    k: the neighbourhood size (the paper's and torch-fidelity's 3).
    batch_size: rows per block of the distance matrices (memory only).
  Returns:
    `{'precision', 'recall', 'f_score'}` (`f_score = 2 P R / max(1e-5, P + R)`).
  """
  g, r = np.asarray(generated, np.float64), np.asarray(real, np.float64)
  if g.ndim != 2 or r.ndim != 2 or g.shape[1] != r.shape[1]:
    raise ValueError(f'features must be [N, D] with one D; got {g.shape}, {r.shape}')
  if k < 1 or k >= min(len(g), len(r)):
    raise ValueError(f'k={k} must be in [1, min(N_g, N_r) - 1 = {min(len(g), len(r)) - 1}]')
  precision = float(np.mean(_covered(g, r, _knn_radii(r, k, batch_size), batch_size)))
  recall = float(np.mean(_covered(r, g, _knn_radii(g, k, batch_size), batch_size)))
  return {
    'precision': precision,
    'recall': recall,
    'f_score': 2 * precision * recall / max(1e-5, precision + recall),
  }


def inception_score(
  logits, *, splits: int = IS_SPLITS, shuffle: bool = True, seed: int = SEED
) -> dict:
  """Inception Score of classifier logits `[N, K]`, as torch-fidelity's `isc`.

  The rows are permuted by `np.random.RandomState(seed)` (when `shuffle`) and cut into
  `splits` consecutive parts `[i N // splits, (i + 1) N // splits)`; each part's score is
  `exp(mean_x KL(p(y|x) || mean_x p(y|x)))` in float64.

  Returns:
    `{'is_mean', 'is_std'}` over the splits.
  """
  z = np.asarray(logits, np.float64)
  if z.ndim != 2 or len(z) < splits or splits < 1:
    raise ValueError(f'logits must be [N >= splits, K]; got {z.shape} with splits={splits}')
  n = len(z)
  if shuffle:
    z = z[np.random.RandomState(seed).permutation(n)]
  log_p = z - np.max(z, 1, keepdims=True)
  log_p = log_p - np.log(np.sum(np.exp(log_p), 1, keepdims=True))
  p = np.exp(log_p)
  scores = []
  for i in range(splits):
    lo, hi = i * n // splits, (i + 1) * n // splits
    q = p[lo:hi].mean(0, keepdims=True)
    kl = np.sum(p[lo:hi] * (log_p[lo:hi] - np.log(q)), 1)
    scores.append(np.exp(np.mean(kl)))
  return {'is_mean': float(np.mean(scores)), 'is_std': float(np.std(scores))}
