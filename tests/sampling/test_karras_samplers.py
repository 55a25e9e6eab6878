"""The denoiser sampler suite against k-diffusion 0.1.1 and the exact ODE solution.

The data are Gaussian, `N(mu, s^2 I)`, so the denoiser has a closed form,
`D(x; sigma) = (s^2 x + sigma^2 mu) / (s^2 + sigma^2)`, and so has the probability-flow
ODE `dx/dsigma = (x - D) / sigma = sigma (x - mu) / (s^2 + sigma^2)`:
`x(sigma) - mu` is proportional to `sqrt(s^2 + sigma^2)`. Every sampler's trajectory is
compared step by step with k-diffusion's samplers (torch, float64, same noise), loaded by
`k_diffusion_reference`.
"""

import math

import jax
import jax.numpy as jnp
import k_diffusion_reference
import numpy as np
import pytest

from gm_jax import sampling

torch = pytest.importorskip('torch')
KD = k_diffusion_reference.load()
needs_kd = pytest.mark.skipif(KD is None, reason='k-diffusion not installed (setup.cfg test extra)')

MU = np.array([0.3, -0.7, 1.1])
S = 0.5
SIGMA_MIN, SIGMA_MAX = 0.002, 80.0


def jax_denoise(x, sigma):
  mu = jnp.asarray(MU, x.dtype)
  return (S**2 * x + jnp.square(sigma) * mu) / (S**2 + jnp.square(sigma))


def torch_denoise(x, sigma):
  """k-diffusion calls the model with `sigma [B]`."""
  sigma = sigma[:, None]
  return (S**2 * x + sigma**2 * torch.as_tensor(MU)) / (S**2 + sigma**2)


def exact_ode(x, sigma_from):
  """`x(0)` of the probability-flow ODE from `x` at `sigma_from`."""
  return MU + (x - MU) * S / np.sqrt(S**2 + sigma_from**2)


def _start(num=4, seed=0):
  return np.random.default_rng(seed).standard_normal((num, MU.size)) * SIGMA_MAX


def _noises(n, key, x):
  """The noise our samplers draw at step `i`: `normal(fold_in(key, i))` in float32."""
  return [
    np.asarray(jax.random.normal(jax.random.fold_in(key, i), x.shape, jnp.float32), np.float64)
    for i in range(n)
  ]


def _reference(name, x, sigmas, noises, monkeypatch, **options):
  """k-diffusion's trajectory `[N + 1, B, D]`: the states before each step (read from its
  callback, the churn noise taken back out for Heun) and the result."""
  states = []

  def callback(info):
    i, state = info['i'], info['x'].numpy().copy()
    if name == 'heun' and options.get('s_churn', 0) > 0:  # the callback sees x after churn
      extra = np.sqrt(info['sigma_hat'].item() ** 2 - info['sigma'].item() ** 2)
      state = state - noises[i] * options.get('s_noise', 1.0) * extra
    states.append(state)

  draws = iter(noises)
  if name == 'heun':  # k-diffusion draws `torch.randn_like(x)` once a step
    monkeypatch.setattr(torch, 'randn_like', lambda t: torch.as_tensor(next(draws)))
  if name == 'euler_ancestral':
    options['noise_sampler'] = lambda sigma, sigma_next: torch.as_tensor(next(draws))
  fn = getattr(KD, f'sample_{name}')
  out = fn(
    torch_denoise,
    torch.as_tensor(x),
    torch.tensor(np.asarray(sigmas)),
    callback=callback,
    disable=True,
    **options,
  )
  return np.stack(states + [out.numpy()])


CASES = [
  ('euler', {}),
  ('heun', {}),
  ('heun', {'s_churn': 2.0, 's_tmin': 0.05, 's_tmax': 10.0, 's_noise': 1.007}),
  ('euler_ancestral', {}),
  ('euler_ancestral', {'eta': 0.5}),
  ('dpmpp_2m', {}),
]


@needs_kd
def test_karras_sigmas_match_k_diffusion():
  for n in (1, 2, 10):
    ours = np.asarray(sampling.karras_sigmas(n, sigma_min=SIGMA_MIN, sigma_max=SIGMA_MAX, rho=7.0))
    ref = KD.get_sigmas_karras(n, SIGMA_MIN, SIGMA_MAX, rho=7.0).numpy()
    assert ours.shape == (n + 1,) and ours[-1] == 0 and ours[0] == np.float32(SIGMA_MAX)
    np.testing.assert_allclose(ours, ref, rtol=1e-6)
  np.testing.assert_allclose(  # eq. 5 at i = N - 1 is sigma_min
    sampling.karras_sigmas(5, sigma_min=0.1, sigma_max=3.0, rho=3.0)[-2], 0.1, rtol=1e-6
  )


