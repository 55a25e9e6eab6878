"""Per-example objectives of diffusion models and flow matching.

Both are regressions of a network output onto a target that the caller built from
data and noise; they never call a model. One value per example (summed over the
other axes), keyword-only hyper-parameters, float32 reductions.

Notation (Kingma et al. 2021, "Variational Diffusion Models", VDM): a variance-
preserving forward process `z_t = alpha_t x + sigma_t eps`, `eps ~ N(0, I)`, with
`alpha_t^2 = sigmoid(lambda_t)`, `sigma_t^2 = sigmoid(-lambda_t)`; `lambda_t =
log(alpha_t^2 / sigma_t^2)` is the log signal-to-noise ratio, decreasing in `t`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from gm_jax.losses import _shapes

PREDICTIONS = ('eps', 'v')
WEIGHTINGS = ('elbo', 'sigmoid')


def _check_prediction(prediction_type: str) -> None:
  if prediction_type not in PREDICTIONS:
    raise ValueError(f'prediction_type must be one of {PREDICTIONS}; got {prediction_type!r}.')


def _per_example(name: str, value: jnp.ndarray, batch: int) -> jnp.ndarray:
  value = jnp.asarray(value)
  if value.shape not in ((), (batch,)):
    raise ValueError(f'{name} must be a scalar or have shape [B] = ({batch},); got {value.shape}.')
  return jnp.broadcast_to(value, (batch,))


def _same_shapes(x, **arrays):
  """`(*arrays, x)` as JAX arrays; a ValueError names any whose shape is not x's."""
  x = jnp.asarray(x)
  _shapes.batch_rank_check('x', x.shape)
  out = []
  for name, a in arrays.items():
    a = jnp.asarray(a)
    if a.shape != x.shape:
      raise ValueError(f'{name} of shape {a.shape} must have the shape of x, {x.shape}.')
    out.append(a)
  return (*out, x)


@_shapes.float32_reductions
def diffusion_loss(
  prediction: jnp.ndarray,
  x: jnp.ndarray,
  noise: jnp.ndarray,
  log_snr: jnp.ndarray,
  d_log_snr_dt: jnp.ndarray | None = None,
  *,
  prediction_type: str = 'eps',
  weighting: str = 'elbo',
  sigmoid_bias: float = 2.0,
) -> jnp.ndarray:
  """Weighted noise-regression loss of a diffusion model at log-SNR `log_snr`.

  `0.5 * w(lambda) * (-d lambda / dt) * ||eps - eps_hat||^2`, summed over every
  non-batch axis. With `weighting='elbo'` (`w = 1`) and `d_log_snr_dt` given, this
  is the continuous-time diffusion term of the VDM bound (Kingma et al. 2021, eq. 17,
  `-0.5 gamma'(t) ||eps - eps_hat||^2` with `gamma = -lambda`): its expectation over
  `t ~ U[0, 1]` and `eps` is the bound's diffusion loss in nats. With
  `weighting='sigmoid'`, `w = sigmoid(sigmoid_bias - lambda)` (Kingma & Gao 2023,
  "Understanding Diffusion Objectives", the sigmoid weighting). Without
  `d_log_snr_dt` the time-derivative factor is 1 (a loss per noise level).

  `prediction_type` says what `prediction` estimates:
  * `'eps'`: the noise, `eps_hat = prediction`;
  * `'v'`: `v = alpha eps - sigma x` (Salimans & Ho 2022); then
    `eps_hat = sigma z + alpha v_hat` with `z = alpha x + sigma eps`, so
    `||eps - eps_hat||^2 = alpha^2 ||v - v_hat||^2`.

  Args:
    prediction: network output, `[B, ...]`.
    x: clean data `[B, ...]` (on the scale the forward process uses).
    noise: the `eps` of `z = alpha x + sigma eps`, `[B, ...]`.
    log_snr: `[B]` (or scalar) `lambda` at which `z` was drawn.
    d_log_snr_dt: `[B]` (or scalar) `d lambda / dt` (negative), or None.
    prediction_type: `'eps'` or `'v'` (keyword-only, as the rest).
    weighting: `'elbo'` or `'sigmoid'`.
    sigmoid_bias: the `b` of the sigmoid weighting.

  Returns:
    `[B]` per-example losses (nats for `weighting='elbo'` with `d_log_snr_dt`).
  """
  _check_prediction(prediction_type)
  if weighting not in WEIGHTINGS:
    raise ValueError(f'weighting must be one of {WEIGHTINGS}; got {weighting!r}.')
  prediction, noise, x = _same_shapes(x, prediction=prediction, noise=noise)
  batch = x.shape[0]
  lam = _per_example('log_snr', log_snr, batch)
  alpha, sigma = (jnp.sqrt(jax.nn.sigmoid(lam)), jnp.sqrt(jax.nn.sigmoid(-lam)))
  expand = lambda a: a.reshape((batch,) + (1,) * (x.ndim - 1))
  if prediction_type == 'eps':
    err = _shapes.sum_non_batch(jnp.square(noise - prediction))
  else:
    v = expand(alpha) * noise - expand(sigma) * x
    err = jnp.square(alpha) * _shapes.sum_non_batch(jnp.square(v - prediction))
  weight = jnp.ones_like(lam)
  if weighting == 'sigmoid':
    weight = jax.nn.sigmoid(sigmoid_bias - lam)
  if d_log_snr_dt is not None:
    weight = weight * -_per_example('d_log_snr_dt', d_log_snr_dt, batch)
  return 0.5 * weight * err


@_shapes.float32_reductions
def flow_matching_loss(
  velocity: jnp.ndarray, noise: jnp.ndarray, x: jnp.ndarray, *, sigma_min: float = 0.0
) -> jnp.ndarray:
  """Conditional flow-matching loss of the optimal-transport path, per example.

  The path from `noise` (`t = 0`) to data `x` (`t = 1`) is
  `x_t = (1 - (1 - sigma_min) t) noise + t x` with the constant velocity
  `u = x - (1 - sigma_min) noise` (Lipman et al. 2023, "Flow Matching for Generative
  Modeling", eqs. 20-23; with `sigma_min = 0` the rectified flow of Liu et al. 2023).
  The loss is `||velocity - u||^2` summed over the non-batch axes, where `velocity`
  is the network's `v(x_t, t)`.

  Args:
    velocity: predicted velocity `[B, ...]` at the path point `x_t`.
    noise: `[B, ...]` draw of the `t = 0` distribution (N(0, I)).
    x: `[B, ...]` data (`t = 1`).
    sigma_min: width of the path's end at the data (keyword-only), in `[0, 1)`.

  Returns:
    `[B]` squared errors.
  """
  if not 0.0 <= sigma_min < 1.0:
    raise ValueError(f'sigma_min must be in [0, 1); got {sigma_min}.')
  velocity, noise, x = _same_shapes(x, velocity=velocity, noise=noise)
  target = x - (1.0 - sigma_min) * noise
  return _shapes.sum_non_batch(jnp.square(velocity - target))
