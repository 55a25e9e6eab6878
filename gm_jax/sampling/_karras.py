"""The sampler suite over a denoiser `D(x; sigma)`, in k-diffusion's convention.

Karras et al. 2022 ("Elucidating the Design Space of Diffusion-Based Generative Models",
EDM) write every diffusion model as a denoiser `D(x; sigma)`, the estimate of the clean
data from `x = data + sigma * noise`, whose probability-flow ODE is
`dx/dsigma = (x - D(x; sigma)) / sigma` (their eq. 3 with `sigma(t) = t`). A sampler walks
a decreasing schedule `sigmas = [sigma_0 > sigma_1 > ... > sigma_{N-1} > sigma_N = 0]`
from `x = noise * sigma_0`:

* `sample_euler`: one Euler step of that ODE a noise level (1 evaluation a step);
* `sample_heun`: Karras et al. Algorithm 2 (Heun's second-order correction, optional
  stochastic churn), the last step to `sigma = 0` an Euler step (2 N - 1 evaluations);
* `sample_euler_ancestral`: an Euler step down to `sigma_down`, then fresh noise of
  variance `sigma_up^2` (`eta = 1`: DDPM's ancestral variance; `eta = 0`: Euler);
* `sample_dpmpp_2m`: DPM-Solver++(2M) (Lu et al. 2022, "DPM-Solver++", Algorithm 2),
  second-order multistep in `log sigma` on the data prediction; first order at its
  first step and on the last, to `sigma = 0` (N evaluations).

`denoise(x, sigma)` takes `x [B, ...]` and a scalar array `sigma`. Each sampler is one
`lax.scan` over the steps (the last step apart where it differs), so `denoise` is traced
at most three times whatever the number of steps; all run under `jax.jit`. Noise for step
`i` is `normal(fold_in(key, i))` (drawn in float32, cast to `x`'s dtype); the state stays
in `x`'s dtype whatever `denoise` returns. The arithmetic follows k-diffusion 0.1.1
(`k_diffusion/sampling.py`), which the tests compare with step by step.
`get_sampler(name)` gives every sampler one calling convention; `nfe` counts the network
evaluations.
"""

from __future__ import annotations

from collections.abc import Callable
import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

Denoiser = Callable[[jnp.ndarray, jnp.ndarray], jnp.ndarray]


def _check_num_steps(num_steps, name: str = 'num_steps') -> int:
  if not isinstance(num_steps, (int, np.integer)) or isinstance(num_steps, bool) or num_steps < 1:
    raise ValueError(f'{name} must be an integer >= 1, got {num_steps!r}')
  return int(num_steps)


def karras_sigmas(
  num_steps: int, *, sigma_min: float, sigma_max: float, rho: float = 7.0, dtype=jnp.float32
) -> jnp.ndarray:
  """The noise levels of Karras et al. 2022, eq. 5, and a final 0: `[num_steps + 1]`.

  `sigma_i = (sigma_max^(1/rho) + i / (N - 1) (sigma_min^(1/rho) - sigma_max^(1/rho)))^rho`
  for `i < N = num_steps` (`[sigma_max]` when `N = 1`), then `sigma_N = 0`; `rho = 7`
  spends more steps near `sigma_min`, where the ODE curves.

  Args:
    num_steps: the number of sampler steps `N >= 1`.
    sigma_min: the last positive level (> 0).
    sigma_max: the first level (> sigma_min); `x` starts at `noise * sigma_max`.
    rho: the schedule's exponent (> 0).
    dtype: of the result.

  Returns:
    `[num_steps + 1]` decreasing noise levels ending at 0.
  """
  n = _check_num_steps(num_steps)
  if not 0 < sigma_min < sigma_max < math.inf:
    raise ValueError(
      f'sigma_min and sigma_max must satisfy 0 < sigma_min < sigma_max < inf, '
      f'got sigma_min={sigma_min!r}, sigma_max={sigma_max!r}'
    )
  if not rho > 0:
    raise ValueError(f'rho must be > 0, got {rho!r}')
  ramp = np.linspace(0.0, 1.0, n)
  lo, hi = sigma_min ** (1.0 / rho), sigma_max ** (1.0 / rho)
  return jnp.asarray(np.append((hi + ramp * (lo - hi)) ** rho, 0.0), dtype)