@needs_kd
@pytest.mark.parametrize(
  'name,options', CASES, ids=[f'{n}-{"-".join(o) or "default"}' for n, o in CASES]
)
def test_trajectory_matches_k_diffusion(name, options, monkeypatch):
  x = _start()
  key = jax.random.key(3)
  with jax.enable_x64(True):
    sigmas = sampling.karras_sigmas(8, sigma_min=SIGMA_MIN, sigma_max=SIGMA_MAX, dtype=jnp.float64)
    noises = _noises(8, key, x)
    run = sampling.get_sampler(name)
    fn = jax.jit(lambda x, s, k: run(jax_denoise, x, s, key=k, return_trajectory=True, **options))
    out, traj = fn(jnp.asarray(x), sigmas, key)
    out, traj = np.asarray(out), np.asarray(traj)
  ref = _reference(name, x, sigmas, noises, monkeypatch, **dict(options))
  assert traj.shape == (9,) + x.shape and traj.dtype == np.float64
  np.testing.assert_array_equal(traj[-1], out)
  np.testing.assert_array_equal(traj[0], x)
  # Measured: <= 3e-14 apart in float64; the float32 result <= 6e-7 from the reference
  # (before the churn noise was written exactly 0 at gamma = 0, XLA's fused sigma_hat^2 -
  # sigma^2 left 1.3e-7 in float64 and 2.6e-4 in float32: the tight float64 bound sees it).
  np.testing.assert_allclose(traj, ref, rtol=0, atol=1e-10)
  # a float32 run stays within float32 rounding of the float64 reference
  out32 = run(
    jax_denoise,
    jnp.asarray(x, jnp.float32),
    sampling.karras_sigmas(8, sigma_min=SIGMA_MIN, sigma_max=SIGMA_MAX),
    key=key,
    **options,
  )
  assert out32.dtype == jnp.float32
  np.testing.assert_allclose(out32, ref[-1], rtol=0, atol=1e-5)


def _error(sampler, n, x):
  sigmas = sampling.karras_sigmas(n, sigma_min=SIGMA_MIN, sigma_max=SIGMA_MAX, dtype=jnp.float64)
  out = np.asarray(sampler(jax_denoise, jnp.asarray(x), sigmas))
  return np.max(np.abs(out - exact_ode(x, SIGMA_MAX)))


def test_dpmpp_2m_is_second_order():
  """Its error at `sigma = 0` falls about 4x when the steps double (Euler's about 2x).

  Measured (max abs error, 4 x 3 values from sigma = 80): 32 -> 64 -> 128 steps,
  DPM-Solver++(2M) 1.1e-2 -> 2.5e-3 -> 5.8e-4 (ratios 4.47, 4.24; 8 -> 16 steps, before
  the asymptotic regime, only 1.9), Euler 5.7e-2 -> 2.9e-2 -> 1.4e-2 (1.99, 1.99).
  """
  x = _start()
  with jax.enable_x64(True):
    dpm = [_error(sampling.sample_dpmpp_2m, n, x) for n in (32, 64, 128)]
    euler = [_error(sampling.sample_euler, n, x) for n in (32, 64, 128)]
  dpm_ratios = np.array(dpm[:-1]) / np.array(dpm[1:])
  euler_ratios = np.array(euler[:-1]) / np.array(euler[1:])
  assert np.all((dpm_ratios > 3.5) & (dpm_ratios < 5.0)), (dpm, dpm_ratios)
  assert np.all((euler_ratios > 1.8) & (euler_ratios < 2.2)), (euler, euler_ratios)
  assert dpm[-1] < euler[-1] / 10


def test_nfe_counts_the_denoiser_calls():
  calls = []

  def counting(x, sigma):
    calls.append(float(sigma))
    return jax_denoise(x, sigma)

  x = jnp.asarray(_start(num=2), jnp.float32)
  for n in (1, 3):
    sigmas = sampling.karras_sigmas(n, sigma_min=SIGMA_MIN, sigma_max=SIGMA_MAX)
    for name in sampling.SAMPLERS:
      calls.clear()
      with jax.disable_jit():  # lax.scan runs its body once a step, in Python
        sampling.get_sampler(name)(counting, x, sigmas, key=jax.random.key(0))
      assert len(calls) == sampling.nfe(name, n) == sampling.nfe(name, sigmas), name
      assert 0.0 not in calls  # no sampler evaluates the network at sigma = 0
  assert [sampling.nfe(k, 10) for k in ('euler', 'heun', 'euler_ancestral', 'dpmpp_2m')] == [
    10,
    19,
    10,
    10,
  ]


