"""Autoregressive and spline flow layers: MAF and neural spline flow steps.

Bijectors with the contract of `gm_jax.nn.flows` (`forward_and_log_det` maps data to
latent, log-dets per example `[B]`):

* `Permute`: a fixed permutation of the features of `[B, D]` (reversal or a seeded
  random one), placed between autoregressive steps so each sees a new order.
* `MaskedAffineAutoregressive`: one MAF step (Papamakarios et al. 2017, eqs. 4-5) on
  `[B, D]`: `z_i = (x_i - mu_i(x_<i)) exp(-s_i(x_<i))`. Density in one MADE pass,
  inverse (sampling) in `D` passes.
* `MaskedSplineAutoregressive`: the autoregressive neural spline flow step
  (Durkan et al. 2019, RQ-NSF (AR)): `z_i = g(x_i; theta_i(x_<i))` with `g` the
  rational-quadratic spline; inverse in `D` passes.
* `SplineCoupling`: the coupling neural spline flow step (RQ-NSF (C)) on
  `[B, H, W, C]` with RealNVP's checkerboard or channel masks.

The inverses of the autoregressive steps take `D` MADE passes
(`gm_jax.nn.made.invert_autoregressive`).
"""

from __future__ import annotations

from collections.abc import Sequence
import math

import flax.linen as nn
import jax.numpy as jnp
import numpy as np

from gm_jax.nn import flows as fl
from gm_jax.nn import made as made_lib
from gm_jax.nn import splines

Array = jnp.ndarray

PERMUTATIONS = ('reverse', 'random')


def _check_flat(name: str, x: Array) -> None:
  if x.ndim != 2:
    raise ValueError(f'{name} needs flat inputs [B, D]; got shape {x.shape}.')


def permutation(num_features: int, kind: str, seed: int = 0) -> np.ndarray:
  """The index array `[D]` of `Permute(kind, seed)`: `y = x[:, perm]`."""
  if kind == 'reverse':
    return np.arange(num_features)[::-1].copy()
  if kind == 'random':
    return np.random.RandomState(seed).permutation(num_features)
  raise ValueError(f'permutation must be one of {PERMUTATIONS}; got {kind!r}.')


class Permute(fl.Bijector):
  """`y = x[:, perm]` on `[B, D]`, `perm` fixed by `kind` and `seed`; `log_det = 0`."""

  kind: str = 'reverse'
  seed: int = 0

  def __call__(self, x, *, inverse=False, train=False):
    del train
    _check_flat('Permute', x)
    perm = permutation(x.shape[1], self.kind, self.seed)
    index = np.argsort(perm) if inverse else perm
    return x[:, index], jnp.zeros(x.shape[:1], x.dtype)


class MaskedAffineAutoregressive(fl.Bijector):
  """One MAF step (Papamakarios et al. 2017) on `[B, D]`.

  `(mu, raw) = MADE(x)`, `s = clamp * tanh(raw / clamp)` (a soft clamp of the
  log-scale, as `AffineCoupling` does: one bad step cannot blow the scale up),
  `z = (x - mu) exp(-s)`, `log_det = -sum s`. Starts as the identity (zero MADE output).
  `dropout_rate`: dropout in the MADE in training (forward direction only).
  """

  hidden_sizes: Sequence[int] = (256, 256)
  clamp: float = 2.0
  dropout_rate: float = 0.0

  @nn.compact
  def __call__(self, x, *, inverse=False, train=False):
    _check_flat('MaskedAffineAutoregressive', x)
    made = made_lib.MADE(tuple(self.hidden_sizes), 2, dropout_rate=self.dropout_rate, name='made')
    log_scale = lambda raw: self.clamp * jnp.tanh(raw / self.clamp)
    if not inverse:
      params = made(x, train=train)
      s = log_scale(params[..., 1])
      return (x - params[..., 0]) * jnp.exp(-s), -jnp.sum(s, axis=1)
    invert = lambda z, p: z * jnp.exp(log_scale(p[..., 1])) + p[..., 0]
    y, params = made_lib.invert_autoregressive(made, x, invert)
    return y, jnp.sum(log_scale(params[..., 1]), axis=1)


def _spline(x, raw, *, num_bins: int, tail_bound: float, inverse: bool):
  """The spline of raw network outputs `raw: [..., 3K - 1]` at `x: [...]`."""
  w, h, d = splines.split_spline_params(raw, num_bins)
  # Shift the derivatives so a zero network output is the identity (uniform bins, unit
  # derivatives, as the reference parametrisation's boundary knots have).
  d = d + math.log(math.expm1(1.0 - 1e-3))
  return splines.rational_quadratic_spline(x, w, h, d, inverse=inverse, tail_bound=tail_bound)


