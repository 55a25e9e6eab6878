"""The EDM family and the sampler suite in the diffusion family: what the contract test
(tests/families/test_contract.py) does not check.

* EDM's likelihood velocity (`families.edm.flow_velocity`, the preconditioning rewritten in
  the rectified-flow time) against the denoiser itself, `(D(x_t / t; (1 - t) / t) - x_t) /
  (1 - t)`;
* network evaluations per sample of every sampler name, counted by hand;
* the VDM / flow-matching families draw with the suite's new samplers on the levels their
  model implies (VDM: `sigma = exp(-lambda / 2)` of the schedule's end points);
* errors name the field; configs/edm_photos.py builds and evaluates its loss.
"""

import math

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from configs import edm as edm_config
from configs import edm_photos
from gm_jax import data as gm_data
from gm_jax import sampling
from gm_jax.families import diffusion as diffusion_family
from gm_jax.families import edm as edm_family
from gm_jax.models import edm as edm_lib
from gm_jax.train import defaults


def _config(base=None, **overrides):
  config = defaults.complete(base or edm_config.get_config(), edm_family.DEFAULTS)
  with config.unlocked():
    config.update(channels=8, channel_mults=(1,), **overrides)
  return config


def _batch(num=4):
  images = np.random.default_rng(0).integers(0, 17, (num, 8, 8, 1)).astype(np.uint8)
  return {'image': images, 'label': np.arange(num, dtype=np.int32) % 10}


@pytest.fixture(scope='module')
def digits_family():
  info = gm_data.get_info('digits')
  config = _config()
  family = edm_family.make_family(config, info)
  params = family.init(jax.random.key(0), _batch())
  # a non-trivial network: the U-Net's last layer starts at zero
  params = jax.tree.map(
    lambda p: p + 0.05 * jax.random.normal(jax.random.key(p.size), p.shape), params
  )
  return config, info, family, params


def test_likelihood_velocity_is_the_denoisers_flow(digits_family):
  config, info, _, params = digits_family
  model = edm_family.build_model(config, info)
  velocity = edm_family.flow_velocity(model, params, sigma_min=0.002, sigma_max=80.0)
  x_t = jax.random.normal(jax.random.key(1), (3, 8, 8, 1))
  for t in (0.02, 0.3, 0.7, 0.99):  # sigma = (1 - t) / t within [0.002, 80]
    sigma = (1.0 - t) / t
    denoised = model.apply(params, x_t / t, jnp.full((3,), sigma))
    want = (np.asarray(denoised, np.float64) - np.asarray(x_t)) / (1.0 - t)
    got = np.asarray(velocity(x_t, t, None))
    np.testing.assert_allclose(got, want, rtol=2e-4, atol=2e-4)
  assert np.all(np.isfinite(np.asarray(velocity(x_t, 0.0, None))))
  assert np.all(np.isfinite(np.asarray(velocity(x_t, 1.0, None))))


def test_network_evaluations_per_sample():
  # VDM: one per step (Heun two) and the final denoising; flow matching: `odeint`'s 1/2/4
  # per step; the suite: Heun 2N - 1, the others N.
  cases = {
    ('diffusion', 'ddim', 50): 51,
    ('diffusion', 'ddpm', 1000): 1001,
    ('diffusion', 'heun', 25): 51,
    ('diffusion', 'dpmpp_2m', 10): 10,
    ('flow_matching', 'heun', 25): 50,
    ('flow_matching', 'rk4', 8): 32,
    ('flow_matching', 'euler_ancestral', 7): 7,
    ('edm', 'heun', 18): 35,
    ('edm', 'euler', 18): 18,
    ('edm', 'dpmpp_2m', 10): 10,
  }
  for (model, method, steps), want in cases.items():
    assert diffusion_family.num_evaluations(model, method, steps) == want, (model, method)


def test_edm_draws_are_the_suites_heun_on_karras_levels(digits_family):
  config, info, family, params = digits_family
  got = family.sample(params, jax.random.key(3), 5)
  # the same draw written out: x = noise * sigma_0, Algorithm 1 of Karras et al.
  model = edm_family.build_model(config, info)
  sigmas = np.asarray(
    sampling.karras_sigmas(
      18, sigma_min=config.sigma_min, sigma_max=config.sigma_max, rho=config.rho
    ),
    np.float64,
  )
  init_key, _ = jax.random.split(jax.random.fold_in(jax.random.key(3), 0))
  x = np.asarray(jax.random.normal(init_key, (5, 8, 8, 1)), np.float64) * sigmas[0]
  # the network compiled once for its 35 calls, not dispatched op by op
  apply = jax.jit(lambda x, s: model.apply(params, x, s))
  denoise = lambda x, s: np.asarray(apply(jnp.asarray(x, jnp.float32), jnp.float32(s)), np.float64)
  for i in range(18):
    d = (x - denoise(x, sigmas[i])) / sigmas[i]
    x_next = x + (sigmas[i + 1] - sigmas[i]) * d
    if sigmas[i + 1] > 0:
      d2 = (x_next - denoise(x_next, sigmas[i + 1])) / sigmas[i + 1]
      x_next = x + (sigmas[i + 1] - sigmas[i]) * 0.5 * (d + d2)
    x = x_next
  want = np.clip(np.floor((x + 1.0) * 17 / 2), 0, 16)
  assert got.dtype == np.uint8 and got.shape == (5, 8, 8, 1)
  assert np.mean(got == want) > 0.97  # float32 vs float64 at the bins' edges


