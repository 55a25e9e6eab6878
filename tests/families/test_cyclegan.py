"""CycleGAN family: config errors, the four-network step, the pool in the checkpoint."""

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
from gm_jax.families import cyclegan
from gm_jax.nn.layers import images_to_unit
from tests.families import test_gan as gan_tests

INFO = gm_data.get_info('digits')  # 8x8x1 stand-in domains: small and fast
_jit, _flat, _leaves_equal = gan_tests._jit, gan_tests._flat, gan_tests._leaves_equal


def _config(**kw):
  from configs import cyclegan_photos

  c = cyclegan_photos.get_config()
  c.update(
    dict(
      generator_filters=4,
      discriminator_filters=4,
      num_residual_blocks=1,
      pool_size=4,
      batch_size=4,
      num_train_steps=6,
      checkpoint_every=3,
      log_every=3,
      progress_bar=False,
      max_to_keep=5,
    )
  )
  c.update(kw)
  return families.complete(c)


def _rows(n=16, seed=0):
  rng = np.random.default_rng(seed)
  a = rng.integers(0, 9, (n, 8, 8, 1)).astype(np.uint8)  # dark domain
  b = rng.integers(8, 17, (n, 8, 8, 1)).astype(np.uint8)  # bright domain
  return {'image_a': a, 'image_b': b}


def test_bad_config_errors_name_the_field():
  with pytest.raises(ValueError, match='config.gan_loss must be one of'):
    cyclegan.check_config(_config(gan_loss='wgan'))
  with pytest.raises(
    ValueError,
    match=r"config.dataset_b='digits' has images of shape "
    r'\(8, 8, 1\).*\(32, 32, 3\)',
  ):
    cyclegan.check_config(_config(dataset_b='digits', domain_b='3'))
  with pytest.raises(
    ValueError,
    match=r"config.domain_a='horse' is not a class of "
    r"'photo_patches'; use one of \('china', 'flower'\)",
  ):
    cyclegan.check_config(_config(domain_a='horse'))
  with pytest.raises(ValueError, match='config.domain_a and config.domain_b are both'):
    cyclegan.check_config(_config(domain_b='china'))
  with pytest.raises(ValueError, match='config.pool_size must be >= 0'):
    cyclegan.check_config(_config(pool_size=-1))
  # train_and_evaluate checks before reading any data.
  with pytest.raises(ValueError, match='config.dataset_b'):
    families.train_and_evaluate(_config(dataset_b='digits', data_dir='/nonexistent'), '/tmp/x')


def test_unpaired_rows():
  a, b = np.arange(5)[:, None], np.arange(100, 103)[:, None]
  train = cyclegan.unpaired_arrays(a, b, seed=0, cycle=True)
  assert len(train['image_a']) == 5 and set(train['image_b'].ravel()) == {100, 101, 102}
  test = cyclegan.unpaired_arrays(a, b, seed=0, cycle=False)
  assert len(test['image_a']) == 3 and sorted(test['image_b'].ravel()) == [100, 101, 102]


def test_step_updates_all_four_networks_and_the_pools():
  config = _config()
  family = cyclegan.make_family(config, INFO)
  gen, disc = cyclegan.build_models(config, INFO)
  batch = {k: v[:4] for k, v in _rows().items()}
  params0 = family.init(jax.random.key(0), batch)
  opt0 = family.train_update.init(params0)
  assert int(opt0['pool_a']['count']) == 0 and opt0['pool_a']['images'].shape == (4, 8, 8, 1)
  update = _jit(functools.partial(family.train_update.update, step=0))
  params1, opt1, metrics = update(params0, opt0, batch, jax.random.key(1))
  for name in cyclegan.NETWORKS:
    assert not np.allclose(_flat(params1[name]), _flat(params0[name])), name
  # The pools took the 4 fakes of each direction (room for 4): they hold F(b) and G(a).
  assert int(opt1['pool_a']['count']) == 4 and int(opt1['pool_b']['count']) == 4

  @_jit
  def by_hand(p):
    a = images_to_unit(jnp.asarray(batch['image_a']), 17)
    b = images_to_unit(jnp.asarray(batch['image_b']), 17)
    fake_b, fake_a = gen.apply(p['g_ab'], a), gen.apply(p['g_ba'], b)
    adv = losses.lsgan_generator_loss(disc.apply(p['d_b'], fake_b)) + losses.lsgan_generator_loss(
      disc.apply(p['d_a'], fake_a)
    )
    cyc = losses.cycle_consistency_loss(
      a, gen.apply(p['g_ba'], fake_b)
    ) + losses.cycle_consistency_loss(b, gen.apply(p['g_ab'], fake_a))
    idt = losses.cycle_consistency_loss(b, gen.apply(p['g_ab'], b)) + losses.cycle_consistency_loss(
      a, gen.apply(p['g_ba'], a)
    )
    return jnp.mean(adv + 10.0 * cyc + 5.0 * idt), jnp.mean(cyc), fake_a, fake_b

  g_loss, cyc, fake_a, fake_b = by_hand(params0)
  np.testing.assert_allclose(metrics['g_loss'], g_loss, rtol=1e-5)
  np.testing.assert_allclose(metrics['cycle'], cyc, rtol=1e-5)
  np.testing.assert_allclose(opt1['pool_a']['images'], fake_a, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(opt1['pool_b']['images'], fake_b, rtol=1e-5, atol=1e-6)


def _report(run) -> dict:
  """What test_contract's cyclegan run (digits 0 -> 1; compared with an uninterrupted run,
  tests/families/conftest.py) left in its workdir."""
  state = run.final_state
  with open(os.path.join(run.workdir, 'eval.json')) as f:
    saved = json.load(f)
  return {
    'identical': run.identical,
    'pool_count': int(state['opt_state']['pool_a']['count']),
    'pool_size': int(run.config.pool_size),
    'pool_nonzero': bool(np.any(state['opt_state']['pool_b']['images'] != 0)),
    'steps_at_kill': [str(s) for s in run.saved_at_kill],
    'saved': saved,
    'files': sorted(os.listdir(run.workdir)),
  }


# One worker under `-n 2 --dist loadgroup` with test_contract's cyclegan run.
@pytest.mark.xdist_group('gan_runs')
def test_pool_is_checkpointed_and_resume_is_exact(contract_run):
  r = _report(contract_run('cyclegan'))
  assert r['steps_at_kill'] == ['2']
  assert r['identical']  # all four networks, both Adams and both image pools
  assert r['pool_count'] == r['pool_size'] == 4 and r['pool_nonzero']
  saved = r['saved']
  assert saved['bound'] == 'none' and saved['model'] == 'cyclegan'
  for k in (
    'cycle_error',
    'translation_accuracy',
    'domain_classifier_test_accuracy',
    'samples_per_s',
    'train_steps_per_s',
  ):
    assert saved[k] is not None and np.isfinite(saved[k]), k
  assert 0 <= saved['translation_accuracy'] <= 1 and 0 < saved['cycle_error'] < 1
  assert saved['domain_classifier_test_accuracy'] > 0.9  # a 0 vs a 1 is easy
  assert {'translations_a2b.png', 'translations_b2a.png'} <= set(r['files'])
