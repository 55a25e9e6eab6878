"""#39 parts 3 and 4 in the few-step and VQ-VAE prior families: `config.fid_network='inception'`
scores the samples of consistency, reflow and vqvae_prior with random FID-Inception weights
written as pytorch-fid's file (one file for the session), and a second evaluation in the same
workdir reads the real statistics from `<workdir>/cache` instead of recomputing them.

Each family is built untrained from tiny settings on the digits, and evaluated on the first 4
test images against 4 samples at one step count: the Inception runs on batches of one shape
only. The FID's statistics are checked against NumPy's of the same images' features."""

import dataclasses
import os

import jax
import numpy as np
import pytest

from configs import consistency_training as consistency_config
from configs import flow_matching as flow_matching_config
from configs import reflow as reflow_config
from configs import vqvae as vqvae_config
from configs import vqvae_prior as vqvae_prior_config
from gm_jax import data as gm_data
from gm_jax.evaluate import feature_stats
from gm_jax.evaluate import inception
from gm_jax.evaluate import sample_metrics
from gm_jax.families import consistency as consistency_family
from gm_jax.families import diffusion as diffusion_family
from gm_jax.families import reflow as reflow_family
from gm_jax.families import vqvae as vqvae_family
from gm_jax.train import defaults
from gm_jax.train import loop
from gm_jax.train import run_config
from tests.train.test_loop import _config as _toy_config
from tests.train.test_loop import _toy_family
from tests.train.test_loop import _toy_splits

# One worker under `-n 2 --dist loadgroup` for both Inception-FID files: the session's
# random Inception weights (tests/families/conftest.py) are made once.
pytestmark = pytest.mark.xdist_group('inception_fid')
NUM = 4  # real test images and samples: one Inception batch shape for every call


@pytest.fixture(scope='module')
def splits(data_dir):
  """The digits with only their first `NUM` test images (the FID's real rows)."""
  full = gm_data.load_splits('digits', data_dir=data_dir)
  return dataclasses.replace(full, test={k: v[:NUM] for k, v in full.test.items()})


def _with_inception(config, module, path, **settings):
  config = defaults.complete(config, module.DEFAULTS)
  with config.unlocked():
    config.update(fid_network='inception', inception_weights=path, fid_num_samples=NUM, **settings)
  module.check_config(config, gm_data.get_info(config.dataset))
  return config


def _few_step(config, module, path, **settings):
  return _with_inception(
    config, module, path, fid_steps=(1,), sample_steps=1, sample_batch_size=NUM, **settings
  )


def _init(family, splits):
  return family.init(jax.random.key(0), {k: v[:NUM] for k, v in splits.train.items()})


def _consistency(splits, path):
  config = _few_step(
    consistency_config.get_config(), consistency_family, path, channels=8, channel_mults=(1,)
  )
  family = consistency_family.make_family(config, splits.info)
  return config, family, _init(family, splits)


def _reflow(splits, path):
  teacher = defaults.complete(flow_matching_config.get_config(), diffusion_family.DEFAULTS)
  with teacher.unlocked():
    teacher.update(channels=8, channel_mults=(1,))
  model = diffusion_family.build_model(teacher, splits.info)
  x = np.zeros((1,) + tuple(splits.info.shape), np.float32)
  teacher_params = model.init(jax.random.key(0), x, np.zeros((1,), np.float32))
  config = _few_step(reflow_config.get_config(), reflow_family, path)
  family = reflow_family.make_family(
    config,
    splits.info,
    teacher_config=teacher,
    teacher_params=teacher_params,
    real_splits=splits,
  )
  return config, family, _init(family, splits)


def _vqvae_prior(splits, path, first_stage_dir):
  first = defaults.complete(vqvae_config.get_config(), vqvae_family.DEFAULTS)
  with first.unlocked():
    first.update(hidden=8, num_codes=8, embed_dim=4)
  os.makedirs(first_stage_dir)
  run_config.save(first_stage_dir, first)  # the config.json the prior checks
  fs_model = vqvae_family.build_first_stage(first, splits.info)
  fs_params = fs_model.init(jax.random.key(1), splits.train['image'][:NUM])
  config = _with_inception(
    vqvae_prior_config.get_config(),
    vqvae_family,
    path,
    first_stage_workdir=first_stage_dir,
    channels=8,
    num_layers=1,
  )
  family = vqvae_family.make_family(config, splits.info, first_stage=(fs_model, fs_params))
  return config, family, _init(family, splits)


