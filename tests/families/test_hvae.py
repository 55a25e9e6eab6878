"""The hierarchical-VAE family through the trainer, its loss options (KL warm-up, free
bits, IWAE objective, spectral regulariser, gradient skipping), and the plain VAE's
IWAE objective and KL warm-up."""

import json
import os
import pathlib

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from scipy import special

from configs import hvae as hvae_config
from configs import hvae_photos as hvae_photos_config
from configs import vae as vae_config
from gm_jax import data as gm_data
from gm_jax import families
from gm_jax import losses
from gm_jax.families import hvae as hvae_family
from gm_jax.families import vae as vae_family
from gm_jax.models import vae as vae_lib

INFO = gm_data.get_info('digits')
X = np.random.default_rng(0).integers(0, 17, (6, 8, 8, 1)).astype(np.uint8)
BATCH = {'image': X, 'label': np.zeros(6, np.int32)}


def _tiny(tfds_dir=None, **overrides):
  c = hvae_config.get_config()
  c.data_dir = tfds_dir
  c.update(
    groups_per_scale=(1, 1),
    channels=8,
    latent_channels=2,
    cells_per_group=0,
    output_cells=1,
    spectral_reg=0.0,
    grad_skip_norm=0.0,
    num_train_steps=30,
    batch_size=32,
    log_every=10,
    eval_every=15,
    checkpoint_every=15,
    iwae_samples=5,
    iwae_batch_size=360,
    num_samples=8,
    picture_temperatures=(1.0, 0.5),
    progress_bar=False,
  )
  c.update(overrides)
  return families.complete(c)


# One worker under `-n 2 --dist loadgroup` with test_contract's hvae run.
@pytest.mark.xdist_group('hvae_run')
def test_training_writes_artefacts_and_reports_groups(contract_run):
  # test_contract's hvae run (killed at step 16, resumed): this file's `_tiny` settings
  # (test_contract.SHARED). The regulariser and the skipping are checked in the loss tests
  # below; leaving them out here keeps the compiled train step small.
  run = contract_run('hvae')
  res, tmp_path = run.result, pathlib.Path(run.workdir)
  for name in (
    'eval.json',
    'metrics.jsonl',
    'samples.png',
    'samples_temperatures.png',
    'reconstructions.png',
    'loss.png',
  ):
    assert (tmp_path / name).exists(), name
  assert sorted(os.listdir(tmp_path / 'checkpoints')) == ['15', '30']
  ev = json.loads((tmp_path / 'eval.json').read_text())
  assert ev['model'] == 'hvae' and ev['bound'] == 'iwae-5' and ev['num_groups'] == 2
  assert ev['latent_group_shapes'] == [[2, 2, 2], [4, 4, 2]]
  assert len(ev['test_kl_per_group_nats']) == 2
  assert ev['active_groups'] == sum(k > 0.01 for k in ev['test_kl_per_group_nats'])
  np.testing.assert_allclose(ev['test_bpd'], ev['test_nll_nats'] / 64 / np.log(2), rtol=1e-6)
  assert ev['test_bpd'] <= ev['test_elbo_bpd'] + 1e-3 and ev['test_bpd'] < 4.087
  assert res['test_bpd'] == ev['test_bpd']
  records = [json.loads(l) for l in (tmp_path / 'metrics.jsonl').read_text().splitlines()]
  train = [r for r in records if 'loss' in r]
  assert all(np.isfinite(r['loss']) for r in train)
  assert {'kl_group_0', 'kl_group_1', 'elbo_bpd'} <= set(train[-1])


@pytest.fixture(scope='module')
def family():
  return hvae_family.make_family(_tiny(free_bits=0.5, kl_warmup_steps=10, spectral_reg=0.01), INFO)


def test_loss_warm_up_free_bits_spectral_term_and_validation_bound(family):
  np.testing.assert_allclose(hvae_family.kl_warmup_weight(0, 10), 0.1)
  np.testing.assert_allclose(hvae_family.kl_warmup_weight(100, 10), 1.0)
  np.testing.assert_allclose(hvae_family.kl_warmup_weight(None, 10), 1.0)  # the trainer's call
  params = family.init(jax.random.key(0), BATCH)
  key = jax.random.key(1)
  run = jax.jit(
    lambda p: (
      family.loss(p, BATCH, key, train=True, step=5),
      family.loss(p, BATCH, key, train=False),
    )
  )
  (value, m), (value_val, m_val) = run(params)
  np.testing.assert_allclose(m['kl_weight'], 0.6)
  kl = np.array([m['kl_group_0'], m['kl_group_1']])
  np.testing.assert_allclose(
    value,
    m['recon_nats'] + 0.6 * np.maximum(kl, 0.5).sum() + 0.01 * m['spectral_norm_sum'],
    rtol=1e-5,
  )
  # Validation reports the true ELBO (beta = 1, no free bits, no regulariser).
  np.testing.assert_allclose(value_val, m_val['recon_nats'] + m_val['kl_nats'], rtol=1e-5)
  np.testing.assert_allclose(m_val['elbo_bpd'], value_val / 64 / np.log(2), rtol=1e-5)
  assert family.validation_metric == 'elbo_bpd'