def _check_bins(num_bins) -> None:
  if not isinstance(num_bins, int) or num_bins < 2:
    raise ValueError(f'num_bins must be an integer >= 2; got {num_bins!r}.')


class MaskedSplineAutoregressive(fl.Bijector):
  """Autoregressive rational-quadratic spline step (Durkan et al. 2019) on `[B, D]`.

  `z_i = g(x_i; theta_i(x_<i))`, `theta = MADE(x)` with `3K - 1` parameters per
  dimension; identity outside `[-tail_bound, tail_bound]`. Starts as the identity.
  """

  hidden_sizes: Sequence[int] = (256, 256)
  num_bins: int = 8
  tail_bound: float = 3.0
  dropout_rate: float = 0.0

  def _spline(self, x, raw, *, inverse):
    return _spline(x, raw, num_bins=self.num_bins, tail_bound=self.tail_bound, inverse=inverse)

  @nn.compact
  def __call__(self, x, *, inverse=False, train=False):
    _check_flat('MaskedSplineAutoregressive', x)
    _check_bins(self.num_bins)
    made = made_lib.MADE(
      tuple(self.hidden_sizes),
      splines.num_spline_params(self.num_bins),
      dropout_rate=self.dropout_rate,
      name='made',
    )
    if not inverse:
      y, ld = self._spline(x, made(x, train=train), inverse=False)
      return y, jnp.sum(ld, axis=1)
    invert = lambda z, p: self._spline(z, p, inverse=True)[0]
    y, params = made_lib.invert_autoregressive(made, x, invert)
    return y, jnp.sum(self._spline(x, params, inverse=True)[1], axis=1)


class SplineCoupling(fl.Bijector):
  """Rational-quadratic spline coupling (Durkan et al. 2019) on `[B, H, W, C]`.

  As `AffineCoupling`: the mask splits the input into a kept half `x_a` and a
  transformed half `x_b`, `z_b = g(x_b; theta(x_a))` elementwise with `theta` from a
  `ConvNet` (`3K - 1` values per transformed scalar), `log_det = sum log g'`.
  `mask='checkerboard'` (parity picks the kept pixels) or `'channel'` (keeps channels
  `[:C//2]` when `parity=0`, `[C//2:]` when `parity=1`). Starts as the identity.
  """

  mask: str = 'channel'
  parity: int = 0
  hidden: int = 64
  num_blocks: int = 0
  dropout_rate: float = 0.0
  num_bins: int = 8
  tail_bound: float = 3.0

  def _spline(self, x, raw, *, inverse):
    return _spline(x, raw, num_bins=self.num_bins, tail_bound=self.tail_bound, inverse=inverse)

  @nn.compact
  def __call__(self, x, *, inverse=False, train=False):
    if x.ndim != 4:
      raise ValueError(f'SplineCoupling needs [B, H, W, C]; got {x.shape}.')
    _check_bins(self.num_bins)
    b, h, w, c = x.shape
    p = splines.num_spline_params(self.num_bins)
    train = train and not inverse
    if self.mask == 'checkerboard':
      m = jnp.asarray(fl.checkerboard(h, w, self.parity), x.dtype)
      net_in = jnp.concatenate([x * m, jnp.broadcast_to(m, (b, h, w, 1))], -1)
      raw = fl.ConvNet(self.hidden, c * p, self.dropout_rate, self.num_blocks, name='net')(
        net_in, train=train
      )
      y, ld = self._spline(x, raw.reshape(b, h, w, c, p), inverse=inverse)
      y = m * x + (1.0 - m) * y
      ld = ld * (1.0 - m)
    elif self.mask == 'channel':
      if c < 2:
        raise ValueError(f'channel mask needs C >= 2; got input shape {x.shape}.')
      k = c // 2
      x_a, x_b = (
        (x[..., :k], x[..., k:]) if self.parity == 0 else (x[..., c - k :], x[..., : c - k])
      )
      cb = x_b.shape[-1]
      raw = fl.ConvNet(self.hidden, cb * p, self.dropout_rate, self.num_blocks, name='net')(
        x_a, train=train
      )
      y_b, ld = self._spline(x_b, raw.reshape(b, h, w, cb, p), inverse=inverse)
      y = jnp.concatenate([x_a, y_b], -1) if self.parity == 0 else jnp.concatenate([y_b, x_a], -1)
    else:
      raise ValueError(f"mask must be 'checkerboard' or 'channel'; got {self.mask!r}.")
    return y, jnp.sum(ld, axis=(1, 2, 3))


__all__ = (
  'MaskedAffineAutoregressive',
  'MaskedSplineAutoregressive',
  'PERMUTATIONS',
  'Permute',
  'SplineCoupling',
  'permutation',
)
