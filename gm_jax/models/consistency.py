"""Consistency models trained by improved consistency training (iCT; Song et al. 2023,
"Consistency Models"; Song & Dhariwal 2023, "Improved Techniques for Training
Consistency Models").

* `consistency_scalings`: `c_skip, c_out` with the boundary condition `f(x, sigma_min) = x`
  (Song et al. 2023, appendix C: `c_skip = sigma_data^2 / ((sigma - sigma_min)^2 +
  sigma_data^2)`, `c_out = (sigma - sigma_min) sigma_data / sqrt(sigma^2 + sigma_data^2)`),
  and EDM's `c_in`, `c_noise` (Karras et al. 2022, Table 1).
* `ConsistencyModel`: `f(x, sigma) = c_skip x + c_out F(c_in x, c_noise)`, `F` the `UNet`.
* `discretization_steps`: the exponential curriculum of iCT (section 3.4),
  `N(k) = min(s0 2^floor(k / K'), s1) + 1`, `K' = floor(K / (log2(s1 / s0) + 1))`.
* `karras_level`: `sigma_i` of the `N`-level Karras grid (a traced `N` is fine).
* `ct_terms`: the per-example loss `gm_jax.losses.consistency_loss` at a noise index drawn
  from iCT's discretised log-normal (section 3.5), the target the same network at the
  smaller level under `stop_gradient` (no EMA teacher, section 3.2), one dropout mask
  for both.
* `heun_step` and `cd_terms`: consistency distillation (Song et al. 2023, Algorithm 2):
  the target's point is one Heun step of a teacher denoiser's probability-flow ODE from
  `sigma_{i+1}` to `sigma_i` (not the same noise at `sigma_i`, as in training), with the
  pair distribution, weighting and metric of `ct_terms`.
* `multistep_sample`: Song et al. 2023, Algorithm 1.

Data scale: `[-1, 1]` (uniformly dequantised levels) as in `gm_jax.models.diffusion`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
import math

import flax.linen as nn
import jax
import jax.numpy as jnp

from gm_jax import losses
from gm_jax.models.diffusion import dequantize
from gm_jax.models.diffusion import UNet

SIGMA_DATA = 0.5
SIGMA_MIN, SIGMA_MAX, RHO = 0.002, 80.0, 7.0
# iCT's noise-index distribution (section 3.5).
P_MEAN, P_STD = -1.1, 2.0


def consistency_scalings(sigma, *, sigma_min: float = SIGMA_MIN, sigma_data: float = SIGMA_DATA):
  """`(c_skip, c_out, c_in, c_noise)` at `sigma` (arrays of its shape); `c_skip = 1`,
  `c_out = 0` at `sigma = sigma_min`."""
  sigma = jnp.asarray(sigma)
  c_skip = sigma_data**2 / (jnp.square(sigma - sigma_min) + sigma_data**2)
  c_out = (sigma - sigma_min) * sigma_data * jax.lax.rsqrt(jnp.square(sigma) + sigma_data**2)
  c_in = jax.lax.rsqrt(jnp.square(sigma) + sigma_data**2)
  c_noise = 0.25 * jnp.log(sigma)
  return c_skip, c_out, c_in, c_noise


class ConsistencyModel(nn.Module):
  """`f(x, sigma) = c_skip(sigma) x + c_out(sigma) F(c_in(sigma) x, ln(sigma) / 4)`.

  Attributes:
    net: the `UNet` `F` (unconditional: `num_classes = 0`).
    sigma_min: the smallest noise level, where `f` is the identity.
    sigma_data: the data's standard deviation.
  """

  net: UNet
  sigma_min: float = SIGMA_MIN
  sigma_data: float = SIGMA_DATA

  def __call__(self, x, sigma, *, train: bool = False):
    """x: `[B, H, W, C]`; sigma: `[B]` or a scalar (`>= sigma_min`). Returns `[B, H, W, C]`."""
    sigma = jnp.broadcast_to(jnp.asarray(sigma, jnp.float32), (x.shape[0],))
    c_skip, c_out, c_in, c_noise = (
      c.reshape((-1,) + (1,) * (x.ndim - 1))
      for c in consistency_scalings(sigma, sigma_min=self.sigma_min, sigma_data=self.sigma_data)
    )
    f = self.net(c_in * x, c_noise.reshape(-1), None, train=train)
    return c_skip * x + c_out * f.astype(x.dtype)


def discretization_steps(step, *, total_steps: int, s0: int, s1: int):
  """iCT's `N(k) = min(s0 2^floor(k / K'), s1) + 1` noise levels at training step `k`.

  `K' = floor(K / (log2(floor(s1 / s0)) + 1))` with `K = total_steps` (Song & Dhariwal
  2023, section 3.4): the grid doubles `log2(s1 / s0)` times, in equal stages. int32.
  """
  if not 1 <= s0 <= s1:
    raise ValueError(f'need 1 <= s0 <= s1; got s0={s0!r}, s1={s1!r}')
  stage = max(1, int(total_steps // (math.log2(s1 // s0) + 1)))
  doublings = jnp.asarray(step, jnp.int32) // stage
  n = jnp.minimum(s0 * jnp.exp2(jnp.minimum(doublings, 30).astype(jnp.float32)), s1)
  return n.astype(jnp.int32) + 1


def karras_level(i, n, *, sigma_min: float, sigma_max: float, rho: float = RHO):
  """`sigma_i = (sigma_min^(1/rho) + i / (n - 1) (sigma_max^(1/rho) - sigma_min^(1/rho)))^rho`,
  `i = 0 .. n - 1` increasing from `sigma_min` to `sigma_max` (`i`, `n` may be traced)."""
  lo, hi = sigma_min ** (1.0 / rho), sigma_max ** (1.0 / rho)
  frac = jnp.asarray(i, jnp.float32) / (jnp.asarray(n, jnp.float32) - 1.0)
  return (lo + frac * (hi - lo)) ** rho


def noise_index_logits(n, *, max_levels: int, sigma_min, sigma_max, rho, p_mean, p_std):
  """Log-probabilities `[max_levels - 1]` of the index `i` of the pair `(sigma_i,
  sigma_{i+1})`: `p(i) ∝ erf((ln sigma_{i+1} - P_mean) / (sqrt(2) P_std)) - erf((ln sigma_i -
  P_mean) / (sqrt(2) P_std))` (iCT section 3.5), `-inf` for `i >= n - 1`."""
  i = jnp.arange(max_levels - 1)
  lo = karras_level(i, n, sigma_min=sigma_min, sigma_max=sigma_max, rho=rho)
  hi = karras_level(i + 1, n, sigma_min=sigma_min, sigma_max=sigma_max, rho=rho)
  cdf = lambda s: jax.scipy.special.erf((jnp.log(s) - p_mean) / (math.sqrt(2.0) * p_std))
  mass = jnp.maximum(cdf(hi) - cdf(lo), 1e-30)
  return jnp.where(i < n - 1, jnp.log(mass), -jnp.inf)


def _level_pair(
  model, images, key, num_levels, num_scales, max_scales, sigma_max, rho, p_mean, p_std
):
  """What training and distillation draw alike from `key`: `(y, sigma_i, sigma_{i+1}, z,
  dropout key)`, `y` the dequantised images, `i ~ noise_index_logits`, `z ~ N(0, I)`."""
  i_key, noise_key, deq_key, drop_key = jax.random.split(key, 4)
  y = dequantize(deq_key, images, num_levels=num_levels)
  grid = dict(sigma_min=model.sigma_min, sigma_max=sigma_max, rho=rho)
  logits = noise_index_logits(num_scales, max_levels=max_scales, p_mean=p_mean, p_std=p_std, **grid)
  i = jax.random.categorical(i_key, logits, shape=(y.shape[0],))
  sigma = karras_level(i, num_scales, **grid)
  sigma_next = karras_level(i + 1, num_scales, **grid)
  return y, sigma, sigma_next, jax.random.normal(noise_key, y.shape), drop_key


def ct_terms(
  model: ConsistencyModel,
  params,
  images,
  key,
  *,
  num_levels: int,
  num_scales,
  max_scales: int,
  sigma_max: float = SIGMA_MAX,
  rho: float = RHO,
  p_mean: float = P_MEAN,
  p_std: float = P_STD,
  huber_c: float | None = None,
  train: bool = False,
) -> dict:
  """The consistency-training loss per example on uniformly dequantised images.

  `y = dequantize(images)`, `i ~ noise_index_logits`, one `z ~ N(0, I)`:
  `loss = consistency_loss(f(y + sigma_{i+1} z, sigma_{i+1}), sg f(y + sigma_i z, sigma_i))`.

  Args:
    model: a `ConsistencyModel`.
    params: its variables.
    images: integer levels `[B, H, W, C]` on `[0, num_levels)`.
    key: PRNG key: index, noise, dequantisation, dropout.
    num_levels: number of levels `L` of the data.
    num_scales: `N`, the levels of the current grid (int, may be traced;
      `discretization_steps`), `2 <= N <= max_scales`.
    max_scales: the static bound on `N` (`s1 + 1`).
    sigma_max, rho: the Karras grid (its `sigma_min` is the model's).
    p_mean, p_std: the log-normal the indices are drawn from.
    huber_c: the pseudo-Huber `c` (None: `0.00054 sqrt(D)`).
    train: dropout on (the same mask in both evaluations).

  Returns:
    dict of `[B]` arrays: `loss`, `sigma` (the larger level `sigma_{i+1}`).
  """
  y, sigma, sigma_next, z, drop_key = _level_pair(
    model, images, key, num_levels, num_scales, max_scales, sigma_max, rho, p_mean, p_std
  )
  expand = lambda s: s.reshape((-1,) + (1,) * (y.ndim - 1))
  rngs = {'dropout': drop_key}
  online = model.apply(params, y + expand(sigma_next) * z, sigma_next, train=train, rngs=rngs)
  target = model.apply(params, y + expand(sigma) * z, sigma, train=train, rngs=rngs)
  target = jax.lax.stop_gradient(target)
  loss = losses.consistency_loss(online, target, sigma, sigma_next, huber_c=huber_c)
  return {'loss': loss, 'sigma': sigma_next}


def heun_step(denoise: Callable, x, sigma_from, sigma_to):
  """One Heun step of the probability-flow ODE `dx/dsigma = (x - D(x; sigma)) / sigma`.

  Karras et al. 2022, Algorithm 1 (one iteration, `sigma_to > 0`):
  `d = (x - D(x; sigma_from)) / sigma_from`, `x' = x + (sigma_to - sigma_from) d`,
  `d' = (x' - D(x'; sigma_to)) / sigma_to`, `x + (sigma_to - sigma_from) (d + d') / 2`.

  Args:
    denoise: `(x [B, ...], sigma [B]) -> D(x; sigma)`, `[B, ...]`.
    x: `[B, ...]` at `sigma_from`.
    sigma_from, sigma_to: `[B]` levels (`> 0`).

  Returns:
    `[B, ...]`, the ODE's solution at `sigma_to` to second order.
  """
  expand = lambda s: jnp.reshape(s, (-1,) + (1,) * (x.ndim - 1))
  h = expand(sigma_to - sigma_from)
  d = (x - denoise(x, sigma_from)) / expand(sigma_from)
  x_euler = x + h * d
  d_next = (x_euler - denoise(x_euler, sigma_to)) / expand(sigma_to)
  return x + h * 0.5 * (d + d_next)


def cd_terms(
  model: ConsistencyModel,
  params,
  teacher: Callable,
  images,
  key,
  *,
  num_levels: int,
  num_scales: int,
  sigma_max: float = SIGMA_MAX,
  rho: float = RHO,
  p_mean: float = P_MEAN,
  p_std: float = P_STD,
  huber_c: float | None = None,
  train: bool = False,
) -> dict:
  """The consistency-distillation loss per example on uniformly dequantised images.

  `y = dequantize(images)`, `i ~ noise_index_logits` on the fixed `num_scales`-level grid,
  `x = y + sigma_{i+1} z`, `x_i = heun_step(teacher, x, sigma_{i+1}, sigma_i)`:
  `loss = consistency_loss(f(x, sigma_{i+1}), sg f(x_i, sigma_i))` (Song et al. 2023,
  Algorithm 2 with the target network `theta^- = theta` under `stop_gradient`, as
  `ct_terms`; one dropout mask for both evaluations).

  Args:
    model: a `ConsistencyModel`.
    params: its variables.
    teacher: `(x [B, ...], sigma [B]) -> D(x; sigma)`, the teacher's denoiser (its
      gradient is stopped).
    images: integer levels `[B, H, W, C]` on `[0, num_levels)`.
    key: PRNG key: index, noise, dequantisation, dropout.
    num_levels: number of levels `L` of the data.
    num_scales: `N >= 2`, the levels of the Karras grid (static).
    sigma_max, rho: the grid (its `sigma_min` is the model's).
    p_mean, p_std: the log-normal the indices are drawn from.
    huber_c: the pseudo-Huber `c` (None: `0.00054 sqrt(D)`).
    train: dropout on.

  Returns:
    dict of `[B]` arrays: `loss`, `sigma` (the larger level `sigma_{i+1}`).
  """
  if num_scales < 2:
    raise ValueError(f'num_scales must be >= 2; got {num_scales!r}')
  y, sigma, sigma_next, z, drop_key = _level_pair(
    model, images, key, num_levels, num_scales, num_scales, sigma_max, rho, p_mean, p_std
  )
  x = y + sigma_next.reshape((-1,) + (1,) * (y.ndim - 1)) * z
  x_i = jax.lax.stop_gradient(heun_step(teacher, x, sigma_next, sigma))
  rngs = {'dropout': drop_key}
  online = model.apply(params, x, sigma_next, train=train, rngs=rngs)
  target = jax.lax.stop_gradient(model.apply(params, x_i, sigma, train=train, rngs=rngs))
  loss = losses.consistency_loss(online, target, sigma, sigma_next, huber_c=huber_c)
  return {'loss': loss, 'sigma': sigma_next}


def step_sigmas(
  num_steps: int, *, sigma_min: float = SIGMA_MIN, sigma_max: float = SIGMA_MAX, rho: float = RHO
) -> list[float]:
  """The `num_steps` noise levels of multistep sampling: the first `num_steps` of the
  Karras grid of `num_steps + 1` levels from `sigma_max` down to `sigma_min`."""
  if num_steps < 1:
    raise ValueError(f'num_steps must be >= 1; got {num_steps!r}')
  lo, hi = sigma_min ** (1.0 / rho), sigma_max ** (1.0 / rho)
  return [(hi + k / num_steps * (lo - hi)) ** rho for k in range(num_steps)]


def multistep_sample(
  f: Callable, key, shape: Sequence[int], sigmas: Sequence[float], *, sigma_min: float
) -> jnp.ndarray:
  """Multistep consistency sampling (Song et al. 2023, Algorithm 1).

  `x = f(sigma_0 z_0, sigma_0)`; then for each later level `tau`:
  `x = f(x + sqrt(tau^2 - sigma_min^2) z, tau)`.

  Args:
    f: `(x [B, ...], sigma scalar) -> [B, ...]`, the consistency function.
    key: PRNG key of the noise.
    shape: `[B, ...]`.
    sigmas: decreasing levels, the first the largest (`sigma_max`); one network
      evaluation each.
    sigma_min: the model's smallest level.

  Returns:
    `[B, ...]` samples in data space.
  """
  keys = jax.random.split(key, len(sigmas))
  x = f(sigmas[0] * jax.random.normal(keys[0], tuple(shape), jnp.float32), sigmas[0])
  for k, tau in zip(keys[1:], sigmas[1:]):
    noise = jax.random.normal(k, tuple(shape), jnp.float32)
    x = f(x + math.sqrt(max(tau**2 - sigma_min**2, 0.0)) * noise, tau)
  return x