def check_sigmas(sigmas, *, name: str = 'sigmas') -> jnp.ndarray:
  """`sigmas` as an array; a ValueError naming `name` unless it is a schedule of at least one
  step that strictly decreases to 0. A schedule traced under `jit` has no values to check:
  its shape is checked, the values trusted."""
  sigmas = jnp.asarray(sigmas)
  if sigmas.ndim != 1 or sigmas.shape[0] < 2:
    raise ValueError(
      f'{name} must be a 1-D schedule of at least 2 noise levels (1 step) '
      f'decreasing to 0, got shape {sigmas.shape}'
    )
  try:
    values = np.asarray(sigmas, np.float64)
  except (jax.errors.TracerArrayConversionError, jax.errors.ConcretizationTypeError):
    return sigmas
  if not (np.all(np.isfinite(values)) and values[-1] == 0 and np.all(np.diff(values) < 0)):
    raise ValueError(
      f'{name} must decrease strictly to a last value of 0 (e.g. '
      f'karras_sigmas), got {values.tolist()}'
    )
  return sigmas


def _prepare(x, sigmas):
  x = jnp.asarray(x)
  if not jnp.issubdtype(x.dtype, jnp.floating):
    raise ValueError(f'x must be a floating array, got {x.dtype}')
  return x, check_sigmas(sigmas).astype(x.dtype)


def _noise(key, i, x):
  """Step `i`'s noise, drawn in float32 whatever `x`'s dtype (the same draws in float64)."""
  return jax.random.normal(jax.random.fold_in(key, i), x.shape, jnp.float32).astype(x.dtype)


def _denoised(denoise, x, sigma):
  """`D(x; sigma)` in `x`'s dtype (a network computing in bfloat16 keeps the sampler's state
  in float32, and `lax.scan`'s carry its type)."""
  return denoise(x, sigma).astype(x.dtype)


def _to_d(x, sigma, denoised):
  """`dx/dsigma = (x - D(x; sigma)) / sigma` (Karras et al. 2022, eq. 3 with `sigma(t) = t`)."""
  return (x - denoised) / sigma


def _scan(step, carry, length: int):
  """`lax.scan` of `step` over `arange(length)`; no scan at all for `length = 0` (a one-step
  schedule), which `jax.disable_jit` cannot run."""
  if length == 0:
    return carry, None
  return jax.lax.scan(step, carry, jnp.arange(length))


def _result(x0, xs, x, return_trajectory):
  """`x`, or `(x, [x0, ..., x])` with the states after each step stacked on axis 0."""
  if not return_trajectory:
    return x
  parts = [x0[None]] + ([xs] if xs is not None else []) + [x[None]]
  return x, jnp.concatenate(parts)


def sample_euler(denoise: Denoiser, x, sigmas, *, return_trajectory: bool = False):
  """Euler's method on the probability-flow ODE, one network evaluation a step.

  Args:
    denoise: `(x [B, ...], sigma scalar) -> D(x; sigma) [B, ...]`.
    x: `[B, ...]` the start, `noise * sigmas[0]`.
    sigmas: `[N + 1]` strictly decreasing to 0 (`karras_sigmas`).
    return_trajectory: also return the states `[N + 1, B, ...]` (`x` and after each step).

  Returns:
    `[B, ...]` the sample at `sigma = 0` (and the trajectory when asked).
  """
  x, sigmas = _prepare(x, sigmas)
  n = sigmas.shape[0] - 1

  def step(x, i):
    sigma, sigma_next = sigmas[i], sigmas[i + 1]
    x = x + _to_d(x, sigma, _denoised(denoise, x, sigma)) * (sigma_next - sigma)
    return x, (x if return_trajectory else None)

  out, xs = jax.lax.scan(step, x, jnp.arange(n))
  if return_trajectory:
    return out, jnp.concatenate([x[None], xs])
  return out