@pytest.mark.parametrize('model', ['consistency', 'reflow', 'vqvae_prior'])
def test_inception_fid_and_the_cached_real_statistics(
  model, splits, inception_weights, fid_calls, tmp_path, monkeypatch
):
  path, params = inception_weights
  if model == 'consistency':
    config, family, weights = _consistency(splits, path)
  elif model == 'reflow':
    config, family, weights = _reflow(splits, path)
  else:
    config, family, weights = _vqvae_prior(splits, path, str(tmp_path / 'first_stage'))
  assert family.evaluate_takes_workdir
  scored, featurised = [], []
  real_metrics, real_statistics = sample_metrics.sample_metrics, feature_stats.statistics

  def metrics_spy(cfg, samples, splits, **kw):
    scored.append(np.asarray(samples))
    return real_metrics(cfg, samples, splits, **kw)

  def statistics_spy(params, images, **kw):
    featurised.append(np.asarray(images))
    return real_statistics(params, images, **kw)

  monkeypatch.setattr(sample_metrics, 'sample_metrics', metrics_spy)
  monkeypatch.setattr(feature_stats, 'statistics', statistics_spy)
  workdir = str(tmp_path / 'run')
  key = jax.random.key(7)
  first = family.evaluate(weights, splits, key, config, workdir=workdir)

  # eval.json says what was measured, as the diffusion and GAN families do
  assert (first['fid_network'], first['fid_split'], first['fid_num_samples']) == (
    'inception',
    'test',
    NUM,
  )
  assert first['fid_real_count'] == NUM
  assert first['fid_resize'] == inception.RESIZE_RULE + '; levels v -> round(v * 255 / 16)'
  assert first['fid_weights_sha256'] == feature_stats.weights_sha256(path)
  assert {'kid_mean', 'kid_std', 'precision', 'recall', 'is_mean'} <= set(first)
  if model != 'vqvae_prior':
    assert first['fid_by_steps'] == {'1': first['fid']}
  # the FID's statistics are NumPy's mean and covariance of the same images' features
  (samples,) = scored
  assert samples.shape == (NUM, 8, 8, 1) and samples.max() < 17
  real_uint8 = sample_metrics.to_uint8(splits.test['image'], 17)
  (stats,) = fid_calls
  for images, (mu, sigma) in (
    (sample_metrics.to_uint8(samples, 17), stats[:2]),
    (real_uint8, stats[2:]),
  ):
    features = np.asarray(real_statistics(params, images, keep=NUM).features, np.float64)
    np.testing.assert_allclose(mu, features.mean(0), rtol=1e-6, atol=1e-9)
    cov = np.cov(features, rowvar=False)
    np.testing.assert_allclose(sigma, cov, rtol=1e-6, atol=1e-9 * np.abs(cov).max())
  assert np.isfinite(first['fid']) and first['fid'] > 0
  assert sum(np.array_equal(images, real_uint8) for images in featurised) == 1

  # a second evaluation in the same workdir reads the real statistics from its cache
  cached = os.listdir(os.path.join(workdir, 'cache', 'fid_stats'))
  assert len(cached) == 1 and cached[0].startswith('digits-test-'), cached
  featurised.clear()
  fid_calls.clear()
  again = family.evaluate(weights, splits, key, config, workdir=workdir)
  assert len(featurised) == 1 and not np.array_equal(featurised[0], real_uint8)
  (cached_stats,) = fid_calls  # the real mean and covariance read back exactly
  for got, want in zip(cached_stats, stats):
    np.testing.assert_array_equal(got, want)
  for name in ('fid', 'kid_mean', 'kid_std', 'precision', 'recall', 'is_mean', 'is_std'):
    assert again[name] == first[name], name


def test_the_trainer_passes_its_workdir_to_an_evaluate_that_takes_it(tmp_path):
  seen = []

  def evaluate(params, splits, key, config, *, workdir=None):
    seen.append(workdir)
    return {}

  family = dataclasses.replace(_toy_family(), evaluate=evaluate, evaluate_takes_workdir=True)
  loop.run(_toy_config(num_train_steps=2), str(tmp_path / 'run'), family, _toy_splits())
  assert seen == [os.path.abspath(tmp_path / 'run')]
  # a family that does not declare it is called as before (no keyword)
  plain = dataclasses.replace(_toy_family(), evaluate=lambda p, s, k, c: seen.append('plain') or {})
  loop.run(_toy_config(num_train_steps=2), str(tmp_path / 'plain'), plain, _toy_splits())
  assert seen[-1] == 'plain'
