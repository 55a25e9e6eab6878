"""Diffusion and flow-matching samplers tied to one parametrisation each, and ODE likelihoods.

`diffusion_sample` (DDPM ancestral, DDIM, probability-flow ODE with Euler or Heun) on a
noise predictor, `flow_sample` on a velocity, `classifier_free_guidance`,
`probability_flow_velocity`, `odeint` and `ode_log_likelihood` (instantaneous change of
variables, exact trace or Hutchinson). The sampler suite over a denoiser `D(x; sigma)`
(k-diffusion's convention) is `gm_jax.sampling._karras`.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

# The samplers below take the model as a function, so any network (or a closed-form
# denoiser in the tests) plugs in, and run one `lax.fori_loop` over the steps; jit the
# caller (`jax.jit(lambda p, k: diffusion_sample(...))`). Conventions:
#
# * diffusion (variance preserving, Kingma et al. 2021): `z_t = alpha_t x + sigma_t eps`,
#   `alpha_t^2 = sigmoid(lambda_t)`, `sigma_t^2 = sigmoid(-lambda_t)`, the log-SNR
#   `lambda_t = log_snr_fn(t)` decreasing on `t in [0, 1]`; `eps_fn(z, log_snr)` is the
#   model's noise estimate at a scalar log-SNR;
# * flow matching: `velocity_fn(x, t)` at a scalar `t`, noise N(0, I) at `t = 0`, data at
#   `t = 1`.

DIFFUSION_METHODS = ('ddpm', 'ddim', 'euler', 'heun')
ODE_METHODS = ('euler', 'heun', 'rk4')
TRACES = ('exact', 'hutchinson')


def _check_steps(num_steps) -> int:
  if not isinstance(num_steps, int) or isinstance(num_steps, bool) or num_steps <= 0:
    raise ValueError(f'num_steps must be a positive integer, got {num_steps!r}')
  return num_steps


def _alpha_sigma(log_snr):
  return jnp.sqrt(jax.nn.sigmoid(log_snr)), jnp.sqrt(jax.nn.sigmoid(-log_snr))


def classifier_free_guidance(model_fn, labels, *, null_label: int, scale):
  """`fn(z, c)` = `u + scale * (m - u)` with `m = model_fn(z, c, labels)`, `u` the null label's.

  Ho & Salimans 2022 (their `w` is `scale - 1`): `scale = 0` is the unconditional
  model, 1 the conditional one, above 1 guided. Both halves run as one batch of
  `2 B`. Works for noise estimates and velocities alike.

  Args:
    model_fn: `(z [B, ...], c, labels [B]) -> [B, ...]` (`c` a scalar log-SNR or time).
    labels: int `[B]`.
    null_label: the label the model was trained with for "no class".
    scale: guidance scale (a float or a traced scalar).
  """
  labels = jnp.asarray(labels, jnp.int32)
  both = jnp.concatenate([labels, jnp.full_like(labels, null_label)])

  def guided(z, c):
    out = model_fn(jnp.concatenate([z, z]), c, both)
    cond, uncond = jnp.split(out, 2)
    return uncond + scale * (cond - uncond)

  return guided


def probability_flow_velocity(eps_fn, log_snr_fn):
  """`dz/dt` of the diffusion's probability-flow ODE (Song et al. 2021, eq. 13).

  With `f = d log alpha / dt = sigma^2 lambda' / 2`, `g^2 = -sigma^2 lambda'` and the score
  `-eps_hat / sigma`: `dz/dt = f z - g^2 score / 2 = lambda' (sigma^2 z - sigma eps_hat) / 2`.
  """

  def velocity(z, t):
    lam, dlam = jax.jvp(log_snr_fn, (jnp.asarray(t, jnp.float32),), (jnp.ones(()),))
    _, sigma = _alpha_sigma(lam)
    return 0.5 * dlam * (jnp.square(sigma) * z - sigma * eps_fn(z, lam))

  return velocity


def odeint(fn, y0, *, t0: float, t1: float, num_steps: int, method: str = 'heun'):
  """Fixed-step solution at `t1` of `dy/dt = fn(y, t)`, `y(t0) = y0` (`y` any pytree).

  `method`: 'euler' (1 evaluation per step), 'heun' (2; explicit trapezoid), 'rk4' (4).
  One `lax.fori_loop` over `num_steps` equal steps (`t1 < t0` integrates backwards).
  """
  if method not in ODE_METHODS:
    raise ValueError(f'method must be one of {ODE_METHODS}, got {method!r}')
  n = _check_steps(num_steps)
  h = (t1 - t0) / n
  add = lambda y, k, c: jax.tree.map(lambda a, b: a + c * b, y, k)

  def step(i, y):
    t = t0 + i * h
    k1 = fn(y, t)
    if method == 'euler':
      return add(y, k1, h)
    if method == 'heun':
      k2 = fn(add(y, k1, h), t + h)
      return jax.tree.map(lambda a, b, c: a + 0.5 * h * (b + c), y, k1, k2)
    k2 = fn(add(y, k1, h / 2), t + h / 2)
    k3 = fn(add(y, k2, h / 2), t + h / 2)
    k4 = fn(add(y, k3, h), t + h)
    return jax.tree.map(
      lambda a, b, c, d, e: a + h / 6 * (b + 2 * c + 2 * d + e), y, k1, k2, k3, k4
    )

  return jax.lax.fori_loop(0, n, step, y0)


def diffusion_sample(
  eps_fn, log_snr_fn, key, shape: Sequence[int], *, method: str = 'ddim', num_steps: int = 50
) -> jnp.ndarray:
  """Draws `x` (data scale) from a diffusion model, from `z_1 ~ N(0, I)` down to `t = 0`.

  Methods, on `num_steps` equal steps of `t` from 1 to 0 (`s = t - 1 / num_steps`):
  * 'ddpm': ancestral, `z_s ~ p(z_s | z_t) = q(z_s | z_t, x = x_hat)` (Ho et al. 2020;
    VDM appendix A.4): mean `alpha_s / alpha_t (z_t - sigma_t c eps_hat)`, variance
    `sigma_s^2 c`, `c = -expm1(lambda_t - lambda_s)`; step `i`'s noise from
    `fold_in(key, i)`;
  * 'ddim': deterministic (Song et al. 2021, eta = 0), `z_s = alpha_s x_hat + sigma_s eps_hat`,
    `x_hat = (z_t - sigma_t eps_hat) / alpha_t`: a first-order solver of the
    probability-flow ODE, which it approaches as `num_steps` grows;
  * 'euler' / 'heun': that ODE (`probability_flow_velocity`) with `odeint`.
  The result is the denoised `x_hat` at `t = 0`.

  Args:
    eps_fn: `(z [B, ...], log_snr scalar) -> eps_hat [B, ...]`.
    log_snr_fn: `t -> lambda_t` for a scalar `t` (differentiable for the ODE methods).
    key: PRNG key, split into the draw of `z_1` and the steps' noise.
    shape: `(B, ...)`.
    method: one of `DIFFUSION_METHODS`.
    num_steps: number of steps (network evaluations: 1 per step, Heun 2).
  """
  if method not in DIFFUSION_METHODS:
    raise ValueError(f'method must be one of {DIFFUSION_METHODS}, got {method!r}')
  n = _check_steps(num_steps)
  init_key, step_key = jax.random.split(key)
  z = jax.random.normal(init_key, tuple(shape), jnp.float32)
  if method in ('euler', 'heun'):
    z = odeint(
      probability_flow_velocity(eps_fn, log_snr_fn), z, t0=1.0, t1=0.0, num_steps=n, method=method
    )
  else:

    def step(i, z):
      t = 1.0 - i / n
      s = t - 1.0 / n
      lam_t, lam_s = log_snr_fn(jnp.asarray(t)), log_snr_fn(jnp.asarray(s))
      (a_t, s_t), (a_s, s_s) = _alpha_sigma(lam_t), _alpha_sigma(lam_s)
      eps = eps_fn(z, lam_t)
      if method == 'ddim':
        x_hat = (z - s_t * eps) / a_t
        return a_s * x_hat + s_s * eps
      c = -jnp.expm1(lam_t - lam_s)
      mean = a_s / a_t * (z - s_t * c * eps)
      noise = jax.random.normal(jax.random.fold_in(step_key, i), z.shape, z.dtype)
      return mean + jnp.sqrt(c) * s_s * noise

    z = jax.lax.fori_loop(0, n, step, z)
  lam_0 = log_snr_fn(jnp.zeros(()))
  a_0, s_0 = _alpha_sigma(lam_0)
  return (z - s_0 * eps_fn(z, lam_0)) / a_0


def flow_sample(
  velocity_fn, key, shape: Sequence[int], *, method: str = 'heun', num_steps: int = 50
) -> jnp.ndarray:
  """Draws `x(1)` of `dx/dt = velocity_fn(x, t)` from `x(0) ~ N(0, I)` (`odeint`)."""
  x0 = jax.random.normal(key, tuple(shape), jnp.float32)
  return odeint(velocity_fn, x0, t0=0.0, t1=1.0, num_steps=num_steps, method=method)


def ode_log_likelihood(
  velocity_fn,
  x,
  *,
  t_data: float = 1.0,
  t_noise: float = 0.0,
  num_steps: int = 100,
  method: str = 'rk4',
  trace: str = 'exact',
  key=None,
) -> tuple[jnp.ndarray, jnp.ndarray]:
  """`log p(x)` `[B]` of the flow `dx/dt = velocity_fn(x, t)` with N(0, I) at `t_noise`.

  Instantaneous change of variables (Chen et al. 2018, "Neural ODEs", theorem 1;
  FFJORD, Grathwohl et al. 2019): `d log p_t(x_t) / dt = -div v(x_t, t)`, so
  `log p(x) = log N(x(t_noise); 0, I) + int_{t_data}^{t_noise} div v dt`, integrated
  together with `x` by `odeint`. The divergence is
  * 'exact': the trace of the per-example Jacobian (`jax.jacfwd`, D forward-mode
    passes per evaluation; for small D, e.g. the 64 of the digits);
  * 'hutchinson': `e^T (dv/dx) e` with one Rademacher `e` per example drawn from `key`
    and kept along the path (FFJORD): an unbiased estimate, one `jvp` per evaluation.
  `velocity_fn` must treat the examples independently (no batch statistics).

  Returns:
    `(log_px [B], z [B, ...])`, `z` the point `x` flows to at `t_noise`.
  """
  if trace not in TRACES:
    raise ValueError(f'trace must be one of {TRACES}, got {trace!r}')
  x = jnp.asarray(x, jnp.float32)
  b, event = x.shape[0], x.shape[1:]
  d = int(np.prod(event))
  if trace == 'hutchinson':
    if key is None:
      raise ValueError("trace='hutchinson' needs a PRNG key")
    probe = jax.random.rademacher(key, x.shape, jnp.float32)

    def dynamics(state, t):
      y, _ = state
      v, jv = jax.jvp(lambda u: velocity_fn(u, t), (y,), (probe,))
      return v, jnp.sum((probe * jv).reshape(b, -1), axis=1)
  else:

    def single(y_flat, t):
      out = velocity_fn(y_flat.reshape((1,) + event), t).reshape(d)
      return out, out

    def dynamics(state, t):
      y, _ = state
      jac, v = jax.vmap(jax.jacfwd(single, has_aux=True), in_axes=(0, None))(y.reshape(b, d), t)
      return v.reshape(y.shape), jnp.trace(jac, axis1=1, axis2=2)

  z, integral = odeint(
    dynamics,
    (x, jnp.zeros((b,), jnp.float32)),
    t0=t_data,
    t1=t_noise,
    num_steps=num_steps,
    method=method,
  )
  log_pz = -0.5 * jnp.sum(jnp.square(z).reshape(b, -1), axis=1) - 0.5 * d * np.log(2 * np.pi)
  return log_pz + integral, z