def sample_heun(
  denoise: Denoiser,
  x,
  sigmas,
  *,
  s_churn: float = 0.0,
  s_tmin: float = 0.0,
  s_tmax: float = math.inf,
  s_noise: float = 1.0,
  key=None,
  return_trajectory: bool = False,
):
  """Karras et al. 2022, Algorithm 2: Heun steps with optional stochastic churn.

  At step `i` (`sigma_i` in `[s_tmin, s_tmax]`, `s_churn > 0`) the noise level is first
  raised to `sigma_hat = (1 + gamma) sigma_i`, `gamma = min(s_churn / N, sqrt(2) - 1)`, by
  adding noise of variance `sigma_hat^2 - sigma_i^2` (times `s_noise^2`); then an Euler
  step to `sigma_{i+1}` and Heun's correction with the slope there (2 evaluations). The
  last step, to `sigma_N = 0`, is an Euler step: 2 N - 1 evaluations in all.

  Args:
    denoise: `(x [B, ...], sigma scalar) -> D(x; sigma) [B, ...]`.
    x: `[B, ...]` the start, `noise * sigmas[0]`.
    sigmas: `[N + 1]` strictly decreasing to 0.
    s_churn: total churn (>= 0; 0 = the deterministic sampler, Algorithm 1).
    s_tmin, s_tmax: churn only where `s_tmin <= sigma_i <= s_tmax`.
    s_noise: scale of the churn noise (slightly above 1 in the paper's Table 5).
    key: PRNG key of the churn noise (needed when `s_churn > 0`).
    return_trajectory: also return the states `[N + 1, B, ...]`.

  Returns:
    `[B, ...]` the sample at `sigma = 0` (and the trajectory when asked).
  """
  if not s_churn >= 0:
    raise ValueError(f's_churn must be >= 0, got {s_churn!r}')
  if s_churn > 0 and key is None:
    raise ValueError('sample_heun with s_churn > 0 needs a PRNG key (key=...)')
  x, sigmas = _prepare(x, sigmas)
  n = sigmas.shape[0] - 1
  gamma_max = min(s_churn / n, math.sqrt(2.0) - 1.0)

  def churn(x, i):
    sigma = sigmas[i]
    if s_churn == 0:
      return x, sigma
    gamma = jnp.where((s_tmin <= sigma) & (sigma <= s_tmax), gamma_max, 0.0).astype(x.dtype)
    sigma_hat = sigma * (gamma + 1)
    eps = _noise(key, i, x) * s_noise
    # sqrt(sigma_hat^2 - sigma^2) written so that it is exactly 0 at gamma = 0: the
    # difference of squares, contracted to a fused multiply-add by XLA, leaves the rounding
    # error of sigma^2, whose root (~3e-4 sigma in float32) would add noise where none is due.
    return x + eps * (sigma * jnp.sqrt(gamma * (gamma + 2))), sigma_hat

  def heun(x, i):
    x, sigma_hat = churn(x, i)
    sigma_next = sigmas[i + 1]
    dt = sigma_next - sigma_hat
    d = _to_d(x, sigma_hat, _denoised(denoise, x, sigma_hat))
    x_2 = x + d * dt
    d_2 = _to_d(x_2, sigma_next, _denoised(denoise, x_2, sigma_next))
    x = x + 0.5 * (d + d_2) * dt
    return x, (x if return_trajectory else None)

  out, xs = _scan(heun, x, n - 1)
  last, sigma_hat = churn(out, n - 1)
  d = _to_d(last, sigma_hat, _denoised(denoise, last, sigma_hat))
  out = last + d * (sigmas[n] - sigma_hat)
  return _result(x, xs, out, return_trajectory)


def sample_euler_ancestral(
  denoise: Denoiser, x, sigmas, key, *, eta: float = 1.0, return_trajectory: bool = False
):
  """Ancestral sampling with Euler steps (k-diffusion's `sample_euler_ancestral`).

  From `sigma` to `sigma_next`: `sigma_up = min(sigma_next, eta sigma_next
  sqrt(1 - sigma_next^2 / sigma^2))` (the posterior standard deviation of DDPM's
  ancestral step at `eta = 1`, Ho et al. 2020), `sigma_down = sqrt(sigma_next^2 -
  sigma_up^2)`; an Euler step to `sigma_down`, then noise `sigma_up * normal(fold_in(key,
  i))`. `eta = 0` is `sample_euler`. One evaluation a step.

  Args:
    denoise: `(x [B, ...], sigma scalar) -> D(x; sigma) [B, ...]`.
    x: `[B, ...]` the start, `noise * sigmas[0]`.
    sigmas: `[N + 1]` strictly decreasing to 0.
    key: PRNG key of the steps' noise.
    eta: the share of the ancestral noise (>= 0).
    return_trajectory: also return the states `[N + 1, B, ...]`.

  Returns:
    `[B, ...]` the sample at `sigma = 0` (and the trajectory when asked).
  """
  if key is None:
    raise ValueError('sample_euler_ancestral needs a PRNG key (key)')
  if not eta >= 0:
    raise ValueError(f'eta must be >= 0, got {eta!r}')
  x, sigmas = _prepare(x, sigmas)
  n = sigmas.shape[0] - 1

  def step(x, i):
    sigma, sigma_next = sigmas[i], sigmas[i + 1]
    denoised = _denoised(denoise, x, sigma)
    var_ratio = jnp.square(sigma_next) * (jnp.square(sigma) - jnp.square(sigma_next))
    sigma_up = jnp.minimum(sigma_next, eta * jnp.sqrt(var_ratio / jnp.square(sigma)))
    sigma_down = jnp.sqrt(jnp.maximum(jnp.square(sigma_next) - jnp.square(sigma_up), 0.0))
    x = x + _to_d(x, sigma, denoised) * (sigma_down - sigma)
    x = x + _noise(key, i, x) * sigma_up  # sigma_up = 0 on the last step
    return x, (x if return_trajectory else None)

  out, xs = jax.lax.scan(step, x, jnp.arange(n))
  if return_trajectory:
    return out, jnp.concatenate([x[None], xs])
  return out