@pytest.mark.parametrize('model', ['diffusion', 'flow_matching'])
def test_vdm_and_flow_sample_with_the_new_samplers(model, monkeypatch):
  from configs import diffusion as diffusion_config
  from configs import flow_matching as flow_config

  base = (diffusion_config if model == 'diffusion' else flow_config).get_config()
  info = gm_data.get_info('digits')
  config = defaults.complete(base, diffusion_family.DEFAULTS)
  with config.unlocked():
    config.update(channels=8, channel_mults=(1,), sampler='dpmpp_2m', sample_steps=3)
  seen = []
  real = sampling.karras_sigmas

  def spy(n, **kw):
    seen.append((n, kw))
    return real(n, **kw)

  monkeypatch.setattr(sampling, 'karras_sigmas', spy)
  family = diffusion_family.make_family(config, info)
  params = family.init(jax.random.key(0), _batch())
  out = family.sample(params, jax.random.key(1), 3)
  assert out.shape == (3, 8, 8, 1) and out.dtype == np.uint8 and out.max() < 17
  (n, kw), *_ = seen
  assert n == 3
  if model == 'diffusion':  # sigma = exp(-lambda / 2) at the log-SNR end points 6, -6
    assert kw['sigma_min'] == pytest.approx(math.exp(-3.0), rel=1e-5)
    assert kw['sigma_max'] == pytest.approx(math.exp(3.0), rel=1e-5)
  else:
    assert (kw['sigma_min'], kw['sigma_max']) == (edm_lib.SIGMA_MIN, edm_lib.SIGMA_MAX)


@pytest.mark.parametrize(
  'field, value, module',
  [
    ('sampler', 'dpm_fast', edm_family),
    ('sample_steps', 0, edm_family),
    ('fid_samplers', ('dpmpp_2m:0',), edm_family),
    ('fid_network', 'vgg', edm_family),
    ('sigma_min', 100.0, edm_family),
    ('sampler', 'rk4', edm_family),  # flow matching's own, not the suite's
    ('sampler', 'nonsense', diffusion_family),
    ('fid_samplers', ('heun',), diffusion_family),
  ],
)
def test_errors_name_the_field(field, value, module):
  if module is edm_family:
    config = _config()
  else:
    from configs import diffusion as diffusion_config

    config = defaults.complete(diffusion_config.get_config(), diffusion_family.DEFAULTS)
  with config.unlocked():
    config[field] = value
  with pytest.raises(ValueError, match=f'config.{field}'):
    module.check_config(config, gm_data.get_info('digits'))


def test_gan_checks_the_fid_network():
  from configs import dcgan
  from gm_jax.families import gan

  config = defaults.complete(dcgan.get_config(), gan.DEFAULTS)
  with config.unlocked():
    config.fid_network = 'inception'
  with pytest.raises(ValueError, match='config.inception_weights'):
    gan.check_config(config, gm_data.get_info('digits'))


def test_photo_variant_builds_and_evaluates_its_loss():
  config = defaults.complete(edm_photos.get_config(), edm_family.DEFAULTS)
  with config.unlocked():
    config.update(channels=8, channel_mults=(1, 2))
  info = gm_data.get_info('photo_patches')
  family = edm_family.make_family(config, info)
  batch = {'image': np.random.default_rng(0).integers(0, 256, (2, 32, 32, 3)).astype(np.uint8)}
  params = family.init(jax.random.key(0), batch)
  # Compiled once (op by op, the 32x32 U-Net's loss took seconds of dispatch).
  loss = jax.jit(lambda p: family.loss(p, batch, jax.random.key(1), train=False))
  value, metrics = loss(params)
  assert np.isfinite(float(value))
  assert float(metrics['edm_loss_per_dim']) == pytest.approx(float(value) / 3072, rel=1e-6)


def test_edm_loss_metric_is_the_mean_weighted_error(digits_family):
  config, info, family, params = digits_family
  batch = _batch()
  sigmas = np.array([0.1, 0.5, 1.0, 3.0], np.float32)
  model = edm_family.build_model(config, info)
  out = edm_lib.edm_terms(
    model, params, batch['image'], None, jax.random.key(5), num_levels=17, sigmas=sigmas
  )
  # an independent NumPy evaluation of lambda(sigma) ||D - y||^2 on the same draws
  _, noise_key, deq_key, _, _ = jax.random.split(jax.random.key(5), 5)
  u = np.asarray(jax.random.uniform(deq_key, batch['image'].shape))
  y = 2 * (batch['image'] + u) / 17 - 1
  n = np.asarray(jax.random.normal(noise_key, y.shape))
  x = y + sigmas[:, None, None, None] * n
  d = np.asarray(model.apply(params, jnp.asarray(x, jnp.float32), jnp.asarray(sigmas)))
  weight = (sigmas**2 + 0.25) / (sigmas * 0.5) ** 2
  want = weight * np.sum((d - y) ** 2, axis=(1, 2, 3))
  np.testing.assert_allclose(np.asarray(out['loss']), want, rtol=1e-3)
  del family


def test_defaults_are_documented():
  assert set(edm_family.DEFAULTS) == set(edm_family.DEFAULTS_DOC)
  assert isinstance(_config(), ml_collections.ConfigDict)