def test_iwae_objective_is_the_iwae_bound_of_the_model():
  config = _tiny(objective='iwae', iwae_train_samples=3)
  fam = hvae_family.make_family(config, INFO)
  assert fam.validation_metric == 'iwae_bpd'
  params = fam.init(jax.random.key(0), BATCH)
  model = hvae_family.build_model(config, INFO)
  key = jax.random.key(2)

  @jax.jit
  def run(p):
    log_w = hvae_family.hvae_lib.iwae_log_weights(model, p, jnp.asarray(X), key, 3)
    return fam.loss(p, BATCH, key, train=False), losses.iwae_bound(*log_w)

  (value, metrics), bound = run(params)
  np.testing.assert_allclose(value, -np.mean(bound), rtol=1e-5)
  np.testing.assert_allclose(metrics['iwae_bpd'], value / 64 / np.log(2), rtol=1e-5)


def test_gradient_skipping_zeroes_large_and_non_finite_gradients():
  tree = {'a': jnp.array([3.0, 4.0]), 'b': jnp.array(0.0)}
  grad = jax.jit(
    jax.grad(
      lambda t, s: jnp.sum(hvae_family.skip_bad_gradients(t, 10.0)['a'] * s) + 0.0 * t['b'],
      argnums=0,
    )
  )
  np.testing.assert_array_equal(grad(tree, 1.0)['a'], [1.0, 1.0])  # norm sqrt(2): kept
  np.testing.assert_array_equal(grad(tree, 100.0)['a'], [0.0, 0.0])  # norm 141: skipped
  np.testing.assert_array_equal(grad(tree, jnp.inf)['a'], [0.0, 0.0])  # not finite: skipped


def test_bad_config_fields_are_named():
  with pytest.raises(ValueError, match='config.objective'):
    hvae_family.make_family(_tiny(objective='vi'), INFO)
  with pytest.raises(ValueError, match='config.free_bits'):
    hvae_family.make_family(_tiny(free_bits=-1.0), INFO)
  with pytest.raises(ValueError, match='config.kl_warmup_steps'):  # shared with the VAE
    hvae_family.make_family(_tiny(kl_warmup_steps=-1), INFO)
  with pytest.raises(ValueError, match='normalization'):
    hvae_family.make_family(_tiny(normalization='batch'), INFO)
  with pytest.raises(ValueError, match='config.objective'):
    vae_family.make_family(_vae(objective='x'), INFO)


def test_photo_config_builds_a_model_for_photo_patches():
  c = families.complete(hvae_photos_config.get_config())
  model = hvae_family.build_model(c, gm_data.get_info(c.dataset))
  assert model.image_shape == (32, 32, 3) and model.likelihood == 'discretized_logistic'
  assert len({s[:2] for s in model.latent_shapes()}) >= 2  # more than one scale


def _vae(**overrides):
  c = vae_config.get_config()
  c.update(hidden=(16,), latent_dim=2, **overrides)
  return families.complete(c)


def test_plain_vae_iwae_objective():
  assert vae_config.get_config().objective == 'elbo'
  fam = vae_family.make_family(_vae(objective='iwae', iwae_train_samples=4), INFO)
  assert fam.validation_metric == 'iwae_bpd'
  params = fam.init(jax.random.key(0), BATCH)
  model = vae_family.build_model(_vae(), INFO)
  key = jax.random.key(3)

  @jax.jit
  def run(p):
    log_w = vae_lib.iwae_log_weights(model, p, jnp.asarray(X), None, key, 4)
    grads = jax.grad(lambda q: fam.loss(q, BATCH, key, train=True)[0])(p)
    return fam.loss(p, BATCH, key, train=True), losses.iwae_bound(*log_w), grads

  (value, metrics), bound, grads = run(params)
  np.testing.assert_allclose(value, -np.mean(bound), rtol=1e-5)
  np.testing.assert_allclose(metrics['iwae_bpd'], value / 64 / np.log(2), rtol=1e-5)
  assert all(np.all(np.isfinite(g)) for g in jax.tree.leaves(grads))


