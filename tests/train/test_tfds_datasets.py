"""The tfds datasets the README promises, trained offline on `tfds.testing.mock_data`.

`mnist`, `fashion_mnist`, `binarized_mnist`, `cifar10` and `cycle_gan/*` are read
through tfds (the `[tfds]` extra), which needs network access here. As the Flax
examples test their input pipelines, each is trained for a few steps under tfds's
mock (`tests/data/tfds_mock.py`: the real split names, shapes and levels; rows that
differ per split), through the family's `train_and_evaluate` with a shipped config and
small model overrides, in the in-memory and in the streaming input pipeline.
"""

import json

import numpy as np
import pytest

pytest.importorskip('tensorflow_datasets')

from tests.data import tfds_mock

# One worker under `-n 2 --dist loadgroup`: TensorFlow is imported once.
pytestmark = pytest.mark.xdist_group('tfds_mock')

_COMMON = dict(
  num_train_steps=4,
  batch_size=4,
  log_every=2,
  checkpoint_every=4,
  eval_every=2,
  num_samples=4,
  eval_batch_size=8,
  progress_bar=False,
)


def _vae(**kw):
  from configs import vae

  c = vae.get_config()
  c.update(hidden=(16,), latent_dim=2, iwae_samples=2, **_COMMON)
  c.update(kw)
  return c


def _pixelcnn(**kw):
  from configs import pixelcnn_photos

  c = pixelcnn_photos.get_config()
  c.update(channels=6, num_layers=1, **_COMMON)
  c.update(kw)
  return c


def _cyclegan(**kw):
  from configs import cyclegan

  c = cyclegan.get_config()
  c.update(
    generator_filters=2,
    discriminator_filters=2,
    num_residual_blocks=1,
    discriminator_layers=1,
    pool_size=2,
    domain_a='A',
    domain_b='B',
    **_COMMON,
  )
  c.update(batch_size=2, eval_every=0)
  c.update(kw)
  return c


# (dataset, config, the family's module in gm_jax.families, eval.json keys to check)
CASES = {
  'mnist': (lambda: _vae(dataset='mnist'), 'vae', 'test_bpd'),
  'fashion_mnist': (lambda: _vae(dataset='fashion_mnist', model='cvae'), 'vae', 'test_bpd'),
  'binarized_mnist': (
    lambda: _vae(dataset='binarized_mnist', likelihood='bernoulli'),
    'vae',
    'test_bpd',
  ),
  'cifar10': (lambda: _pixelcnn(dataset='cifar10'), 'autoregressive', 'test_bpd'),
  'cycle_gan/horse2zebra': (
    lambda: _cyclegan(dataset='cycle_gan/horse2zebra'),
    'cyclegan',
    'cycle_error',
  ),
}


@pytest.fixture(autouse=True)
def _short_domain_classifier(monkeypatch):
  """CycleGAN's evaluation trains a 300-step domain classifier on 256x256 images (~100 s
  on 2 CPU cores); 2 steps are enough to run that code."""
  from gm_jax.evaluate import fid

  train = fid.train_feature_classifier
  monkeypatch.setattr(
    fid,
    'train_feature_classifier',
    lambda *a, **kw: train(*a, **dict(kw, num_steps=2, batch_size=4)),
  )


# Evaluations of `_train` runs without overrides, by dataset: the 'auto' test reads the
# in-memory mnist run of `test_trains_in_memory[mnist]` (the same config, the same worker
# under `--dist loadgroup`) instead of training it again.
_DEFAULT_RUNS: dict = {}


def _train(name, tmp_path, **overrides):
  from gm_jax import families

  make_config, module, metric = CASES[name]
  config = make_config()
  config.update(data_dir=str(tmp_path / 'tfds'), **overrides)
  assert families.module_for(config.model).__name__ == f'gm_jax.families.{module}'
  workdir = tmp_path / 'run'
  with tfds_mock.mock_tfds():
    res = families.train_and_evaluate(config, str(workdir))
  ev = json.loads((workdir / 'eval.json').read_text())
  assert ev['dataset'] == name and ev['train_steps'] == 4
  assert np.isfinite(ev[metric]), (metric, ev[metric])
  assert res[metric] == ev[metric]
  if not overrides:
    _DEFAULT_RUNS[name] = ev
  return ev


