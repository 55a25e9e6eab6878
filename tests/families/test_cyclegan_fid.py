"""#39 part 4 in the CycleGAN family: `config.fid_network` switches `fid_a2b`, `fid_b2a`,
`fid_floor_a_vs_b` (and each direction's KID and precision/recall) between the domain
classifier's features and FID Inception's, and eval.json says what was measured.

A tiny untrained CycleGAN between test_cyclegan's dark and bright 8x8 domains (the digits'
shape and 17 levels), evaluated on 4 test pairs with random FID-Inception weights written as
pytorch-fid's file. The FIDs' statistics are checked against NumPy's mean and covariance of
the Inception features of the same uint8 images, translated here by hand."""

import os

import jax
import numpy as np
import pytest

from gm_jax import data as gm_data
from gm_jax.evaluate import feature_metrics
from gm_jax.evaluate import feature_stats
from gm_jax.evaluate import fid
from gm_jax.evaluate import inception
from gm_jax.evaluate import sample_metrics
from gm_jax.families import cyclegan
from gm_jax.models import gan as gan_lib
from gm_jax.nn.layers import images_to_unit
from tests.evaluate import low_rank_fid
from tests.families import test_cyclegan

# One worker under `-n 2 --dist loadgroup` for both Inception-FID files: the session's
# random Inception weights (tests/families/conftest.py) are made once.
pytestmark = pytest.mark.xdist_group('inception_fid')
NUM = 4  # test pairs: one Inception batch shape for every call
INFO = test_cyclegan.INFO
LEVELS = INFO.num_levels  # 17


def _setup(**settings):
  config = test_cyclegan._config(dataset='digits', domain_a='0', domain_b='1', **settings)
  cyclegan.check_config(config)
  rows = test_cyclegan._rows(16)
  test = {k: v[:NUM] for k, v in test_cyclegan._rows(8, seed=1).items()}
  splits = gm_data.Splits(
    train=rows, validation={k: v[:0] for k, v in rows.items()}, test=test, info=INFO
  )
  family = cyclegan.make_family(config, INFO)
  params = family.init(jax.random.key(0), {k: v[:NUM] for k, v in rows.items()})
  return config, family, splits, params


def _translations(config, params, test):
  """`(G(a), F(b))` on the level grid, by hand."""
  gen, _ = cyclegan.build_models(config, INFO)
  translate = jax.jit(
    lambda p, x: gan_lib.levels_from_unit(gen.apply(p, images_to_unit(x, LEVELS)), LEVELS)
  )
  return (
    np.asarray(translate(params['g_ab'], test['image_a'])),
    np.asarray(translate(params['g_ba'], test['image_b'])),
  )


