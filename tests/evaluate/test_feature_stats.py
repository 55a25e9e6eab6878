"""Inception statistics: float64 host accumulation, the same on 4 CPU devices as on one,
and the real-data cache keyed by dataset, split, network and the weights file's hash."""

import numpy as np
import pytest

from gm_jax.evaluate import feature_stats
from tests import four_devices

# The 4-device numbers come from tests/four_devices.py's shared subprocess.
pytestmark = four_devices.GROUP


def worker() -> dict:
  """One device against 4 (`parallel.eval_mesh`), in the 4-device subprocess."""
  import jax

  from gm_jax import parallel
  from tests.evaluate import torch_file

  # Drawn in NumPy on `eval_shape`'s structure: Flax's init of the 299 x 299 network took
  # 18 s of CPU on the 2-core machine eagerly, ~15 s jitted.
  params = torch_file.random_params(0)
  images = np.random.default_rng(0).integers(0, 256, size=(8, 12, 10, 3), dtype=np.uint8)
  one = feature_stats.statistics(params, images, batch_size=8, keep=8, logits=True)
  # 4 devices, two chunks of one batch of 4 (one image a device).
  many = feature_stats.statistics(
    params,
    images,
    batch_size=4,
    keep=5,
    logits=True,
    mesh=parallel.eval_mesh('sharding'),
    chunk_batches=1,
  )
  f = one.features.astype(np.float64)
  rel = lambda a, b: float(np.max(np.abs(a - b)) / np.max(np.abs(b)))
  return {
    'devices': jax.device_count(),
    'mu_vs_numpy': rel(one.mu, f.mean(0)),
    'sigma_vs_numpy': rel(one.sigma, np.cov(f, rowvar=False)),
    'mu_mesh': rel(many.mu, one.mu),
    'sigma_mesh': rel(many.sigma, one.sigma),
    'features_mesh': rel(many.features, one.features[:5]),
    'logits_mesh': rel(many.logits, one.logits[:5]),
    'counts': [one.count, many.count, len(many.features)],
  }


@pytest.fixture(scope='module')
def report(tmp_path_factory):
  return four_devices.report(tmp_path_factory)['feature_stats']


def test_statistics_on_four_devices_equal_one_device(report):
  assert report['devices'] == 4
  assert report['counts'] == [8, 8, 5]
  assert report['mu_vs_numpy'] < 1e-12 and report['sigma_vs_numpy'] < 1e-10
  for k in ('mu_mesh', 'sigma_mesh', 'features_mesh', 'logits_mesh'):
    assert report[k] < 1e-5, (k, report[k])


def test_running_moments_equal_numpy_over_chunks():
  x = np.random.default_rng(1).normal(size=(37, 5)) * 3 + 1e4  # a large mean
  m = feature_stats.RunningMoments()
  for s in range(0, 37, 10):
    m.add(x[s : s + 10])
  mu, cov = m.mean_and_cov()
  np.testing.assert_allclose(mu, x.mean(0), rtol=1e-14)
  np.testing.assert_allclose(cov, np.cov(x, rowvar=False), rtol=1e-9)


def test_real_statistics_cache_is_keyed_by_weights_hash_and_split(tmp_path, monkeypatch):
  calls = []

  def fake_statistics(params, images, **kw):
    calls.append(kw['keep'])
    f = np.asarray(images, np.float32).reshape(len(images), -1)[:, :3] + len(calls)
    return feature_stats.FeatureStats(
      mu=f.mean(0).astype(np.float64),
      sigma=np.cov(f, rowvar=False),
      count=len(f),
      features=f[: kw['keep']],
    )

  monkeypatch.setattr(feature_stats, 'statistics', fake_statistics)
  weights = tmp_path / 'w.pth'
  weights.write_bytes(b'one')
  images = np.arange(4 * 2 * 2 * 3, dtype=np.uint8).reshape(4, 2, 2, 3)
  kw = {'dataset': 'cifar10', 'weights_path': str(weights), 'keep': 2}
  a = feature_stats.cached_real_statistics(tmp_path, None, images, split='test', **kw)
  b = feature_stats.cached_real_statistics(tmp_path, None, images, split='test', **kw)
  assert calls == [2]  # the second call read the file
  np.testing.assert_array_equal(a.mu, b.mu)
  np.testing.assert_array_equal(a.sigma, b.sigma)
  np.testing.assert_array_equal(a.features, b.features)
  assert b.count == 4
  feature_stats.cached_real_statistics(tmp_path, None, images, split='train', **kw)
  assert len(calls) == 2  # another split
  weights.write_bytes(b'two!')  # other weights: another hash
  c = feature_stats.cached_real_statistics(tmp_path, None, images, split='test', **kw)
  assert len(calls) == 3 and not np.array_equal(c.mu, a.mu)
  assert len(list((tmp_path / 'fid_stats').glob('*.npz'))) == 3
