"""DCGAN family: the alternating step, its losses, exact resume through the trainer."""

import functools
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gm_jax import data as gm_data
from gm_jax import families
from gm_jax import losses
from gm_jax.families import gan as gan_family
from gm_jax.nn.layers import images_to_unit

INFO = gm_data.get_info('digits')
_jit = jax.jit  # compiled fast by the suite's XLA flags (tests/conftest.py)


def _config(**kw):
  from configs import dcgan

  c = dcgan.get_config()
  c.update(
    dict(
      latent_dim=4,
      generator_features=(8, 4),
      discriminator_features=(4, 8),
      batch_size=8,
      num_train_steps=6,
      checkpoint_every=3,
      log_every=3,
      progress_bar=False,
      max_to_keep=5,
      fid_num_samples=200,
    )
  )
  c.update(kw)
  return families.complete(c)


def _batch(n=8, seed=0):
  rng = np.random.default_rng(seed)
  return {
    'image': rng.integers(0, 17, (n, 8, 8, 1)).astype(np.uint8),
    'label': rng.integers(0, 10, n).astype(np.int32),
  }


def _flat(tree):
  return np.concatenate([np.ravel(x) for x in jax.tree.leaves(tree)])


@pytest.mark.parametrize('gan_loss', ['minimax', 'non_saturating', 'lsgan'])
def test_alternating_step_updates_d_then_g_with_the_gm_jax_losses(gan_loss):
  config = _config(gan_loss=gan_loss)
  family = gan_family.make_family(config, INFO)
  g, d = gan_family.build_models(config, INFO)
  d_loss_fn, g_loss_fn = {
    'minimax': (losses.discriminator_loss, losses.generator_minimax_loss),
    'non_saturating': (losses.discriminator_loss, losses.generator_nonsaturating_loss),
    'lsgan': (losses.lsgan_discriminator_loss, losses.lsgan_generator_loss),
  }[gan_loss]
  batch, key = _batch(), jax.random.key(3)
  params0 = family.init(jax.random.key(0), batch)
  opt0 = family.train_update.init(params0)
  update = _jit(functools.partial(family.train_update.update, step=0))
  params1, _, metrics = update(params0, opt0, batch, key)

  # Recompute the step by hand from the same noise.
  x = images_to_unit(jnp.asarray(batch['image']), 17)
  z = gan_family.per_example_normal(key, 8, config.latent_dim)
  bs = ['batch_stats']

  @_jit
  def by_hand(params0, params1):
    fake, _ = g.apply(params0['generator'], z, train=True, mutable=bs)
    d0 = params0['discriminator']
    real_out, st = d.apply(d0, x, train=True, mutable=bs)
    fake_out, st = d.apply({'params': d0['params'], **st}, fake, train=True, mutable=bs)
    d_loss = jnp.mean(d_loss_fn(real_out, fake_out))

    def d_obj(dp):
      r, s = d.apply({**d0, 'params': dp}, x, train=True, mutable=bs)
      f, _ = d.apply({'params': dp, **s}, fake, train=True, mutable=bs)
      return jnp.mean(d_loss_fn(r, f))

    d_grad = jax.grad(d_obj)(d0['params'])

    def g_obj(gp, d_params):
      f, _ = g.apply({**params0['generator'], 'params': gp}, z, train=True, mutable=bs)
      out, _ = d.apply({'params': d_params, **st}, f, train=True, mutable=bs)
      return jnp.mean(g_loss_fn(out))

    gp0 = params0['generator']['params']
    g_loss_new_d = g_obj(gp0, params1['discriminator']['params'])
    g_loss_old_d = g_obj(gp0, d0['params'])
    g_grad = jax.grad(g_obj)(gp0, params1['discriminator']['params'])
    return d_loss, d_grad, g_loss_new_d, g_loss_old_d, g_grad, st

  d_loss, d_grad, g_loss_new_d, g_loss_old_d, g_grad, d_stats = by_hand(params0, params1)
  np.testing.assert_allclose(metrics['d_loss'], d_loss, rtol=1e-5)
  # G is trained through the *updated* discriminator (alternation, not simultaneous).
  np.testing.assert_allclose(metrics['g_loss'], g_loss_new_d, rtol=1e-5)
  assert abs(float(g_loss_new_d) - float(g_loss_old_d)) > 1e-4 * abs(float(g_loss_old_d))
  np.testing.assert_allclose(metrics['loss'], d_loss + g_loss_new_d, rtol=1e-5)

  # Adam's first step moves every parameter by ~lr against its gradient's sign.
  lr = config.learning_rate
  for name, grad in (('discriminator', d_grad), ('generator', g_grad)):
    delta = _flat(params1[name]['params']) - _flat(params0[name]['params'])
    grad = _flat(grad)
    big = np.abs(grad) > 1e-3 * np.max(np.abs(grad))
    assert big.sum() > 10
    np.testing.assert_allclose(delta[big], -lr * np.sign(grad[big]), rtol=2e-2)
  # Batch-norm statistics are part of the state and move with the step.
  assert not np.allclose(
    _flat(params1['generator']['batch_stats']), _flat(params0['generator']['batch_stats'])
  )
  np.testing.assert_allclose(
    _flat(params1['discriminator']['batch_stats']), _flat(d_stats), rtol=1e-5, atol=1e-7
  )