# CycleGAN's 256x256 images: ~20 s with a warm compilation cache, ~30 s of CPU cold
# (2 cores). Its own xdist group, so that `--dist loadgroup` can run it on the other
# worker than the rest of this module (~45 s).
@pytest.mark.parametrize(
  'name',
  [
    pytest.param(n, marks=[pytest.mark.slow, pytest.mark.xdist_group('tfds_mock_cyclegan')])
    if n.startswith('cycle_gan')
    else n
    for n in tfds_mock.NAMES
  ],
)
def test_trains_in_memory(name, tmp_path):
  ev = _train(name, tmp_path)
  if name != 'binarized_mnist' and name.split('/')[0] != 'cycle_gan':
    # Test bits/dim of the mock's uniform pixels: a few steps cannot beat log2(256) much.
    assert 4.0 < ev['test_bpd'] < 12.0, ev['test_bpd']


@pytest.mark.parametrize('name', [n for n in tfds_mock.NAMES if not n.startswith('cycle_gan')])
def test_trains_streaming(name, tmp_path):
  ev = _train(name, tmp_path, input_pipeline='stream')
  assert ev['input_pipeline'] == 'stream'


def test_auto_streams_a_split_above_the_byte_limit(tmp_path):
  """'auto' keeps the mock's 36 training rows in memory, and streams them when they
  exceed `input_memory_max_bytes` (36 * (784 + 4) bytes)."""
  small = _DEFAULT_RUNS.get('mnist') or _train('mnist', tmp_path / 'small')
  assert small['input_pipeline'] == 'memory'
  ev = _train('mnist', tmp_path / 'large', input_memory_max_bytes=36 * 788 - 1)
  assert ev['input_pipeline'] == 'stream'


def test_families_that_need_the_split_in_memory_say_so(tmp_path):
  from gm_jax import families

  with pytest.raises(
    ValueError, match="config.input_pipeline='stream' is not supported here: CycleGAN"
  ):
    families.train_and_evaluate(
      _cyclegan(dataset='cycle_gan/horse2zebra', input_pipeline='stream'), str(tmp_path)
    )
  with (
    tfds_mock.mock_tfds(),
    pytest.raises(
      ValueError, match="config.binarize='static'.*streamed.*config.input_pipeline='memory'"
    ),
  ):
    families.train_and_evaluate(
      _vae(
        dataset='mnist',
        input_pipeline='stream',
        binarize='static',
        likelihood='bernoulli',
        data_dir=str(tmp_path),
      ),
      str(tmp_path),
    )


def test_mock_matches_the_pipeline(tmp_path):
  """The mock's rows reach `load_splits` unchanged, in the real splits' order."""
  from gm_jax import data as gm_data

  with tfds_mock.mock_tfds():
    splits = gm_data.load_splits('binarized_mnist', data_dir=str(tmp_path))
    both = gm_data.load_split('cycle_gan/horse2zebra', 'trainA+trainB', data_dir=str(tmp_path))
    with pytest.raises(ValueError, match="Unknown split 'train'"):
      gm_data.load_split('cycle_gan/horse2zebra', 'train', data_dir=str(tmp_path))
  full = tfds_mock.rows('binarized_mnist', 'train', range(40))
  np.testing.assert_array_equal(splits.train['image'], full['image'][:36])
  np.testing.assert_array_equal(splits.validation['image'], full['image'][36:])
  np.testing.assert_array_equal(
    splits.test['image'], tfds_mock.rows('binarized_mnist', 'test', range(12))['image']
  )
  assert splits.train['image'].max() == 1 and 'label' not in splits.train
  np.testing.assert_array_equal(both['label'], [0] * 6 + [1] * 5)
  assert both['image'].shape == (11, 256, 256, 3)


def test_cyclegan_reads_the_domains_from_the_datasets_own_splits(tmp_path):
  """`cycle_gan/*` has trainA/trainB/testA/testB and no 'train' (tfds rejects it)."""
  from gm_jax import families
  from gm_jax.families import cyclegan

  config = families.complete(_cyclegan(dataset='cycle_gan/horse2zebra', data_dir=str(tmp_path)))
  with tfds_mock.mock_tfds():
    splits = cyclegan.load_domains(config)
  a_train = tfds_mock.rows('cycle_gan/horse2zebra', 'trainA', range(6))['image']
  b_test = tfds_mock.rows('cycle_gan/horse2zebra', 'testB', range(4))['image']
  assert splits.train['image_a'].shape == (6, 256, 256, 3)  # max(6, 5): B repeated
  np.testing.assert_array_equal(splits.train['image_a'], a_train)
  assert len(splits.test['image_a']) == 3  # min(3, 4)
  assert set(map(bytes, splits.test['image_b'])) <= set(map(bytes, b_test))
