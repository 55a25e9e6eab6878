"""Inception features of whole image sets, data-parallel, and their cached Gaussian statistics.

    params = inception.load_torch_weights(path)
    stats = feature_stats.statistics(params, images, batch_size=200,
                                     mesh=parallel.eval_mesh(config.parallel))
    real = feature_stats.cached_real_statistics(cache_dir, params, images, dataset='cifar10',
                                                split='test', weights_path=path)

Images go through `parallel.map_examples` chunk by chunk: each batch is split over every
device of every process, and the per-example features come back to every host. Mean and
covariance are accumulated on the host in float64 over the chunks (sums around the first
chunk's mean, which keeps the single-pass covariance as accurate as `np.cov`), so they do
not depend on the mesh beyond the per-example features themselves, and only the rows a
caller keeps for KID and precision/recall are held in memory.

Real-data statistics are cached as `.npz` (read with `allow_pickle=False`) in a cache
folder, keyed by dataset, split, network, the SHA-256 of the weights file and the number
of rows kept: a new weights file, split or dataset never reads a stale entry.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import os
import re

import jax
import numpy as np

from gm_jax import parallel
from gm_jax.evaluate import inception

NETWORK = 'pt_inception-2015-12-05'


@dataclasses.dataclass(frozen=True)
class FeatureStats:
  """Gaussian statistics of `count` feature rows, and the first rows kept.

  Attributes:
    mu: `[D]` float64 mean.
    sigma: `[D, D]` float64 unbiased covariance (`np.cov(features, rowvar=False)`).
    count: number of rows the statistics are over.
    features: `[K, D]` float32, the first `K` rows (for KID and precision/recall).
    logits: `[K, 1008]` float32 Inception logits of the same rows (Inception Score), or
      None when not asked for.
  """

  mu: np.ndarray
  sigma: np.ndarray
  count: int
  features: np.ndarray
  logits: np.ndarray | None = None


class RunningMoments:
  """Mean and covariance of rows added chunk by chunk, in float64.

  Sums are taken around a shift `c` (the first chunk's mean): `sum(x - c)` and
  `sum((x - c)(x - c)^T)`, so the covariance `(S2 - n m m^T) / (n - 1)` with `m` the
  shifted mean does not lose digits to a large mean.
  """

  def __init__(self):
    self.count = 0
    self._shift = self._sum = self._outer = None

  def add(self, rows) -> None:
    x = np.asarray(rows, np.float64)
    if self._shift is None:
      self._shift = x.mean(0)
      self._sum = np.zeros_like(self._shift)
      self._outer = np.zeros((x.shape[1], x.shape[1]))
    x = x - self._shift
    self.count += len(x)
    self._sum += x.sum(0)
    self._outer += x.T @ x

  def mean_and_cov(self) -> tuple[np.ndarray, np.ndarray]:
    if self.count < 2:
      raise ValueError(f'statistics need at least 2 rows; got {self.count}')
    m = self._sum / self.count
    cov = (self._outer - self.count * np.outer(m, m)) / (self.count - 1)
    return self._shift + m, cov


def _features_fn(params, batch, key):
  del key
  features, logits = inception.fid_features_and_logits(params, batch['image'])
  return {'features': features, 'logits': logits}


def statistics(
  params,
  images,
  *,
  batch_size: int = 200,
  mesh=None,
  keep: int = 0,
  logits: bool = False,
  chunk_batches: int = 10,
) -> FeatureStats:
  """Inception statistics of uint8 `images [N, H, W, C]`, data-parallel over `mesh`.

  Args:
    params: from `inception.load_torch_weights`.
    images: uint8 `[N, H, W, 1 or 3]` on [0, 255] (host array, the same on every process).
    batch_size: images per `map_examples` batch (a multiple of the device count to split).
    mesh: `parallel.eval_mesh(config.parallel)`; None runs on the default device.
    keep: how many of the first rows' features (and logits) to return.
    logits: also keep the Inception logits of the kept rows.
    chunk_batches: batches per `map_examples` call (host memory only).
  Returns:
    `FeatureStats` over all `N` rows.
  """
  n = len(images)
  if n < 2:
    raise ValueError(f'statistics need at least 2 images; got {n}')
  devices = 1 if mesh is None else mesh.size
  batch_size = min(batch_size, -(-n // devices) * devices)  # no padding past the data
  moments = RunningMoments()
  kept_f, kept_l = [], []
  step = batch_size * chunk_batches
  for start in range(0, n, step):
    out = parallel.map_examples(
      _features_fn,
      params,
      {'image': images[start : start + step]},
      None,
      batch_size=batch_size,
      mesh=mesh,
    )
    moments.add(out['features'])
    if start < keep:
      kept_f.append(out['features'][: keep - start])
      kept_l.append(out['logits'][: keep - start])
  mu, sigma = moments.mean_and_cov()
  dim = inception.FEATURE_DIM
  features = np.concatenate(kept_f) if kept_f else np.zeros((0, dim), np.float32)
  kept_logits = None
  if logits:
    kept_logits = (
      np.concatenate(kept_l) if kept_l else np.zeros((0, inception.NUM_LOGITS), np.float32)
    )
  return FeatureStats(mu=mu, sigma=sigma, count=n, features=features, logits=kept_logits)


@functools.lru_cache(maxsize=8)
def _file_sha256(path: str, size: int, mtime_ns: int) -> str:
  del size, mtime_ns  # part of the cache key only: a rewritten file is hashed again
  h = hashlib.sha256()
  with open(path, 'rb') as f:
    for block in iter(lambda: f.read(1 << 20), b''):
      h.update(block)
  return h.hexdigest()


def weights_sha256(path: str | os.PathLike[str]) -> str:
  """SHA-256 of a weights file (hashed once per process while the file is unchanged)."""
  path = os.path.abspath(os.fspath(path))
  st = os.stat(path)
  return _file_sha256(path, st.st_size, st.st_mtime_ns)


def cache_path(
  cache_dir: str | os.PathLike[str],
  *,
  dataset: str,
  split: str,
  network: str,
  weights_hash: str,
  keep: int,
) -> str:
  """`<cache_dir>/fid_stats/<dataset>-<split>-<network>-<hash[:16]>-keep<K>.npz`."""
  key = f'{dataset}-{split}-{network}-{weights_hash[:16]}-keep{keep}'
  return os.path.join(
    os.fspath(cache_dir), 'fid_stats', re.sub(r'[^\w.\-\[\]%:]', '_', key) + '.npz'
  )


def save(path: str, stats: FeatureStats) -> None:
  """Writes `stats` as `.npz` (`mu`, `sigma` as pytorch-fid's files, plus `count`,
  `features`), atomically."""
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  tmp = f'{path}.{os.getpid()}.tmp.npz'
  np.savez(
    tmp, mu=stats.mu, sigma=stats.sigma, count=np.int64(stats.count), features=stats.features
  )
  os.replace(tmp, path)


def load(path: str) -> FeatureStats:
  """Reads a file `save` wrote (or pytorch-fid's `mu`/`sigma` `.npz`)."""
  with np.load(path, allow_pickle=False) as f:
    if 'mu' not in f or 'sigma' not in f:
      raise ValueError(f'{path!r} holds no mu/sigma statistics (keys: {sorted(f.files)})')
    features = f['features'] if 'features' in f else np.zeros((0, f['mu'].shape[0]), np.float32)
    count = int(f['count']) if 'count' in f else 0
    return FeatureStats(mu=f['mu'], sigma=f['sigma'], count=count, features=features)


def cached_real_statistics(
  cache_dir: str | os.PathLike[str] | None,
  params,
  images,
  *,
  dataset: str,
  split: str,
  weights_path: str | os.PathLike[str],
  keep: int = 0,
  batch_size: int = 200,
  mesh=None,
) -> FeatureStats:
  """`statistics` of a real split, read from / written to `cache_dir` (None: no cache).

  Only process 0 writes the file; every process computes or reads the same numbers.
  """
  if cache_dir is None:
    return statistics(params, images, batch_size=batch_size, mesh=mesh, keep=keep)
  path = cache_path(
    cache_dir,
    dataset=dataset,
    split=split,
    network=NETWORK,
    weights_hash=weights_sha256(weights_path),
    keep=keep,
  )
  if os.path.exists(path):
    stats = load(path)
    if stats.count == len(images):
      return stats
  stats = statistics(params, images, batch_size=batch_size, mesh=mesh, keep=keep)
  if jax.process_index() == 0:
    save(path, stats)
  return stats
