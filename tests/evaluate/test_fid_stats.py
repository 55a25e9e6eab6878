"""`python -m gm_jax.evaluate.fid_stats` and `sample_metrics` on tfds's mocked CIFAR-10 (its
first 4 test images) with random Inception weights written as a torch state-dict file: the plumbing,
checked against NumPy statistics of the same features."""

import dataclasses
import json
import os

import jax
import ml_collections
import numpy as np
import pytest

from gm_jax.evaluate import feature_metrics
from gm_jax.evaluate import feature_stats
from gm_jax.evaluate import fid_stats
from gm_jax.evaluate import inception
from gm_jax.evaluate import sample_metrics
from tests.data import tfds_mock
from tests.evaluate import low_rank_fid
from tests.evaluate import torch_file

pytest.importorskip('tensorflow_datasets')


@pytest.fixture
def fast_fid(monkeypatch):
  """An exact low-rank FID in place of pytorch-fid's `sqrtm` formula: `scipy.linalg.sqrtm`
  of a 2048 x 2048 product takes ~2 minutes on the shared test machine, and even the two
  2048 x 2048 `eigh` of `gm_jax.evaluate.fid`'s FID ~20 CPU-s; the covariances of 4 or 12
  images have rank <= 11, which a pivoted Cholesky finds in 0.3 s. The formula itself is
  checked against pytorch-fid in test_feature_metrics.py; here only the plumbing around it
  is, against `low_rank_fid.fid_of_features` (the same number by another route, from the
  features)."""
  monkeypatch.setattr(feature_metrics, 'frechet_distance', low_rank_fid.frechet_distance)
  return low_rank_fid.frechet_distance


def test_low_rank_fid_equals_the_eigh_fid_of_gm_jax_evaluate_fid():
  """The stand-in and the features route agree with `gm_jax.evaluate.fid` (two `eigh`) on
  64-wide features of 4 and 12 rows (ranks 3 and 11, as the tests' Inception features)."""
  from gm_jax.evaluate import fid

  rng = np.random.default_rng(0)
  a, b = rng.normal(size=(4, 64)), 0.5 + 2.0 * rng.normal(size=(12, 64))
  want = fid.fid_from_features(a, b)
  assert want > 1.0
  got = low_rank_fid.frechet_distance(
    *feature_metrics.gaussian_stats(a), *feature_metrics.gaussian_stats(b)
  )
  np.testing.assert_allclose(got, want, rtol=1e-7)  # eigh: sqrt of clipped rounding noise
  np.testing.assert_allclose(low_rank_fid.fid_of_features(a, b), got, rtol=1e-9)


@pytest.fixture(scope='module')
def setup(tmp_path_factory):
  """`(weights path, params, cifar10 splits (mocked, 4 test rows), 4 samples, root, their
  features and the real rows' features)`: the Inception runs on 4 images of one shape only."""
  from gm_jax import data as gm_data

  root = tmp_path_factory.mktemp('fid_stats')
  params = torch_file.random_params(1)
  path = str(root / inception.FID_WEIGHTS_FILE)
  torch_file.write_state_dict(path, torch_file.params_to_state_dict(params))
  with tfds_mock.mock_tfds():
    splits = gm_data.load_splits('cifar10', data_dir=str(root / 'tfds'))
  splits = dataclasses.replace(splits, test={k: v[:4] for k, v in splits.test.items()})
  samples = np.random.default_rng(0).integers(0, 256, size=(4, 32, 32, 3), dtype=np.uint8)
  gen = feature_stats.statistics(params, samples, keep=4, logits=True)
  real = feature_stats.statistics(params, splits.test['image'], keep=4)
  return path, params, splits, samples, root, gen, real


def test_written_weights_load_back_exactly(setup):
  path, params, *_ = setup
  loaded = inception.load_torch_weights(path)
  jax.tree.map(np.testing.assert_array_equal, loaded, params)
  try:
    import torch
  except ImportError:
    return
  ref = torch.load(path, weights_only=True)  # the writer follows torch's layout
  ours = inception.read_torch_state_dict(path)
  assert sorted(ref) == sorted(ours)
  for k, v in ref.items():
    np.testing.assert_array_equal(v.numpy(), ours[k])


def test_cli_dataset_stats_and_fid_between_files(setup, tmp_path, fast_fid):
  path, _, _, samples, root, gen, real = setup
  out = str(tmp_path / 'cifar10_test.npz')
  with tfds_mock.mock_tfds():
    res = fid_stats.main(
      [
        '--weights',
        path,
        '--dataset',
        'cifar10',
        '--split',
        'test[:4]',
        '--data_dir',
        str(root / 'tfds'),
        '--out',
        out,
        '--parallel',
        'none',
      ]
    )
  assert res['count'] == 4
  saved = feature_stats.load(out)
  f = real.features.astype(np.float64)
  np.testing.assert_allclose(saved.mu, f.mean(0), rtol=1e-10, atol=1e-12)
  np.testing.assert_allclose(saved.sigma, np.cov(f, rowvar=False), rtol=1e-8, atol=1e-12)
  sample_file = str(tmp_path / 'samples.npz')
  np.savez(sample_file, samples=samples)
  res = fid_stats.main(['--weights', path, sample_file, out, '--parallel', 'none'])
  want = low_rank_fid.fid_of_features(gen.features, real.features)
  assert res['counts'] == [4, 4]
  np.testing.assert_allclose(res['fid'], want, rtol=1e-6)  # one-pass vs np.cov sums
  assert res['fid'] > 1e-3
  with pytest.raises(SystemExit):
    fid_stats.main(['--weights', path, sample_file])  # one file: usage error