def test_inception_fids_and_the_cached_real_statistics(
  inception_weights, fid_calls, tmp_path, monkeypatch
):
  path, _ = inception_weights
  config, family, splits, params = _setup(fid_network='inception', inception_weights=path)
  assert family.evaluate_takes_workdir
  featurised = []  # (uint8 images, their FeatureStats) of every Inception pass
  real_statistics = feature_stats.statistics

  def statistics_spy(params, images, **kw):
    stats = real_statistics(params, images, **kw)
    featurised.append((np.asarray(images), stats))
    return stats

  monkeypatch.setattr(feature_stats, 'statistics', statistics_spy)
  workdir = str(tmp_path / 'run')
  got = family.evaluate(params, splits, jax.random.key(0), config, workdir=workdir)

  # eval.json says what was measured, as the sampling families do
  assert (got['fid_network'], got['fid_split'], got['fid_num_samples']) == ('inception', 'test', 4)
  assert got['fid_real_count'] == NUM
  assert got['fid_resize'] == inception.RESIZE_RULE + '; levels v -> round(v * 255 / 16)'
  assert got['fid_weights_sha256'] == feature_stats.weights_sha256(path)

  # Inception saw the uint8 images of the real domains and of the translations (by hand),
  # each once, and each FID's statistics are NumPy's of those images' features
  ab, ba = _translations(config, params, splits.test)
  uint8 = lambda x: np.round(x.astype(np.float64) * 255 / 16).astype(np.uint8)
  images = {
    'a': uint8(splits.test['image_a']),
    'b': uint8(splits.test['image_b']),
    'ab': uint8(ab),
    'ba': uint8(ba),
  }
  assert len(featurised) == 4
  features32 = {}  # float32, as the family's KID and precision/recall read them
  for name, x in images.items():
    (f,) = [s.features for seen, s in featurised if np.array_equal(seen, x)]
    assert f.shape == (NUM, inception.FEATURE_DIM), name
    features32[name] = f
  features = {name: np.asarray(f, np.float64) for name, f in features32.items()}
  pairs = {'fid_a2b': ('ab', 'b'), 'fid_b2a': ('ba', 'a'), 'fid_floor_a_vs_b': ('a', 'b')}
  assert len(fid_calls) == 3
  for (name, (gen, real)), stats in zip(pairs.items(), fid_calls):
    for f, (mu, sigma) in ((features[gen], stats[:2]), (features[real], stats[2:])):
      np.testing.assert_allclose(mu, f.mean(0), rtol=1e-6, atol=1e-9)
      cov = np.cov(f, rowvar=False)
      np.testing.assert_allclose(sigma, cov, rtol=1e-6, atol=1e-9 * np.abs(cov).max())
    want = low_rank_fid.fid_of_features(features[gen], features[real])
    np.testing.assert_allclose(got[name], want, rtol=1e-6)
    assert got[name] > 0, name
  # KID and precision/recall of each direction, over the same features
  for direction, (gen, real) in (('a2b', ('ab', 'b')), ('b2a', ('ba', 'a'))):
    kid = feature_metrics.kernel_inception_distance(
      features32[gen], features32[real], subset_size=4
    )
    prc = feature_metrics.precision_recall(features32[gen], features32[real])
    for k, v in {**kid, **prc}.items():
      assert got[f'{k}_{direction}'] == v, k

  # the real domains' statistics are cached in <workdir>/cache, one file per domain
  folder = os.path.join(workdir, 'cache', 'fid_stats')
  cached = sorted(os.listdir(folder))
  assert [c.split('-test-')[0] for c in cached] == ['digits[0]', 'digits[1]'], cached
  for file, stats in zip(cached, (fid_calls[1][2:], fid_calls[0][2:])):  # a, then b
    saved = feature_stats.load(os.path.join(folder, file))
    np.testing.assert_array_equal(saved.mu, stats[0])
    np.testing.assert_array_equal(saved.sigma, stats[1])
    assert saved.count == NUM


def test_classifier_fids_are_the_domain_classifiers():
  config, family, splits, params = _setup()
  assert config.fid_network == 'classifier'
  got = family.evaluate(params, splits, jax.random.key(0), config)
  three = family.evaluate(params, splits, jax.random.key(0), _with(config, fid_num_samples=3))
  # the same numbers as before the switch: FIDs of the domain classifier's features
  classifier = cyclegan.domain_classifier(splits.train, num_levels=LEVELS, seed=0)
  feat = lambda x: classifier.logits_and_features(x)[1]
  ab, ba = _translations(config, params, splits.test)
  a, b = splits.test['image_a'], splits.test['image_b']
  assert got['fid_a2b'] == fid.fid_from_features(feat(ab), feat(b))
  assert got['fid_b2a'] == fid.fid_from_features(feat(ba), feat(a))
  assert (
    got['fid_floor_a_vs_b'] == three['fid_floor_a_vs_b'] == fid.fid_from_features(feat(a), feat(b))
  )
  assert three['fid_a2b'] == fid.fid_from_features(feat(ab[:3]), feat(b))
  kid = feature_metrics.kernel_inception_distance(feat(ab), feat(b), subset_size=4)
  assert got['kid_mean_a2b'] == kid['kid_mean']
  assert got['precision_b2a'] == feature_metrics.precision_recall(feat(ba), feat(a))['precision']
  assert (got['fid_network'], got['fid_num_samples'], three['fid_num_samples']) == (
    'classifier',
    NUM,
    3,
  )
  assert got['fid_resize'] == sample_metrics.CLASSIFIER_RESIZE
  assert 'fid_weights_sha256' not in got
  # the domain classifier's translation accuracy does not depend on the switch
  acc = np.mean(np.argmax(classifier.logits_and_features(ab)[0], -1) == 1)
  assert got['translation_accuracy_a2b'] == three['translation_accuracy_a2b'] == acc


def _with(config, **settings):
  config = config.copy_and_resolve_references()
  config.update(settings)
  return config


def test_check_config_names_the_fid_fields():
  with pytest.raises(ValueError, match='config.fid_network must be one of'):
    _setup(fid_network='nonsense')
  with pytest.raises(ValueError, match='needs config.inception_weights'):
    _setup(fid_network='inception')
  with pytest.raises(FileNotFoundError, match='config.inception_weights='):
    _setup(fid_network='inception', inception_weights='/nonexistent/pt_inception.pth')
  assert set(sample_metrics.DEFAULTS) <= set(cyclegan.DEFAULTS)