def test_ancestral_eta_zero_is_euler_and_keys_matter():
  x = jnp.asarray(_start(), jnp.float32)
  sigmas = sampling.karras_sigmas(6, sigma_min=SIGMA_MIN, sigma_max=SIGMA_MAX)
  euler = sampling.sample_euler(jax_denoise, x, sigmas)
  anc0 = sampling.sample_euler_ancestral(jax_denoise, x, sigmas, jax.random.key(0), eta=0.0)
  np.testing.assert_allclose(anc0, euler, rtol=1e-6, atol=1e-6)
  a = sampling.sample_euler_ancestral(jax_denoise, x, sigmas, jax.random.key(0))
  b = sampling.sample_euler_ancestral(jax_denoise, x, sigmas, jax.random.key(1))
  assert np.max(np.abs(np.asarray(a) - np.asarray(b))) > 1e-2


def test_traced_schedule_under_jit_equals_eager():
  x = jnp.asarray(_start(), jnp.float32)
  sigmas = sampling.karras_sigmas(4, sigma_min=SIGMA_MIN, sigma_max=SIGMA_MAX)
  for name in sampling.SAMPLERS:
    run = sampling.get_sampler(name)
    eager = run(jax_denoise, x, sigmas, key=jax.random.key(2))
    jitted = jax.jit(lambda x, s, run=run: run(jax_denoise, x, s, key=jax.random.key(2)))(x, sigmas)
    np.testing.assert_allclose(jitted, eager, rtol=1e-6, atol=1e-5)


def test_state_keeps_x_dtype_with_a_bfloat16_denoiser():
  x = jnp.asarray(_start(num=2), jnp.float32)
  sigmas = sampling.karras_sigmas(3, sigma_min=SIGMA_MIN, sigma_max=SIGMA_MAX)

  def low(x, sigma):
    return jax_denoise(x, sigma).astype(jnp.bfloat16)

  def rounded(x, sigma):
    return low(x, sigma).astype(jnp.float32)

  for name in sampling.SAMPLERS:
    run = sampling.get_sampler(name)
    out = run(low, x, sigmas, key=jax.random.key(0))
    assert out.dtype == jnp.float32, name
    np.testing.assert_allclose(
      out, run(rounded, x, sigmas, key=jax.random.key(0)), rtol=1e-6, atol=1e-6
    )


def test_bad_input_names_the_argument():
  x = jnp.zeros((2, 3))
  good = sampling.karras_sigmas(3, sigma_min=SIGMA_MIN, sigma_max=SIGMA_MAX)
  with pytest.raises(ValueError, match='sampler must be one of'):
    sampling.get_sampler('ddim_2m')
  with pytest.raises(ValueError, match='sampler must be one of'):
    sampling.nfe('lms', 4)
  for bad in (
    [3.0, 2.0, 1.0],
    [3.0, 1.0, 2.0, 0.0],
    [3.0, 3.0, 0.0],
    [1.0],
    [[1.0, 0.0]],
    [math.inf, 1.0, 0.0],
  ):
    with pytest.raises(ValueError, match='sigmas must'):
      sampling.sample_euler(jax_denoise, x, jnp.asarray(bad))
  for steps in (0, -1, 2.0, True):
    with pytest.raises(ValueError, match='num_steps must be an integer >= 1'):
      sampling.karras_sigmas(steps, sigma_min=SIGMA_MIN, sigma_max=SIGMA_MAX)
  with pytest.raises(ValueError, match='num_steps must be an integer >= 1'):
    sampling.nfe('heun', 0)
  with pytest.raises(ValueError, match='sigma_min and sigma_max'):
    sampling.karras_sigmas(3, sigma_min=2.0, sigma_max=1.0)
  with pytest.raises(ValueError, match='key'):
    sampling.sample_heun(jax_denoise, x, good, s_churn=1.0)
  with pytest.raises(ValueError, match='key'):
    sampling.get_sampler('euler_ancestral')(jax_denoise, x, good)
  with pytest.raises(ValueError, match='eta must be >= 0'):
    sampling.sample_euler_ancestral(jax_denoise, x, good, jax.random.key(0), eta=-1.0)