def sample_dpmpp_2m(denoise: Denoiser, x, sigmas, *, return_trajectory: bool = False):
  """DPM-Solver++(2M) (Lu et al. 2022, "DPM-Solver++: Fast Solver for Guided Sampling of
  Diffusion Probabilistic Models", Algorithm 2), one evaluation a step.

  In `t = -log sigma` the ODE of the data prediction is solved exactly for a `D`
  linear in `t` on each step: with `h = t_{i+1} - t_i`,
  `x_{i+1} = (sigma_{i+1} / sigma_i) x_i - expm1(-h) D_i'`, where `D_i' = D_i` on the
  first step (first order) and `(1 + 1 / (2 r)) D_i - 1 / (2 r) D_{i-1}`, `r = h_{i-1} /
  h`, after it (the multistep second-order correction). The last step, to `sigma = 0`,
  is first order: `x_N = D(x_{N-1}; sigma_{N-1})`.

  Args:
    denoise: `(x [B, ...], sigma scalar) -> D(x; sigma) [B, ...]`.
    x: `[B, ...]` the start, `noise * sigmas[0]`.
    sigmas: `[N + 1]` strictly decreasing to 0.
    return_trajectory: also return the states `[N + 1, B, ...]`.

  Returns:
    `[B, ...]` the sample at `sigma = 0` (and the trajectory when asked).
  """
  x, sigmas = _prepare(x, sigmas)
  n = sigmas.shape[0] - 1
  log_sigmas = jnp.log(sigmas[:-1])  # the positive levels; sigma_N = 0 is handled apart

  def step(carry, i):
    x, old_denoised = carry
    denoised = _denoised(denoise, x, sigmas[i])
    h = log_sigmas[i] - log_sigmas[i + 1]
    h_last = log_sigmas[jnp.maximum(i - 1, 0)] - log_sigmas[i]
    first = i == 0
    r = jnp.where(first, 1.0, h_last / h)
    corrected = (1 + 1 / (2 * r)) * denoised - (1 / (2 * r)) * old_denoised
    d = jnp.where(first, denoised, corrected)
    x = (sigmas[i + 1] / sigmas[i]) * x - jnp.expm1(-h) * d
    return (x, denoised), (x if return_trajectory else None)

  (out, _), xs = _scan(step, (x, jnp.zeros_like(x)), n - 1)
  out = _denoised(denoise, out, sigmas[n - 1])
  return _result(x, xs, out, return_trajectory)


SAMPLERS: dict[str, Callable[..., Any]] = {
  'euler': sample_euler,
  'heun': sample_heun,
  'euler_ancestral': sample_euler_ancestral,
  'dpmpp_2m': sample_dpmpp_2m,
}
# Network evaluations per sample for a schedule of N steps.
_NFE: dict[str, Callable[[int], int]] = {
  'euler': lambda n: n,
  'heun': lambda n: 2 * n - 1,
  'euler_ancestral': lambda n: n,
  'dpmpp_2m': lambda n: n,
}


def _check_name(name) -> str:
  if name not in SAMPLERS:
    raise ValueError(f'sampler must be one of {tuple(SAMPLERS)}, got {name!r}')
  return name


def get_sampler(name: str):
  """The sampler `name` of `SAMPLERS` as `fn(denoise, x, sigmas, *, key=None, **options)`.

  One calling convention for all: `key` goes to the samplers that draw noise
  (`euler_ancestral` needs it; `heun` with `s_churn > 0`) and is ignored by the
  deterministic ones; `options` are the sampler's own keywords (`eta`, `s_churn`, ...).
  """
  fn = SAMPLERS[_check_name(name)]

  def run(denoise: Denoiser, x, sigmas, *, key=None, **options):
    if name == 'euler_ancestral':
      return fn(denoise, x, sigmas, key, **options)
    if name == 'heun':
      return fn(denoise, x, sigmas, key=key, **options)
    return fn(denoise, x, sigmas, **options)

  return run


def nfe(sampler: str, num_steps) -> int:
  """Network evaluations per sample of `sampler` on a schedule of `num_steps` steps.

  `num_steps` is an int `N >= 1` or the schedule itself (`[N + 1]` sigmas): `N` for
  'euler', 'euler_ancestral' and 'dpmpp_2m', `2 N - 1` for 'heun'.
  """
  _check_name(sampler)
  if not isinstance(num_steps, (int, np.integer)):
    num_steps = check_sigmas(num_steps, name='num_steps').shape[0] - 1
  return _NFE[sampler](_check_num_steps(num_steps))