def test_plain_vae_kl_warm_up_scales_only_the_training_kl():
  fam = vae_family.make_family(_vae(kl_warmup_steps=10, dropout_rate=0.0), INFO)
  params = fam.init(jax.random.key(0), BATCH)
  key = jax.random.key(5)
  run = jax.jit(
    lambda p: (
      fam.loss(p, BATCH, key, train=True, step=4),
      fam.loss(p, BATCH, key, train=True, step=50),
      fam.loss(p, BATCH, key, train=False),
    )
  )
  (early, m), (late, m_late), (val, m_val) = run(params)
  np.testing.assert_allclose(m['kl_weight'], 0.5)
  np.testing.assert_allclose(early, m['recon_nats'] + 0.5 * m['kl_nats'], rtol=1e-5)
  np.testing.assert_allclose(m_late['kl_weight'], 1.0)
  np.testing.assert_allclose(late, m_late['recon_nats'] + m_late['kl_nats'], rtol=1e-5)
  # Validation is the true ELBO whatever the step; the warm-up changes no metric.
  np.testing.assert_allclose(val, m_val['recon_nats'] + m_val['kl_nats'], rtol=1e-5)
  np.testing.assert_allclose(m['elbo_bpd'], m_val['elbo_bpd'], rtol=1e-5)
  assert 'kl_weight' not in m_val
  assert m['kl_nats'] > 0.01


def test_plain_vae_kl_warm_up_of_the_iwae_objective_matches_numpy():
  config = _vae(objective='iwae', iwae_train_samples=4, kl_warmup_steps=5)
  fam = vae_family.make_family(config, INFO)
  params = fam.init(jax.random.key(0), BATCH)
  model = vae_family.build_model(config, INFO)
  key = jax.random.key(6)
  log_px, log_pz, log_qz = (
    np.asarray(a, np.float64)
    for a in vae_lib.iwae_log_weights(model, params, jnp.asarray(X), None, key, 4)
  )
  value, metrics = jax.jit(lambda p: fam.loss(p, BATCH, key, train=True, step=1))(params)
  # Step 1 of 5: weight 0.4 on log p(z) - log q(z|x) inside every log-weight.
  annealed = special.logsumexp(log_px + 0.4 * (log_pz - log_qz), axis=0) - np.log(4)
  np.testing.assert_allclose(value, -annealed.mean(), rtol=1e-5)
  true = special.logsumexp(log_px + log_pz - log_qz, axis=0) - np.log(4)
  np.testing.assert_allclose(metrics['iwae_bpd'], -true.mean() / 64 / np.log(2), rtol=1e-5)
  np.testing.assert_allclose(metrics['kl_weight'], 0.4)


@pytest.mark.parametrize('bad', [-1, 2.5, True])
def test_plain_vae_bad_kl_warmup_steps_is_named(bad):
  # Not type-safe, as a config built from a dict or YAML would be.
  config = ml_collections.ConfigDict(_vae().to_dict(), type_safe=False)
  config.kl_warmup_steps = bad
  with pytest.raises(ValueError, match='config.kl_warmup_steps'):
    vae_family.make_family(config, INFO)


@pytest.mark.parametrize('group_size', [1, 3])
def test_free_bits_floor_the_kl_averaged_over_each_loss_group(group_size):
  """The unit of the free-bits floor is the trainer's loss group (`loss_group_size`
  examples with one key): per example by default, per batch at the per-device batch."""
  from gm_jax import parallel
  from gm_jax.models import hvae as hvae_lib

  config = _tiny(free_bits=5.0, kl_warmup_steps=0, dropout_rate=0.0)
  family = hvae_family.make_family(config, INFO)
  params = family.init(jax.random.key(0), BATCH)
  key = jax.random.key(4)
  got, _ = jax.jit(  # compiled once, not dispatched op by op
    lambda p, k: parallel.mean_over_groups(
      family.loss, p, BATCH, k, group_size=group_size, train=True
    )
  )(params, key)
  model = hvae_family.build_model(config, INFO)
  # Compiled once for all groups (eagerly, each group took seconds of op-by-op dispatch).
  elbo_terms = jax.jit(lambda p, x, k: hvae_lib.elbo_terms(model, p, x, k, train=True))
  want = []
  for j in range(len(X) // group_size):  # the same groups and keys, the floor in NumPy
    terms = elbo_terms(params, X[j * group_size : (j + 1) * group_size], jax.random.fold_in(key, j))
    kl = np.asarray(terms['kl_groups'], np.float64).mean(0)  # [L], over the group
    want.append(-np.mean(terms['log_px_given_z']) + np.maximum(kl, 5.0).sum())
  np.testing.assert_allclose(got, np.mean(want), rtol=1e-5)
