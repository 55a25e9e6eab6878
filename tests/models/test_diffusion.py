"""Diffusion and flow matching: forward process, the VDM bound, and every sampler.

The samplers and the ODE likelihood are checked with Gaussian data `N(mu, Sigma)`,
whose optimal noise estimate and velocity are known in closed form:
* diffusion, `z = alpha x + sigma eps`: `z ~ N(alpha mu, C)`, `C = alpha^2 Sigma +
  sigma^2 I`, and `E[eps | z] = sigma C^-1 (z - alpha mu)`;
* flow matching, `x_t = (1 - t) x_0 + t x_1`, `x_0 ~ N(0, I)`, `x_1 ~ N(mu, Sigma)`:
  `x_t ~ N(t mu, C_t)`, `C_t = (1 - t)^2 I + t^2 Sigma`, and
  `E[x_1 - x_0 | x_t] = mu + (t Sigma - (1 - t) I) C_t^-1 (x_t - t mu)`.
Plugged into a sampler they must give samples with mean `mu` and covariance `Sigma`,
and the ODE log-likelihood must equal the Gaussian's log-density.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gm_jax import sampling
from gm_jax.models import diffusion as dm

D = 4
SHAPE = (2, 2, 1)  # the Gaussian's 4 dimensions as a tiny image
RNG = np.random.default_rng(0)
MU = np.array([0.5, -0.3, 0.2, 0.0])
_A = RNG.normal(size=(D, D)) * 0.3
SIGMA = _A @ _A.T + 0.1 * np.eye(D)  # well-conditioned, correlated
# `SIGMA = Q diag(E) Q^T`: every covariance below is `Q diag(.) Q^T`, so the optimal estimates
# are matrix products (a batched `solve` per sampler step made the 1000-step DDPM test 17 CPU-s
# of XLA:CPU at optimisation level 0; this form: 3 s)
E, Q = np.linalg.eigh(SIGMA)


def _flat(z):
  return z.reshape(z.shape[0], D)


def gaussian_eps(z, log_snr):
  """The optimal `eps_hat(z, lambda)` for data `N(MU, SIGMA)` (float32 in and out)."""
  alpha, sigma = dm.alpha_sigma(log_snr)
  cov_inv = (Q / (alpha**2 * E + sigma**2)) @ Q.T  # (alpha^2 SIGMA + sigma^2 I)^-1
  resid = _flat(z) - alpha * MU
  return (sigma * resid @ cov_inv).reshape(z.shape).astype(jnp.float32)


def gaussian_velocity(x, t):
  """The optimal flow-matching velocity for data `N(MU, SIGMA)` at time `t`."""
  # (t SIGMA - (1 - t) I) ((1 - t)^2 I + t^2 SIGMA)^-1, symmetric: both are Q diag(.) Q^T
  gain = (Q * ((t * E - (1 - t)) / ((1 - t) ** 2 + t**2 * E))) @ Q.T
  resid = _flat(x) - t * MU
  return (MU + resid @ gain).reshape(x.shape).astype(jnp.float32)


def _log_snr(t):
  return dm.cosine_log_snr(t, log_snr_min=-12.0, log_snr_max=12.0)


def _assert_moments(samples, *, mean_tol, cov_tol):
  x = np.asarray(samples, np.float64).reshape(len(samples), D)
  np.testing.assert_allclose(x.mean(0), MU, atol=mean_tol)
  np.testing.assert_allclose(np.cov(x.T), SIGMA, atol=cov_tol)


# -- schedules and the forward process -------------------------------------------------------


def test_cosine_schedule_ends_and_closed_form():
  t = np.linspace(0, 1, 11)
  lam = np.asarray(dm.cosine_log_snr(t, log_snr_min=-6.0, log_snr_max=8.0), np.float64)
  assert lam[0] == pytest.approx(8.0, abs=1e-4) and lam[-1] == pytest.approx(-6.0, abs=1e-4)
  assert np.all(np.diff(lam) < 0)
  # alpha_t = cos(a t + b) with a, b from the end points (a shifted cosine schedule)
  b = math.atan(math.exp(-4.0))
  a = math.atan(math.exp(3.0)) - b
  alpha, _ = dm.alpha_sigma(jnp.asarray(lam, jnp.float32))
  np.testing.assert_allclose(alpha, np.cos(a * t + b), rtol=1e-5)
  lin = dm.linear_log_snr(t, log_snr_min=-6.0, log_snr_max=8.0)
  np.testing.assert_allclose(lin, 8.0 - 14.0 * t, atol=1e-5)


def test_learned_schedule_is_monotone_with_free_ends():
  sched = dm.LogSNRSchedule(kind='learned', log_snr_min=-5.0, log_snr_max=7.0, hidden=16)
  params = sched.init(jax.random.key(0), jnp.zeros((3,)))
  t = jnp.linspace(0.0, 1.0, 101)
  lam = sched.apply(params, t)
  np.testing.assert_allclose([lam[0], lam[-1]], [7.0, -5.0], atol=1e-5)
  assert np.all(np.diff(np.asarray(lam)) < 0)
  # randomised weights stay monotone (|W|) and keep the ends at the gamma parameters
  p = jax.tree.map(lambda a: a + jax.random.normal(jax.random.key(3), a.shape), params)
  lam = np.asarray(sched.apply(p, t))
  assert np.all(np.diff(lam) < 0)
  np.testing.assert_allclose(
    [lam[0], lam[-1]], [-p['params']['gamma_0'], -p['params']['gamma_1']], rtol=1e-5
  )
  with pytest.raises(ValueError, match='config.noise_schedule'):
    dm.LogSNRSchedule(kind='sqrt').init(jax.random.key(0), jnp.zeros(()))
  with pytest.raises(ValueError, match='config.log_snr_max'):
    dm.LogSNRSchedule(log_snr_min=1.0, log_snr_max=0.0).init(jax.random.key(0), jnp.zeros(()))


def test_forward_marginal_matches_the_closed_form_through_an_intermediate_time():
  """`z_s ~ q(z_s | x)`, then `z_t ~ q(z_t | z_s)` (the chain the samplers invert):
  `z_t` has `q(z_t | x) = N(alpha_t x, sigma_t^2)`."""
  x = 0.7
  lam_s, lam_t = (
    np.float64(dm.cosine_log_snr(t, log_snr_min=-6.0, log_snr_max=6.0)) for t in (0.3, 0.8)
  )
  a_s, s_s = np.sqrt(1 / (1 + np.exp(-lam_s))), np.sqrt(1 / (1 + np.exp(lam_s)))
  a_t, s_t = np.sqrt(1 / (1 + np.exp(-lam_t))), np.sqrt(1 / (1 + np.exp(lam_t)))
  a_ts = a_t / a_s
  var_ts = s_t**2 - a_ts**2 * s_s**2
  rng = np.random.default_rng(1)
  n = 400_000
  z_s = a_s * x + s_s * rng.normal(size=n)
  z_t = a_ts * z_s + np.sqrt(var_ts) * rng.normal(size=n)
  assert z_t.mean() == pytest.approx(a_t * x, abs=4 * s_t / math.sqrt(n))
  assert z_t.var() == pytest.approx(s_t**2, rel=5 * math.sqrt(2 / n))
  assert a_t**2 + s_t**2 == pytest.approx(1.0)


def test_levels_dequantisation_and_bins_round_trip():
  k = np.arange(17)
  x = np.asarray(dm.levels_to_unit(k, 17))
  np.testing.assert_allclose(x, 2 * (k + 0.5) / 17 - 1, rtol=1e-6)
  np.testing.assert_array_equal(dm.unit_to_levels(x, 17), k)
  deq = np.asarray(dm.dequantize(jax.random.key(0), np.repeat(k, 50), num_levels=17))
  np.testing.assert_array_equal(dm.unit_to_levels(deq, 17), np.repeat(k, 50))


# -- the VDM bound against NumPy -------------------------------------------------------------


def _np_sigmoid(a):
  return 1.0 / (1.0 + np.exp(-a))


def test_vdm_terms_equal_a_numpy_computation_for_the_same_noise():
  levels = 5
  net = dm.UNet(channels=8, channel_mults=(1, 2), fourier_exponents=(1,))
  schedule = dm.LogSNRSchedule(kind='cosine', log_snr_min=-5.0, log_snr_max=7.0)
  model = dm.VDM(net=net, schedule=schedule, prediction_type='eps')
  rng = np.random.default_rng(0)
  images = rng.integers(0, levels, (3, 4, 4, 1))
  x = 2 * (images + 0.5) / levels - 1
  key = jax.random.key(7)
  times = np.array([0.1, 0.5, 0.93])
  # the same noise as vdm_terms draws it
  _, eps_key, eps0_key, _, _ = jax.random.split(key, 5)
  eps = np.asarray(jax.random.normal(eps_key, x.shape), np.float64)
  eps0 = np.asarray(jax.random.normal(eps0_key, x.shape), np.float64)
  b = math.atan(math.exp(-3.5))
  a = math.atan(math.exp(2.5)) - b
  lam = -2 * np.log(np.tan(a * times + b))
  dlam = -4 * a / np.sin(2 * (a * times + b))
  al, sg = (
    np.sqrt(_np_sigmoid(lam))[:, None, None, None],
    np.sqrt(_np_sigmoid(-lam))[:, None, None, None],
  )
  z = al * x + sg * eps

  # One jitted program (eager Flax compiles every op on its own: 16 s of this test on 2
  # cores; three programs: 9 s).
  @jax.jit
  def terms_and_prediction(x, t, z, lam):
    params = model.init(jax.random.key(0), x, method=model.init_all)
    # a non-trivial network (its last conv starts at zero)
    params = jax.tree.map(
      lambda a: a + 0.05 * jax.random.normal(jax.random.key(1), a.shape), params
    )
    out = dm.vdm_terms(model, params, images, None, key, num_levels=levels, times=t)
    return out, model.apply(params, z, lam)

  out, pred = terms_and_prediction(*(jnp.asarray(v, jnp.float32) for v in (x, times, z, lam)))
  pred = np.asarray(pred, np.float64)
  diffusion = 0.5 * -dlam * np.sum((eps - pred) ** 2, axis=(1, 2, 3))
  lam0, lam1 = 7.0, -5.0
  a0, s0 = math.sqrt(_np_sigmoid(lam0)), math.sqrt(_np_sigmoid(-lam0))
  z0 = a0 * x + s0 * eps0
  centres = 2 * (np.arange(levels) + 0.5) / levels - 1
  logits = -0.5 * math.exp(lam0) * (z0[..., None] / a0 - centres) ** 2
  logp = (
    logits
    - np.log(np.sum(np.exp(logits - logits.max(-1, keepdims=True)), -1, keepdims=True))
    - logits.max(-1, keepdims=True)
  )
  recon = -np.sum(np.take_along_axis(logp, images[..., None], -1)[..., 0], axis=(1, 2, 3))
  a1sq, s1sq = _np_sigmoid(lam1), _np_sigmoid(-lam1)
  prior = np.sum(0.5 * (a1sq * x**2 + s1sq - 1 - np.log(s1sq)), axis=(1, 2, 3))
  np.testing.assert_allclose(out['diffusion'], diffusion, rtol=2e-4)
  np.testing.assert_allclose(out['recon'], recon, rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(out['prior'], prior, rtol=1e-4)
  np.testing.assert_allclose(out['bound'], diffusion + recon + prior, rtol=2e-4)


def test_v_prediction_recovers_eps():
  z = jnp.asarray(RNG.normal(size=(3, 2, 2, 1)), jnp.float32)
  eps = jnp.asarray(RNG.normal(size=(3, 2, 2, 1)), jnp.float32)
  lam = jnp.asarray([-3.0, 0.0, 4.0])
  alpha, sigma = (a[:, None, None, None] for a in dm.alpha_sigma(lam))
  x = (z - sigma * eps) / alpha
  v = alpha * eps - sigma * x
  np.testing.assert_allclose(dm.eps_from_prediction(v, z, lam, 'v'), eps, rtol=1e-4, atol=1e-5)


# -- samplers on Gaussian data ---------------------------------------------------------------


@pytest.mark.parametrize(
  'method,steps', [('ddpm', 1000), ('ddim', 200), ('euler', 200), ('heun', 50)]
)
def test_diffusion_samplers_draw_the_gaussian(method, steps):
  fn = jax.jit(
    lambda k: sampling.diffusion_sample(
      gaussian_eps, _log_snr, k, (8000,) + SHAPE, method=method, num_steps=steps
    )
  )
  # 8,000 draws: the sample mean's standard error is <= 0.01, the covariance's ~0.01
  _assert_moments(fn(jax.random.key(0)), mean_tol=0.04, cov_tol=0.04)


def test_ddim_with_many_steps_is_the_ode_it_discretises():
  key = jax.random.key(3)
  shape = (500,) + SHAPE
  ddim = jax.jit(
    lambda: sampling.diffusion_sample(
      gaussian_eps, _log_snr, key, shape, method='ddim', num_steps=2000
    )
  )()
  heun = jax.jit(
    lambda: sampling.diffusion_sample(
      gaussian_eps, _log_snr, key, shape, method='heun', num_steps=200
    )
  )()
  coarse = jax.jit(
    lambda: sampling.diffusion_sample(
      gaussian_eps, _log_snr, key, shape, method='ddim', num_steps=20
    )
  )()
  err_fine = float(jnp.max(jnp.abs(ddim - heun)))
  err_coarse = float(jnp.max(jnp.abs(coarse - heun)))
  assert err_fine < 2e-2, err_fine
  assert err_fine < err_coarse / 5, (err_fine, err_coarse)  # it converges to the ODE


@pytest.mark.parametrize('method,steps', [('euler', 200), ('heun', 30), ('rk4', 10)])
def test_flow_samplers_draw_the_gaussian(method, steps):
  fn = jax.jit(
    lambda k: sampling.flow_sample(
      gaussian_velocity, k, (8000,) + SHAPE, method=method, num_steps=steps
    )
  )
  _assert_moments(fn(jax.random.key(1)), mean_tol=0.04, cov_tol=0.04)


def _gaussian_log_density(x):
  x = np.asarray(x, np.float64).reshape(len(x), D) - MU
  _, logdet = np.linalg.slogdet(SIGMA)
  maha = np.sum(x * np.linalg.solve(SIGMA, x.T).T, axis=1)
  return -0.5 * (maha + logdet + D * math.log(2 * math.pi))


def test_ode_log_likelihood_is_the_gaussian_log_density():
  x = (MU + RNG.normal(size=(16, D)) @ np.linalg.cholesky(SIGMA).T).reshape((16,) + SHAPE)
  x = jnp.asarray(x, jnp.float32)
  expected = _gaussian_log_density(x)
  fn = jax.jit(
    lambda x: sampling.ode_log_likelihood(gaussian_velocity, x, num_steps=50, method='rk4')[0]
  )
  np.testing.assert_allclose(fn(x), expected, atol=2e-3)
  # Hutchinson: unbiased, so the average over probes converges to the same value
  keys = jax.random.split(jax.random.key(5), 400)
  hutch = jax.jit(
    jax.vmap(
      lambda k: sampling.ode_log_likelihood(
        gaussian_velocity, x, num_steps=50, method='rk4', trace='hutchinson', key=k
      )[0]
    )
  )(keys)
  per_probe = np.asarray(hutch, np.float64)
  err = np.abs(per_probe.mean(0) - expected)
  assert np.all(err < 4 * per_probe.std(0) / math.sqrt(len(keys)) + 2e-3), err
  with pytest.raises(ValueError, match='PRNG key'):
    sampling.ode_log_likelihood(gaussian_velocity, x, trace='hutchinson')
  with pytest.raises(ValueError, match='trace'):
    sampling.ode_log_likelihood(gaussian_velocity, x, trace='skilling')


def test_guidance_scale_zero_is_the_unconditional_model_and_one_the_conditional():
  def model_fn(z, c, labels):
    return z * c + labels.astype(jnp.float32)[:, None, None, None] * 0.5

  z = jnp.asarray(RNG.normal(size=(3,) + SHAPE), jnp.float32)
  labels = jnp.asarray([0, 1, 2])
  null = 10
  uncond = model_fn(z, 0.3, jnp.full((3,), null))
  for scale, expected in ((0.0, uncond), (1.0, model_fn(z, 0.3, labels))):
    out = sampling.classifier_free_guidance(model_fn, labels, null_label=null, scale=scale)(z, 0.3)
    np.testing.assert_allclose(out, expected, rtol=1e-6, atol=1e-6)
  guided = sampling.classifier_free_guidance(model_fn, labels, null_label=null, scale=3.0)
  np.testing.assert_allclose(
    guided(z, 0.3), uncond + 3.0 * (model_fn(z, 0.3, labels) - uncond), rtol=1e-5
  )


def test_guided_sampling_at_scale_zero_equals_sampling_the_null_class():
  net = dm.UNet(channels=8, channel_mults=(1,), num_classes=3)
  x = jnp.zeros((4, 4, 4, 1))
  params = jax.jit(net.init)(jax.random.key(0), x, jnp.zeros((4,)), jnp.zeros((4,), jnp.int32))
  params = jax.tree.map(lambda a: a + 0.1 * jax.random.normal(jax.random.key(1), a.shape), params)
  raw = lambda z, c, y: net.apply(params, z, jnp.full((z.shape[0],), c), y)
  labels = jnp.asarray([0, 1, 2, 1])
  guided = sampling.classifier_free_guidance(raw, labels, null_label=3, scale=0.0)
  null = lambda z, c: raw(z, c, jnp.full((4,), 3))
  draw = lambda fn: sampling.flow_sample(
    fn, jax.random.key(2), x.shape, method='euler', num_steps=5
  )
  cond = sampling.classifier_free_guidance(raw, labels, null_label=3, scale=1.0)
  guided_draw, null_draw, cond_draw = jax.jit(lambda: (draw(guided), draw(null), draw(cond)))()
  np.testing.assert_allclose(guided_draw, null_draw, atol=1e-5)
  assert float(jnp.max(jnp.abs(cond_draw - null_draw))) > 1e-3  # labels matter


def test_samplers_reject_bad_arguments():
  with pytest.raises(ValueError, match='method'):
    sampling.diffusion_sample(gaussian_eps, _log_snr, jax.random.key(0), (2,) + SHAPE, method='dpm')
  with pytest.raises(ValueError, match='num_steps'):
    sampling.diffusion_sample(gaussian_eps, _log_snr, jax.random.key(0), (2,) + SHAPE, num_steps=0)
  with pytest.raises(ValueError, match='method'):
    sampling.flow_sample(gaussian_velocity, jax.random.key(0), (2,) + SHAPE, method='ddpm')


# -- the network -----------------------------------------------------------------------------


@pytest.mark.parametrize(
  'hw,mults,attention',
  [((8, 8), (1, 2), False), ((28, 28), (1, 2, 2), True), ((32, 32), (1, 2, 2, 2), False)],
)
def test_unet_keeps_the_image_shape(hw, mults, attention):
  net = dm.UNet(
    channels=8, channel_mults=mults, attention=attention, num_classes=10, fourier_exponents=(3,)
  )
  x = jnp.zeros((2,) + hw + (3,))

  @jax.jit  # one program: initialise, then apply (None: the null class)
  def init_and_apply(x):
    params = net.init(jax.random.key(0), x, jnp.zeros((2,)), jnp.zeros((2,), jnp.int32))
    return net.apply(params, x, jnp.ones((2,)), None)

  out = init_and_apply(x)
  assert out.shape == x.shape
  assert float(jnp.max(jnp.abs(out))) == 0.0  # the output conv starts at zero


def test_unet_rejects_sides_it_cannot_halve():
  net = dm.UNet(channels=8, channel_mults=(1, 2, 2))
  with pytest.raises(ValueError, match=r'config.channel_mults=\(1, 2, 2\).*divide by 4'):
    dm.check_image_shape(net, (10, 10, 1))
