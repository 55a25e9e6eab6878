"""Inverse autoregressive flow (Kingma et al. 2016) for a VAE's posterior.

The posterior sample starts as the diagonal Gaussian's, `z_0 = mu + sigma_0 * eps`, and
goes through `num_steps` IAF steps (Kingma et al. 2016, section 4, the numerically
stable "LSTM-type" update):

    [m_t, s_t] = MADE_t(z_{t-1}, h),   sigma_t = sigmoid(s_t + forget_bias),
    z_t = sigma_t * z_{t-1} + (1 - sigma_t) * m_t,

with `h` a context from the encoder. Each step is autoregressive in `z_{t-1}`, so its
Jacobian is triangular with diagonal `sigma_t`, and

    log q(z_T | x) = sum_i [log N(eps_i; 0, 1) - log sigma_0,i] - sum_t sum_i log sigma_t,i

(`iaf_log_q`). Sampling and the density of one's own sample take one MADE pass per step;
only the inverse (the density of an arbitrary `z_T`) takes `D` passes per step. Steps
alternate the MADE's order (natural, reversed) so each dimension is conditioned on
both sides across steps. Per example or batched: everything acts on the last axis.
"""

from __future__ import annotations

from collections.abc import Sequence
import math

import flax.linen as nn
import jax
import jax.numpy as jnp

from gm_jax.nn import made as made_lib

Array = jnp.ndarray


class IAFStep(nn.Module):
  """One IAF step on `z: [..., D]`: returns `(z_t, log_det)`, `log_det = sum log sigma_t`.

  Attributes:
    hidden_sizes: the MADE's hidden layers.
    reverse: use the reversed order `D..1` instead of `1..D`.
    forget_bias: added to `s_t`; Kingma et al. start with `sigma_t` near 1 (the step
      near the identity): with the zero-initialised MADE output, `sigma_t =
      sigmoid(forget_bias)` at first.
  """

  hidden_sizes: Sequence[int] = (64, 64)
  reverse: bool = False
  forget_bias: float = 2.0

  def _made(self, dim: int):
    order = tuple(range(dim, 0, -1)) if self.reverse else None
    return made_lib.MADE(tuple(self.hidden_sizes), 2, order=order, name='made')

  @nn.compact
  def __call__(self, z: Array, context: Array | None = None, *, inverse: bool = False):
    """`z: [..., D]`, `context: [..., C]` or None.

    Returns `(z_t, log_det)` (`log_det: [...]`, `log |det dz_t / dz|`); with `inverse`,
    `z` is the step's output and the result is its input and `log |det dz / dz_t|`.
    """
    made = self._made(z.shape[-1])
    if not inverse:
      out = made(z, context)
      log_sigma = jax.nn.log_sigmoid(out[..., 1] + self.forget_bias)
      sigma = jnp.exp(log_sigma)
      return sigma * z + (1.0 - sigma) * out[..., 0], jnp.sum(log_sigma, axis=-1)

    def invert(y, out):
      sigma = jax.nn.sigmoid(out[..., 1] + self.forget_bias)
      return (y - (1.0 - sigma) * out[..., 0]) / sigma

    x, out = made_lib.invert_autoregressive(made, z, invert, context)
    return x, -jnp.sum(jax.nn.log_sigmoid(out[..., 1] + self.forget_bias), axis=-1)


class IAF(nn.Module):
  """`num_steps` IAF steps with alternating orders: `z_0 -> (z_T, sum of log-dets)`."""

  num_steps: int = 2
  hidden_sizes: Sequence[int] = (64, 64)
  forget_bias: float = 2.0

  def setup(self):
    if not isinstance(self.num_steps, int) or self.num_steps < 0:
      raise ValueError(f'num_steps must be an integer >= 0; got {self.num_steps!r}.')
    self.steps = [
      IAFStep(tuple(self.hidden_sizes), reverse=bool(t % 2), forget_bias=self.forget_bias)
      for t in range(self.num_steps)
    ]

  def __call__(self, z: Array, context: Array | None = None):
    """`z: [..., D]` (the Gaussian sample), `context: [..., C]` or None.

    Returns `(z_T [..., D], log_det [...])` with `log_det = log |det dz_T / dz_0|`.
    """
    log_det = jnp.zeros(z.shape[:-1], z.dtype)
    for step in self.steps:
      z, ld = step(z, context)
      log_det = log_det + ld
    return z, log_det

  def inverse(self, z: Array, context: Array | None = None):
    """`z_T -> (z_0, log |det dz_0 / dz_T|)`, `D` MADE passes per step."""
    log_det = jnp.zeros(z.shape[:-1], z.dtype)
    for step in reversed(self.steps):
      z, ld = step(z, context, inverse=True)
      log_det = log_det + ld
    return z, log_det


def iaf_log_q(eps: Array, log_std: Array, log_det: Array) -> Array:
  """`log q(z_T | x)` of the IAF posterior sample, per example.

  Args:
    eps: `[..., D]`, the standard normal draw (`z_0 = mean + exp(log_std) * eps`).
    log_std: `[..., D]`, the diagonal Gaussian's log standard deviations.
    log_det: `[...]`, `log |det dz_T / dz_0|` from `IAF`.

  Returns:
    `[...]`: `sum log N(eps; 0, I) - sum log_std - log_det` (change of variables).
  """
  log_normal = -0.5 * (eps**2 + math.log(2.0 * math.pi))
  return jnp.sum(log_normal - log_std, axis=-1) - log_det


__all__ = ('IAF', 'IAFStep', 'iaf_log_q')
