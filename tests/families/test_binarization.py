"""`config.binarize`: binary splits, the dynamic re-draw inside the training loss."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from gm_jax import data as gm_data
from gm_jax import families
from gm_jax.data import binarize
from gm_jax.families import _binarization as binarization
from gm_jax.train.family import Family


def _splits(levels=256, n=(30, 10, 10)):
  rng = np.random.default_rng(0)
  make = lambda m: {
    'image': rng.integers(0, levels, (m, 28, 28, 1)).astype(np.uint8),
    'label': rng.integers(0, 10, m).astype(np.int32),
  }
  info = gm_data.DatasetInfo('mnist_offline', 'image', (28, 28, 1), levels, 10)
  return gm_data.Splits(train=make(n[0]), validation=make(n[1]), test=make(n[2]), info=info)


def test_static_binarises_every_split_once():
  grey = _splits()
  out = binarization.binarize_splits(grey, 'static', seed=3)
  assert out.info.num_levels == 2 and out.info.shape == (28, 28, 1)
  for i, split in enumerate(('train', 'validation', 'test')):
    arrays = getattr(out, split)
    assert set(arrays) == {'image', 'label'}
    want = binarize.static_binarize(getattr(grey, split)['image'], num_levels=256, seed=[3, i])
    np.testing.assert_array_equal(arrays['image'], want)
    np.testing.assert_array_equal(arrays['label'], getattr(grey, split)['label'])


def test_dynamic_keeps_train_intensities_and_binarises_test_like_static():
  grey = _splits()
  dyn = binarization.binarize_splits(grey, 'dynamic', seed=0)
  static = binarization.binarize_splits(grey, 'static', seed=0)
  np.testing.assert_array_equal(dyn.train['intensity'], grey.train['image'])
  np.testing.assert_array_equal(dyn.test['image'], static.test['image'])
  np.testing.assert_array_equal(dyn.validation['image'], static.validation['image'])
  assert 'intensity' not in dyn.test


@pytest.mark.parametrize(
  'mode, match', [('sometimes', 'must be one of'), ('static', 'already binary')]
)
def test_bad_binarize_is_named(mode, match):
  with pytest.raises(ValueError, match=f'config.binarize.*{match}|{match}.*config.binarize'):
    binarization.binarize_splits(_splits(levels=2), mode)


def _recording_family():
  """A family whose loss returns the mean pixel of the batch it sees."""

  def loss(params, batch, key, *, train, step=None):
    del params, key, train, step
    assert 'intensity' not in batch
    m = jnp.mean(batch['image'].astype(jnp.float32))
    return m, {'mean': m}

  return Family(
    name='rec', init=lambda k, b: {}, loss=loss, evaluate=lambda *a: {'x': 1}, loss_takes_step=True
  )


def test_dynamic_family_redraws_per_key_and_passes_the_step_on():
  splits = binarization.binarize_splits(_splits(), 'dynamic')
  fam = binarization.dynamic_family(_recording_family(), num_levels=256)
  assert fam.loss_takes_step  # declared by the wrapped family, so the trainer passes `step`
  seen = fam.loss(
    {},
    {k: v[:4] for k, v in splits.train.items()},
    jax.random.key(0),
    train=True,
    step=jnp.int32(3),
  )
  assert np.isfinite(float(seen[0]))
  batch = {k: v[:16] for k, v in splits.train.items()}
  loss = jax.jit(lambda b, k: fam.loss({}, b, k, train=True)[0])
  key = jax.random.key(0)
  a, b, c = loss(batch, key), loss(batch, key), loss(batch, jax.random.fold_in(key, 1))
  assert a == b and a != c
  # The draw has the intensity's mean, and is not the stored static draw.
  np.testing.assert_allclose(a, batch['intensity'].mean() / 255, atol=0.01)
  # Validation (train=False) sees the stored binary images.
  val = fam.loss({}, batch, key, train=False)[0]
  np.testing.assert_allclose(val, batch['image'].mean(), rtol=1e-6)


def test_apply_reports_the_protocol():
  config = ml_collections.ConfigDict({'binarize': 'dynamic', 'binarize_seed': 4})
  seen = []
  splits, fam = binarization.apply(
    config, _splits(), lambda c, info: seen.append(info) or _recording_family()
  )
  assert seen[0].num_levels == 2 and splits.info.num_levels == 2
  out = fam.evaluate(None, splits, None, config)
  assert out['binarize'] == 'dynamic' and out['binarize_seed'] == 4
  assert '[4, 2]' in out['test_binarization']
  none_splits, _ = binarization.apply(
    ml_collections.ConfigDict(binarization.DEFAULTS), _splits(), lambda c, info: _recording_family()
  )
  assert none_splits.info.num_levels == 256


def _config(config_file):
  import os

  from gm_jax.demo import load_config

  return families.complete(
    load_config(os.path.join(os.path.dirname(__file__), '..', '..', 'configs', config_file))
  )


def _train_and_capture(module, config, grey, monkeypatch):
  """`families.setup(config)` on the splits `grey`: the `(splits, family)` that
  `loop.run` gets from `families.train_and_evaluate`."""
  assert families.module_for(config.model) is module
  # Families read their data through gm_jax.train.input_pipeline -> gm_data.load_splits.
  monkeypatch.setattr(gm_data, 'load_splits', lambda *a, **k: grey)
  _, family, splits = families.setup(config)
  return splits, family


@pytest.mark.parametrize(
  'module_name,config_file',
  [
    ('gm_jax.families.autoregressive', 'pixelcnn.py'),
    ('gm_jax.families.hvae', 'hvae.py'),
    ('gm_jax.families.vae', 'vae.py'),
  ],
)
def test_families_train_on_binarised_splits(module_name, config_file, monkeypatch):
  """setup applies config.binarize: the trainer gets 2-level splits and a
  family built for them (PixelCNN / HVAE: 2-way categorical = Bernoulli)."""
  import importlib

  config = _config(config_file)
  config.binarize = 'dynamic'
  if config_file == 'vae.py':
    config.likelihood = 'bernoulli'
  splits, family = _train_and_capture(
    importlib.import_module(module_name), config, _splits(n=(8, 4, 4)), monkeypatch
  )
  assert splits.info.num_levels == 2 and set(np.unique(splits.test['image'])) <= {0, 1}
  batch = {k: v[:2] for k, v in splits.train.items()}
  params = jax.eval_shape(family.init, jax.random.key(0), batch)
  assert jax.tree.leaves(params)  # built for the binary data
  assert 'intensity' in splits.train  # dynamic: the loss re-draws from the grey levels


@pytest.mark.parametrize('mode', ['dynamic', 'static'])
def test_vae_marginal_decoder_bias_comes_from_the_training_split(mode, monkeypatch):
  """config.decoder_bias_init='marginals': the initial decoder bias is the logit of the
  training split's pixel means (dynamic: mean grey level / 255; static: mean of the draw)."""
  from gm_jax.families import vae as vae_family

  config = _config('vae.py')
  config.update(
    binarize=mode, likelihood='bernoulli', decoder_bias_init='marginals', hidden=(8,), latent_dim=2
  )
  grey = _splits(n=(50, 4, 4))
  splits, family = _train_and_capture(vae_family, config, grey, monkeypatch)
  params = family.init(jax.random.key(0), {k: v[:2] for k, v in splits.train.items()})
  bias = np.asarray(params['params']['decoder']['out']['bias'])
  if mode == 'dynamic':
    want = grey.train['image'].astype(np.float64).mean(0) / 255
  else:
    want = binarize.static_binarize(grey.train['image'], num_levels=256, seed=[0, 0]).mean(0)
  want = np.clip(want, 1e-3, 1 - 1e-3).reshape(-1)
  np.testing.assert_allclose(1 / (1 + np.exp(-bias.astype(np.float64))), want, rtol=1e-5)


@pytest.mark.parametrize(
  'overrides, match',
  [
    (dict(decoder_bias_init='data'), r"config.decoder_bias_init must be one of \('zeros'"),
    (dict(decoder_bias_init='marginals', architecture='conv'), "needs architecture='mlp'"),
    (
      dict(decoder_bias_init='marginals', likelihood='discretized_logistic'),
      "needs likelihood 'bernoulli' or 'categorical'",
    ),
  ],
)
def test_bad_decoder_bias_init_is_named(overrides, match):
  config = _config('vae.py')
  config.update(**overrides)
  with pytest.raises(ValueError, match=match):
    families.train_and_evaluate(config, '/nonexistent')


def test_marginal_decoder_bias_without_the_data_is_named():
  from gm_jax.families import vae as vae_family

  config = _config('vae.py')
  config.update(decoder_bias_init='marginals', likelihood='bernoulli')
  with pytest.raises(ValueError, match='needs the training marginals: pass output_bias'):
    vae_family.make_family(config, _splits(levels=2).info)
