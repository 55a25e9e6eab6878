"""An exact FID for low-rank covariances, for tests whose Inception features come from a
handful of images: two 2048 x 2048 `eigh` (`gm_jax.evaluate.fid`) take ~20 CPU-s on the
shared test machine and pytorch-fid's `sqrtm` minutes; a pivoted Cholesky of rank <= 11
takes 0.3 s. tests/evaluate/test_fid_stats.py checks it against `gm_jax.evaluate.fid`."""

import numpy as np
import scipy.linalg


def psd_factor(sigma) -> np.ndarray:
  """`F [D, r]` with `F F^T = sigma` for a PSD `sigma [D, D]` of rank `r`: LAPACK's pivoted
  Cholesky (`dpstrf`), which stops at the numerical rank."""
  c, piv, rank, info = scipy.linalg.lapack.dpstrf(np.asarray(sigma, np.float64), lower=1)
  assert info >= 0, info
  f = np.zeros((len(c), rank))
  f[piv - 1] = np.tril(c)[:, :rank]
  return f


def frechet_distance(mu1, sigma1, mu2, sigma2) -> float:
  """The exact FID for PSD covariances of low rank: with `S_i = F_i F_i^T`, the eigenvalues
  of `S_1 S_2` are those of `(F_1^T F_2)(F_1^T F_2)^T`, so `tr (S_1 S_2)^{1/2}` is the sum of
  the singular values of `F_1^T F_2 [r_1, r_2]`."""
  f1, f2 = psd_factor(sigma1), psd_factor(sigma2)
  diff = np.asarray(mu1, np.float64) - np.asarray(mu2, np.float64)
  tr_sqrt = np.linalg.svd(f1.T @ f2, compute_uv=False).sum()
  value = diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * tr_sqrt
  return float(max(value, 0.0))


def fid_of_features(features_1, features_2) -> float:
  """FID of the Gaussian fits of `[N_1, D]` and `[N_2, D]` features straight from the
  centred features `A`, `B`: `tr S = |A|^2 / (N - 1)` and `tr (S_1 S_2)^{1/2} =
  |A B^T|_* / sqrt((N_1 - 1)(N_2 - 1))` (nuclear norm of an `[N_1, N_2]` matrix)."""
  a, b = (np.asarray(f, np.float64) for f in (features_1, features_2))
  n1, n2 = len(a), len(b)
  diff = a.mean(0) - b.mean(0)
  a, b = a - a.mean(0), b - b.mean(0)
  tr_sqrt = np.linalg.svd(a @ b.T, compute_uv=False).sum() / np.sqrt((n1 - 1) * (n2 - 1))
  return float(diff @ diff + (a * a).sum() / (n1 - 1) + (b * b).sum() / (n2 - 1) - 2.0 * tr_sqrt)