def test_bad_config_errors_name_the_field():
  with pytest.raises(ValueError, match='config.gan_loss must be one of'):
    gan_family.make_family(_config(gan_loss='wasserstein'), INFO)
  with pytest.raises(ValueError, match='config.discriminator_norm'):
    gan_family.make_family(_config(discriminator_norm='layer'), INFO)
  with pytest.raises(ValueError, match='config.generator_features'):
    gan_family.make_family(_config(generator_features=(8, 8, 8, 8)), INFO)
  with pytest.raises(ValueError, match='config.conditional=True needs labels'):
    gan_family.make_family(_config(conditional=True), gm_data.get_info('binarized_mnist'))
  with pytest.raises(ValueError, match='config.gan_loss'):  # before any data is read
    families.train_and_evaluate(_config(gan_loss='hinge', data_dir='/nonexistent'), '/tmp/x')


def _digits_splits():
  """The digits splits without tfds (same arrays: scikit-learn order, last 360 = test)."""
  from sklearn import datasets

  d = datasets.load_digits()
  x, y = d.images.astype(np.uint8)[..., None], d.target.astype(np.int32)
  return gm_data.Splits(
    train={'image': x[:1293], 'label': y[:1293]},
    validation={'image': x[1293:1437], 'label': y[1293:1437]},
    test={'image': x[1437:], 'label': y[1437:]},
    info=INFO,
  )


def _leaves_equal(a, b) -> bool:
  return all(
    np.array_equal(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True)
  )


def _report(run) -> dict:
  """What test_contract's dcgan run (class-conditional: SHARED; compared with an
  uninterrupted run, tests/families/conftest.py) left in its workdir."""
  state = run.final_state
  with open(os.path.join(run.workdir, 'eval.json')) as f:
    saved = json.load(f)
  return {
    'identical': run.identical,
    'num_leaves': len(jax.tree.leaves(state)),
    'opt_state_keys': sorted(state['opt_state']),
    'has_bn_stats': 'batch_stats' in state['params']['generator'],
    'steps_at_kill': [str(s) for s in run.saved_at_kill],
    'returned_equals_saved': saved == json.loads(json.dumps(run.result)),
    'saved': saved,
    'files': sorted(os.listdir(run.workdir)),
  }


# One worker under `-n 2 --dist loadgroup` with test_contract's dcgan run.
@pytest.mark.xdist_group('gan_runs')
def test_trainer_resumes_exactly_and_writes_eval_json(contract_run):
  run = contract_run('dcgan')
  r = _report(run)
  assert r['steps_at_kill'] == ['2']
  assert r['identical'] and r['num_leaves'] > 10  # params, BN statistics, both Adams
  assert r['opt_state_keys'] == ['discriminator', 'generator'] and r['has_bn_stats']
  saved = r['saved']
  assert r['returned_equals_saved']
  assert saved['bound'] == 'none' and saved['model'] == 'dcgan' and saved['dataset'] == 'digits'
  # no validation selection: the last parameters
  assert saved['best_step'] == run.config.num_train_steps == 4
  for k in (
    'fid',
    'fid_floor',
    'class_coverage',
    'class_entropy_nats',
    'samples_per_s',
    'train_steps_per_s',
  ):
    assert saved[k] is not None and np.isfinite(saved[k]), k
  assert 0 <= saved['class_coverage'] <= 10
  # 4 steps of training are far from the data; real train vs test is much closer.
  assert saved['fid'] > 2 * saved['fid_floor'] > 0
  assert {'samples.png', 'class_samples.png', 'eval.json'} <= set(r['files'])
