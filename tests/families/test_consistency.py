"""Consistency training's pieces against independent formulas: the iCT curriculum, the
Karras grid (against `sampling.karras_sigmas`), the noise-index distribution (SciPy's
erf), the boundary condition, and multistep sampling (Song et al. 2023, Alg. 1) with the
exact consistency function of Gaussian data. Distillation: the teacher's Heun step
against k-diffusion's `sample_heun`, the loss recomputed by hand, and a run from
test_contract's tiny EDM run. Training, resuming and evaluating run in
tests/families/test_contract.py."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import special

from gm_jax import data as gm_data
from gm_jax import families
from gm_jax import sampling
from gm_jax.families import _fewstep
from gm_jax.families import consistency as consistency_family
from gm_jax.families import edm as edm_family
from gm_jax.models import consistency as cm
from gm_jax.models import diffusion as dm
from tests.families import test_contract
from tests.families.conftest import final_state
from tests.families.conftest import leaves_equal
from tests.families.conftest import train_without_evaluation


def test_discretization_doubles_in_equal_stages():
  # iCT's schedule: K = 400k, s0 = 10, s1 = 1280 -> K' = 50k, 8 stages
  steps = np.array([0, 49_999, 50_000, 100_000, 349_999, 350_000, 400_000])
  got = np.asarray(cm.discretization_steps(steps, total_steps=400_000, s0=10, s1=1280))
  np.testing.assert_array_equal(got, [11, 11, 21, 41, 641, 1281, 1281])
  # the digits config: 1000 steps, 10 -> 80 (4 stages of 250)
  got = [int(cm.discretization_steps(k, total_steps=1000, s0=10, s1=80)) for k in (249, 250, 999)]
  assert got == [11, 21, 81]
  with pytest.raises(ValueError, match='s0 <= s1'):
    cm.discretization_steps(0, total_steps=10, s0=20, s1=10)


def test_grid_is_the_karras_grid_and_indices_follow_the_lognormal():
  n = 17
  grid = np.asarray(cm.karras_level(jnp.arange(n), n, sigma_min=0.002, sigma_max=80.0))
  ref = np.asarray(sampling.karras_sigmas(n, sigma_min=0.002, sigma_max=80.0))
  np.testing.assert_allclose(grid, ref[::-1][1:], rtol=1e-5)  # ref ends with its 0
  logits = cm.noise_index_logits(
    n, max_levels=33, sigma_min=0.002, sigma_max=80.0, rho=7.0, p_mean=-1.1, p_std=2.0
  )
  cdf = special.erf((np.log(grid.astype(np.float64)) + 1.1) / (np.sqrt(2.0) * 2.0))
  want = np.diff(cdf) / np.sum(np.diff(cdf))
  got = np.asarray(jax.nn.softmax(logits))
  np.testing.assert_allclose(got[: n - 1], want, rtol=1e-4)
  assert np.all(got[n - 1 :] == 0.0)  # beyond the current grid: never drawn


def test_scalings_and_the_boundary_condition():
  sigma = np.array([0.002, 0.1, 1.0, 80.0])
  c_skip, c_out, c_in, c_noise = (np.asarray(c) for c in cm.consistency_scalings(sigma))
  np.testing.assert_allclose(c_skip, 0.25 / ((sigma - 0.002) ** 2 + 0.25), rtol=1e-6)
  np.testing.assert_allclose(c_out, (sigma - 0.002) * 0.5 / np.sqrt(sigma**2 + 0.25), rtol=1e-5)
  np.testing.assert_allclose(c_in, 1 / np.sqrt(sigma**2 + 0.25), rtol=1e-6)
  np.testing.assert_allclose(c_noise, np.log(sigma) / 4, rtol=1e-6)
  model = cm.ConsistencyModel(net=dm.UNet(channels=8, channel_mults=(1,), num_res_blocks=1))
  x = jax.random.normal(jax.random.key(0), (3, 8, 8, 1))
  params = model.init(jax.random.key(1), x, jnp.ones((3,)))
  np.testing.assert_array_equal(model.apply(params, x, cm.SIGMA_MIN), x)  # f(x, sigma_min) = x


def test_multistep_sampling_with_the_exact_consistency_function():
  # Gaussian data N(mu, s^2): the probability-flow ODE maps x at sigma to
  # mu + (x - mu) s / sqrt(s^2 + sigma^2) at sigma = 0
  mu, s, sigma_min = 0.3, 0.5, 0.002
  f = lambda x, sigma: mu + (x - mu) * s / jnp.sqrt(s**2 + jnp.square(sigma))
  key, shape = jax.random.key(3), (4096, 2)
  sigmas = cm.step_sigmas(4, sigma_min=sigma_min, sigma_max=80.0)
  # the first 4 of the 5-level grid: the last step is not at sigma_min, where f is the identity
  ref_sigmas = np.asarray(sampling.karras_sigmas(5, sigma_min=sigma_min, sigma_max=80.0))
  np.testing.assert_allclose(sigmas, ref_sigmas[:4], rtol=1e-5)
  got = np.asarray(
    jax.jit(lambda k: cm.multistep_sample(f, k, shape, sigmas, sigma_min=sigma_min))(key)
  )
  # Algorithm 1 by hand in NumPy, with the same noise
  keys = jax.random.split(key, 4)
  z = [np.asarray(jax.random.normal(k, shape), np.float64) for k in keys]
  fn = lambda x, sigma: mu + (x - mu) * s / np.sqrt(s**2 + sigma**2)
  x = fn(sigmas[0] * z[0], sigmas[0])
  for zk, tau in zip(z[1:], sigmas[1:]):
    x = fn(x + np.sqrt(tau**2 - sigma_min**2) * zk, tau)
  np.testing.assert_allclose(got, x, rtol=1e-4, atol=1e-5)
  # and the samples have the data's law
  assert abs(got.mean() - mu) < 0.03 and abs(got.std() - s) < 0.03
  assert cm.step_sigmas(1) == [80.0]


def test_check_config_names_the_field():
  config = families.complete(families.module_for('consistency') and _config())
  info = gm_data.get_info('digits')
  consistency_family.check_config(config, info)
  for field, value in (
    ('ct_final_scales', 5),
    ('sigma_min', 0.0),
    ('fid_steps', (1, 0)),
    ('sample_steps', 0),
    ('cd_scales', 1),
    ('sample_rho', -1.0),
  ):
    bad = families.complete(_config())
    bad[field] = value
    with pytest.raises(ValueError, match=rf'config\.{field}\b'):
      consistency_family.check_config(bad, info)


def _config():
  from configs import consistency

  return consistency.get_config()


def _gaussian_denoiser(mu, s):
  """`D(x; sigma) = E[y | y + sigma n = x]` for data `y ~ N(mu, s^2)` (any array backend)."""
  return lambda x, sigma: (s**2 * x + sigma**2 * mu) / (s**2 + sigma**2)


def test_heun_step_is_k_diffusions_heun_step():
  torch = pytest.importorskip('torch')
  from tests.sampling import k_diffusion_reference

  kd = k_diffusion_reference.load()
  if kd is None:
    pytest.skip('k-diffusion is not installed')
  mu, s = 0.3, 0.5
  x = np.asarray(jax.random.normal(jax.random.key(0), (5, 4, 4, 1)), np.float64) * 3.0
  denoise = _gaussian_denoiser(mu, s)
  for hi, lo in ((2.5, 1.7), (80.0, 40.0), (0.01, 0.002)):
    got = cm.heun_step(
      lambda x, sigma: denoise(x, sigma.reshape(-1, 1, 1, 1)),
      jnp.asarray(x, jnp.float32),
      jnp.full((5,), hi),
      jnp.full((5,), lo),
    )
    # k-diffusion's Algorithm 2 without churn over the levels [hi, lo]: one Heun step
    torch_denoise = lambda x, sigma: denoise(x, sigma.to(torch.float64).reshape(-1, 1, 1, 1))
    want = kd.sample_heun(
      torch_denoise, torch.tensor(x), torch.tensor([hi, lo], dtype=torch.float64), disable=True
    ).numpy()
    np.testing.assert_allclose(np.asarray(got), want, rtol=2e-5, atol=2e-5 * hi)


def test_distillation_loss_is_the_teachers_heun_target_recomputed():
  model = cm.ConsistencyModel(net=dm.UNet(channels=8, channel_mults=(1,), num_res_blocks=1))
  images = jax.random.randint(jax.random.key(2), (6, 8, 8, 1), 0, 17)
  params = model.init(jax.random.key(1), jnp.zeros((1, 8, 8, 1)), jnp.ones((1,)))
  teacher = _gaussian_denoiser(0.1, 0.5)
  expand = lambda v: v.reshape(-1, 1, 1, 1)
  key, n = jax.random.key(4), 18
  out = jax.jit(
    lambda p: cm.cd_terms(
      model, p, lambda x, sg: teacher(x, expand(sg)), images, key, num_levels=17, num_scales=n
    )
  )(params)
  # by hand: the same key splits, the grid of `sampling.karras_sigmas`, Heun in NumPy
  i_key, noise_key, deq_key, _ = jax.random.split(key, 4)
  y = np.asarray(dm.dequantize(deq_key, images, num_levels=17), np.float64)
  logits = cm.noise_index_logits(
    n, max_levels=n, sigma_min=0.002, sigma_max=80.0, rho=7.0, p_mean=-1.1, p_std=2.0
  )
  i = np.asarray(jax.random.categorical(i_key, logits, shape=(6,)))
  grid = np.asarray(sampling.karras_sigmas(n, sigma_min=0.002, sigma_max=80.0), np.float64)
  grid = grid[:-1][::-1]  # increasing, n levels
  lo, hi = grid[i], grid[i + 1]
  x = y + hi.reshape(-1, 1, 1, 1) * np.asarray(jax.random.normal(noise_key, y.shape), np.float64)
  d = (x - teacher(x, hi.reshape(-1, 1, 1, 1))) / hi.reshape(-1, 1, 1, 1)
  x1 = x + (lo - hi).reshape(-1, 1, 1, 1) * d
  d1 = (x1 - teacher(x1, lo.reshape(-1, 1, 1, 1))) / lo.reshape(-1, 1, 1, 1)
  x_lo = x + (lo - hi).reshape(-1, 1, 1, 1) * (d + d1) / 2
  f = lambda x, sg: np.asarray(model.apply(params, jnp.asarray(x, jnp.float32), sg), np.float64)
  c = 0.00054 * 8
  dist = np.sqrt(np.sum((f(x, hi) - f(x_lo, lo)) ** 2, axis=(1, 2, 3)) + c**2) - c
  np.testing.assert_allclose(np.asarray(out['sigma']), hi, rtol=1e-5)
  np.testing.assert_allclose(np.asarray(out['loss']), dist / (hi - lo), rtol=2e-3, atol=1e-4)
  with pytest.raises(ValueError, match='num_scales must be >= 2'):
    cm.cd_terms(model, params, teacher, images, key, num_levels=17, num_scales=1)


# One worker under `-n 2 --dist loadgroup` with test_contract's EDM run.
@pytest.mark.xdist_group(test_contract.GROUPS['edm'])
def test_distillation_starts_as_the_edm_teacher_and_trains(contract_run, data_dir, tmp_path):
  teacher = contract_run('edm')
  config = test_contract._tiny('consistency', data_dir)
  config.update(teacher_workdir=teacher.workdir, cd_scales=4)
  config, family, splits = families.setup(config)
  batch = {k: v[:4] for k, v in splits.train.items()}
  params = family.init(jax.random.key(0), batch)
  # the student is the teacher's network with the teacher's selected parameters
  edm_config = _fewstep.teacher_config(config, model='edm', needed_by='test')
  edm = edm_family.build_model(edm_config, splits.info)
  _, edm_params = _fewstep.teacher_params(edm, config, splits.info)
  assert leaves_equal(params, edm_params)
  # so f(x, sigma) is D(x; sigma) up to the boundary condition's sigma_min shift
  x = 2.0 * jax.random.normal(jax.random.key(1), (4, 8, 8, 1))
  model = consistency_family.build_model(config, splits.info, edm_config)
  both = jax.jit(
    lambda: [(model.apply(params, x, s), edm.apply(edm_params, x, s)) for s in (1.0, 10.0)]
  )
  for f, d in both():
    np.testing.assert_allclose(np.asarray(f), np.asarray(d), rtol=0, atol=0.02)
  # two training steps through the trainer: the loss moves the student
  config.update(num_train_steps=2, checkpoint_every=2, eval_every=0)
  train_without_evaluation(config, str(tmp_path / 'cd'))
  trained = final_state(str(tmp_path / 'cd'))['params']
  assert not leaves_equal(trained, edm_params)
  with open(tmp_path / 'cd' / 'metrics.jsonl') as f:
    logged = [json.loads(line) for line in f if '"loss"' in line]
  assert [r['num_scales'] for r in logged] == [4.0, 4.0]  # the fixed distillation grid
  assert all(np.isfinite(r['loss']) and r['loss'] > 0 for r in logged)


def test_distillation_needs_an_edm_teacher(data_dir, tmp_path):
  config = test_contract._tiny('consistency', data_dir)
  config.teacher_workdir = str(tmp_path / 'missing')
  with pytest.raises(ValueError, match=r'config\.teacher_workdir must name a trained edm'):
    families.setup(config)
  with open(tmp_path / 'config.json', 'w') as f:
    json.dump({'model': 'flow_matching', 'dataset': 'digits'}, f)
  config.teacher_workdir = str(tmp_path)
  with pytest.raises(ValueError, match=r"is a 'flow_matching' run; consistency distillation"):
    families.setup(config)