def test_sample_metrics_inception(setup, tmp_path, fast_fid):
  path, _, splits, samples, _, gen, real = setup
  config = ml_collections.ConfigDict(
    {'fid_network': 'inception', 'inception_weights': path, 'fid_num_samples': 4}
  )
  assert sample_metrics.num_samples(config, splits) == 4
  got = sample_metrics.sample_metrics(config, samples, splits, cache_dir=str(tmp_path))
  want_fid = low_rank_fid.fid_of_features(gen.features, real.features)
  np.testing.assert_allclose(got['fid'], want_fid, rtol=1e-6)  # one-pass vs np.cov sums
  assert got['fid'] > 1e-3
  kid = feature_metrics.kernel_inception_distance(gen.features, real.features, subset_size=4)
  assert got['kid_mean'] == pytest.approx(kid['kid_mean'], rel=1e-9)
  prc = feature_metrics.precision_recall(gen.features, real.features)
  assert (got['precision'], got['recall']) == (prc['precision'], prc['recall'])
  isc = feature_metrics.inception_score(gen.logits, splits=4)
  assert got['is_mean'] == pytest.approx(isc['is_mean'], rel=1e-9)
  assert got['fid_network'] == 'inception' and got['fid_split'] == 'test'
  assert got['fid_num_samples'] == 4 and got['fid_real_count'] == 4
  assert got['fid_resize'] == inception.RESIZE_RULE
  assert got['fid_weights_sha256'] == feature_stats.weights_sha256(path)
  assert len(os.listdir(tmp_path / 'fid_stats')) == 1
  json.dumps(got)  # eval.json-ready


def test_sample_metrics_config_errors_name_the_field(setup):
  _, _, splits, samples, *_ = setup
  bad = ml_collections.ConfigDict(
    {'fid_network': 'vgg', 'inception_weights': '', 'fid_num_samples': 0}
  )
  with pytest.raises(ValueError, match='config.fid_network'):
    sample_metrics.sample_metrics(bad, samples, splits)
  bad.fid_network = 'inception'
  with pytest.raises(ValueError, match='config.inception_weights'):
    sample_metrics.sample_metrics(bad, samples, splits)
  bad.inception_weights = '/nowhere/pt_inception.pth'
  with pytest.raises(FileNotFoundError, match='config.inception_weights.*Download'):
    sample_metrics.sample_metrics(bad, samples, splits)


def test_sample_metrics_classifier_on_digits():
  from gm_jax import data as gm_data
  from gm_jax.evaluate import fid

  splits = gm_data.load_splits('digits')
  config = ml_collections.ConfigDict(
    {'fid_network': 'classifier', 'inception_weights': '', 'fid_num_samples': 0}
  )
  samples = splits.train['image'][:300]
  got = sample_metrics.sample_metrics(config, samples, splits)
  classifier = fid.classifier_for(splits)
  gen_f = classifier.logits_and_features(samples)[1]
  real_f = classifier.logits_and_features(splits.test['image'])[1]
  assert got['fid'] == pytest.approx(fid.fid_from_features(gen_f, real_f), rel=1e-9)
  kid = feature_metrics.kernel_inception_distance(gen_f, real_f, subset_size=300)
  assert got['kid_mean'] == pytest.approx(kid['kid_mean'], rel=1e-9)
  assert got['fid_network'] == 'classifier' and got['fid_num_samples'] == 300
  assert {'fid_floor', 'class_coverage', 'precision', 'recall'} <= set(got)


def test_dcgan_on_mocked_cifar10_reports_the_inception_fid(setup, tmp_path, fast_fid, monkeypatch):
  """#39 part 5: the tfds CIFAR-10 path with `fid_network='inception'` end to end (a DCGAN
  of 8 channels, one step, 4 samples against the mock's 12 test images): eval.json's FID
  is the one of NumPy statistics of the same images' features."""
  from configs import dcgan
  from gm_jax import families

  path, params, _, _, root, *_ = setup
  config = dcgan.get_config()
  config.update(
    dataset='cifar10',
    data_dir=str(root / 'tfds'),  # the mock prepared once, by `setup`
    num_train_steps=1,
    batch_size=4,
    latent_dim=4,
    generator_features=(8, 8),
    discriminator_features=(8, 8),
    fid_network='inception',
    inception_weights=path,
    fid_num_samples=4,
    num_samples=4,
    checkpoint_every=1,
    log_every=1,
    progress_bar=False,
  )
  seen = {}
  real_metrics = sample_metrics.sample_metrics

  def spy(cfg, samples, splits, **kw):
    seen.update(samples=np.asarray(samples), real=splits.test['image'])
    return real_metrics(cfg, samples, splits, **kw)

  monkeypatch.setattr(sample_metrics, 'sample_metrics', spy)
  with tfds_mock.mock_tfds():
    ev = families.train_and_evaluate(config, str(tmp_path / 'run'))
  assert seen['samples'].shape == (4, 32, 32, 3) and seen['real'].shape == (12, 32, 32, 3)
  gen = feature_stats.statistics(params, seen['samples'], keep=4)
  real = feature_stats.statistics(params, seen['real'], keep=12)
  want = low_rank_fid.fid_of_features(gen.features, real.features)
  np.testing.assert_allclose(ev['fid'], want, rtol=1e-6)
  assert (ev['fid_network'], ev['fid_split'], ev['fid_resize']) == (
    'inception',
    'test',
    inception.RESIZE_RULE,
  )
  assert (ev['fid_num_samples'], ev['fid_real_count']) == (4, 12)
  assert ev['fid_weights_sha256'] == feature_stats.weights_sha256(path)
  assert {'kid_mean', 'is_mean'} <= set(ev)
