"""The VP and flow-matching adapters give the exact denoiser from the exact model outputs.

For Gaussian data `N(mu, s^2 I)` every parametrisation has a closed form: the posterior
mean of the noise given `z = a x + b eps` is `b (z - a mu) / (a^2 s^2 + b^2)`, of the
data `mu + a s^2 (z - a mu) / (a^2 s^2 + b^2)`. The VP noise predictor and the flow
velocity built from them (in NumPy, float64) must give, through the adapters,
`D(x; sigma) = (s^2 x + sigma^2 mu) / (s^2 + sigma^2)`.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gm_jax import sampling

MU = np.array([0.3, -0.7, 1.1, 0.0])
S = 0.5
SIGMAS = (0.002, 0.1, 0.5, 1.0, 7.0, 80.0)


def exact_denoiser(x, sigma, mu=MU):
  return (S**2 * x + sigma**2 * mu) / (S**2 + sigma**2)


def _posterior(z, a, b, mu=MU):
  """`(E[data | z], E[eps | z])` for `z = a data + b eps`, data ~ N(mu, S^2 I)."""
  var = a**2 * S**2 + b**2
  return mu + a * S**2 * (z - a * mu) / var, b * (z - a * mu) / var


def _x(seed=0):
  return np.random.default_rng(seed).standard_normal((3, MU.size)) * 2.0


def test_vp_denoiser_is_exact_on_the_exact_noise_predictor():
  def eps_fn(z, log_snr):  # VP: alpha^2 = sigmoid(lambda), sigma_t^2 = sigmoid(-lambda)
    lam = float(log_snr)
    a, b = np.sqrt(1 / (1 + np.exp(-lam))), np.sqrt(1 / (1 + np.exp(lam)))
    return jnp.asarray(_posterior(np.asarray(z, np.float64), a, b)[1])

  x = _x()
  with jax.enable_x64(True):
    denoise = sampling.vp_denoiser(eps_fn)
    for sigma in SIGMAS:
      np.testing.assert_allclose(
        denoise(jnp.asarray(x), jnp.asarray(sigma)),
        exact_denoiser(x, sigma),
        rtol=1e-10,
        atol=1e-10,
      )
  lam = np.array([-6.0, 0.0, 9.0])
  np.testing.assert_allclose(
    sampling.log_snr_from_sigma(sampling.sigma_from_log_snr(lam)), lam, atol=1e-5
  )
  # sigma = sigma_t / alpha_t
  np.testing.assert_allclose(
    sampling.sigma_from_log_snr(lam),
    np.sqrt((1 / (1 + np.exp(lam))) / (1 / (1 + np.exp(-lam)))),
    rtol=1e-6,
  )


@pytest.mark.parametrize('sigma_min', [0.0, 0.1])
def test_flow_denoiser_is_exact_on_the_exact_velocity(sigma_min):
  def velocity_fn(x_t, t):  # FlowMatching: x_t = (1 - (1 - sigma_min) t) eps + t data
    t = float(t)
    data, eps = _posterior(np.asarray(x_t, np.float64), t, 1 - (1 - sigma_min) * t)
    return jnp.asarray(data - (1 - sigma_min) * eps)  # the velocity's regression target

  x = _x(1)
  with jax.enable_x64(True):
    denoise = sampling.flow_denoiser(velocity_fn, sigma_min=sigma_min)
    for sigma in SIGMAS:
      if sigma < sigma_min:
        continue
      np.testing.assert_allclose(
        denoise(jnp.asarray(x), jnp.asarray(sigma)),
        exact_denoiser(x, sigma),
        rtol=1e-10,
        atol=1e-10,
      )
  with pytest.raises(ValueError, match='sigma_min must be in'):
    sampling.flow_denoiser(velocity_fn, sigma_min=1.0)


def test_flow_denoiser_samples_like_the_flow_ode():
  """DPM-Solver++ through the adapter ends where the flow's own ODE (`odeint`, RK4) ends
  from the same start: the adapter is the same ODE in other coordinates (`sigma = 80` is
  `t = 1 / 81`, `x_t = t x`), whose exact end is known."""

  def velocity_fn(x_t, t):
    a, b = t, 1 - t
    var = a**2 * S**2 + b**2
    mu = jnp.asarray(MU, x_t.dtype)
    return (mu + a * S**2 * (x_t - a * mu) / var) - b * (x_t - a * mu) / var

  sigma_max = 80.0
  t0 = 1 / (1 + sigma_max)
  with jax.enable_x64(True):
    x = jnp.asarray(_x(3) * sigma_max)
    ode = sampling.odeint(velocity_fn, t0 * x, t0=t0, t1=1.0, num_steps=100, method='rk4')
    sigmas = sampling.karras_sigmas(100, sigma_min=1e-3, sigma_max=sigma_max, dtype=jnp.float64)
    ours = sampling.sample_dpmpp_2m(sampling.flow_denoiser(velocity_fn), x, sigmas)
  exact = MU + (np.asarray(x) - MU) * S / np.sqrt(S**2 + sigma_max**2)
  # Measured: RK4 in t 7e-10 from the exact end (the flow is nearly straight), the 100
  # DPM-Solver++(2M) steps in sigma 5.3e-3 (2.3e-2 at 50 steps, 0.10 at 25).
  np.testing.assert_allclose(ode, exact, atol=1e-6)
  np.testing.assert_allclose(ours, ode, atol=1e-2)


def test_guided_denoiser_is_guidance_of_the_noise_estimate():
  mus = np.array([[1.0, -1.0, 0.5, 0.0], [-2.0, 0.0, 1.0, 3.0], [0.0, 0.0, 0.0, 0.0]])
  null = 2
  labels = np.array([0, 1, 0])
  x = _x(2)

  def denoise_fn(x, sigma, labels):
    return exact_denoiser(x, sigma, jnp.asarray(mus)[labels])

  def eps_fn(z, log_snr, labels):  # the same model as a VP noise predictor
    sigma = jnp.exp(-0.5 * log_snr)
    x_ve = z * jnp.sqrt(1 + sigma**2)
    return (x_ve - denoise_fn(x_ve, sigma, labels)) / sigma

  scale, sigma = 3.0, 0.7
  guided = sampling.guided_denoiser(denoise_fn, labels, null_label=null, scale=scale)
  out = np.asarray(guided(jnp.asarray(x, jnp.float32), jnp.asarray(sigma)))
  cond, uncond = exact_denoiser(x, sigma, mus[labels]), exact_denoiser(x, sigma, mus[null])
  np.testing.assert_allclose(out, uncond + scale * (cond - uncond), rtol=1e-5, atol=1e-5)
  via_eps = sampling.vp_denoiser(
    sampling.classifier_free_guidance(eps_fn, labels, null_label=null, scale=scale)
  )
  np.testing.assert_allclose(
    via_eps(jnp.asarray(x, jnp.float32), jnp.asarray(sigma)), out, rtol=1e-5, atol=1e-5
  )
