"""Invertible layers for normalising flows (NICE, RealNVP, Glow).

The rational-quadratic spline of neural spline flows is re-exported here from
`gm_jax.nn.splines` (`rational_quadratic_spline`); the MAF / spline flow layers are in
`gm_jax.nn.autoregressive_flows`.

Every layer honours the distrax bijector contract:

* `forward_and_log_det(x, *, train=False) -> (z, log_det)` maps data to latent;
  `log_det` has shape `[B]` and is `log |det dz/dx|` per example.
* `inverse_and_log_det(z) -> (x, log_det)` maps latent to data; its `log_det`
  is `log |det dx/dz|`, so the two log-dets of a round trip sum to zero.

Both are thin wrappers of one `@nn.compact __call__(x, *, inverse, train)`, so a
layer's parameters are created in one place whichever direction runs first.
Parameters that depend on data (ActNorm) are initialised from the batch that
`init` sees, through the initialiser closure: there are no mutable collections,
the whole state is `params`. `train=True` only switches on dropout in the
coupling networks (and then needs a `'dropout'` rng); it never changes the
bijection's structure, and inverses always run with dropout off.

Layers act on `[B, H, W, C]` images unless stated (`AdditiveCoupling` and
`Rescale` are for flat `[B, D]` vectors, as in NICE); `B` may be any batch size.
"""

from __future__ import annotations

from collections.abc import Sequence
import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import scipy.linalg

from gm_jax.nn import layers as nn_layers
from gm_jax.nn.splines import rational_quadratic_spline

Array = jnp.ndarray


def _per_example(value: Array, batch: int) -> Array:
  """Broadcasts a log-det that is the same for every example to `[B]`."""
  return jnp.broadcast_to(value, (batch,))


def _sum_non_batch(x: Array) -> Array:
  return jnp.sum(x, axis=tuple(range(1, x.ndim)))


class Bijector(nn.Module):
  """Base class: subclasses implement `__call__(x, *, inverse, train)`."""

  def forward_and_log_det(self, x: Array, *, train: bool = False):
    """Data -> latent. Returns `(z, log_det)` with `log_det: [B]`."""
    return self(x, inverse=False, train=train)

  def inverse_and_log_det(self, z: Array):
    """Latent -> data. Returns `(x, log_det)`, `log_det` of the inverse, `[B]`."""
    return self(z, inverse=True, train=False)


def run_layers(layers: Sequence[Bijector], x: Array, *, inverse: bool, train: bool):
  """Composes bijectors: in order for the forward pass, reversed for the inverse.

  Returns `(y, log_det)` with the log-dets summed, `[B]`.
  """
  log_det = jnp.zeros(x.shape[:1], x.dtype)
  for layer in reversed(layers) if inverse else layers:
    x, ld = layer(x, inverse=inverse, train=train)
    log_det = log_det + ld
  return x, log_det


class Chain(Bijector):
  """Composition `layers[-1] o ... o layers[0]` (the forward pass runs `layers[0]` first)."""

  layers: Sequence[Bijector]

  def __call__(self, x, *, inverse=False, train=False):
    return run_layers(self.layers, x, inverse=inverse, train=train)


# ---------------------------------------------------------------------------
# Pre-processing.


class Logit(Bijector):
  """`z = logit(alpha + (1 - 2 alpha) x)` for data `x` in `[0, 1]`.

  Dinh et al. 2017 (RealNVP), section 4.1: the squeeze into
  `[alpha, 1 - alpha]` keeps the logit finite at the edges. The log-det is
  counted, `sum log((1 - 2 alpha) / (p (1 - p)))` with `p = alpha + (1 - 2 alpha) x`,
  so the model's density is a density over `x` in `[0, 1]^D`. Dequantised
  discrete data `x = (k + u) / num_levels` add `D log num_levels` to the NLL
  to become a bound on the discrete NLL (see `gm_jax.models.flows`).

  Shapes: any `[B, ...]`.
  """

  alpha: float = 0.05

  def __call__(self, x, *, inverse=False, train=False):
    del train
    a = self.alpha
    log_scale = math.log1p(-2.0 * a)
    if not inverse:
      p = a + (1.0 - 2.0 * a) * x
      z = jnp.log(p) - jnp.log1p(-p)
      log_det = _sum_non_batch(log_scale - jnp.log(p) - jnp.log1p(-p))
      return z, log_det
    log_p, log_1mp = jax.nn.log_sigmoid(x), jax.nn.log_sigmoid(-x)
    y = (jax.nn.sigmoid(x) - a) / (1.0 - 2.0 * a)
    log_det = _sum_non_batch(log_p + log_1mp - log_scale)
    return y, log_det


# ---------------------------------------------------------------------------
# Shape changes (log-det zero).


class Reshape(Bijector):
  """Reshapes the non-batch axes: `[B, *in_shape] <-> [B, *out_shape]`."""

  in_shape: Sequence[int]
  out_shape: Sequence[int]

  def __call__(self, x, *, inverse=False, train=False):
    del train
    shape = self.in_shape if inverse else self.out_shape
    return x.reshape((x.shape[0],) + tuple(shape)), jnp.zeros(x.shape[:1], x.dtype)


class Squeeze(Bijector):
  """Space-to-depth: `[B, H, W, C] -> [B, H/2, W/2, 4C]` (RealNVP, section 3.6).

  Each 2x2 spatial block becomes 4 channels; a permutation, so `log_det = 0`.
  """

  def __call__(self, x, *, inverse=False, train=False):
    del train
    b, h, w, c = x.shape
    if not inverse:
      if h % 2 or w % 2:
        raise ValueError(f'Squeeze needs even H and W; got input shape {x.shape}.')
      y = x.reshape(b, h // 2, 2, w // 2, 2, c).transpose(0, 1, 3, 2, 4, 5)
      y = y.reshape(b, h // 2, w // 2, 4 * c)
    else:
      if c % 4:
        raise ValueError(f'Inverse Squeeze needs C divisible by 4; got {x.shape}.')
      y = x.reshape(b, h, w, 2, 2, c // 4).transpose(0, 1, 3, 2, 4, 5)
      y = y.reshape(b, 2 * h, 2 * w, c // 4)
    return y, jnp.zeros((b,), x.dtype)


class Unsqueeze(Squeeze):
  """Depth-to-space, the inverse of `Squeeze`: `[B, H, W, 4C] -> [B, 2H, 2W, C]`."""

  def __call__(self, x, *, inverse=False, train=False):
    return super().__call__(x, inverse=not inverse, train=train)


class FactorOut(Bijector):
  """Multi-scale factor-out (RealNVP, section 3.6).

  Splits the channels `[B, H, W, C]` into `x[..., :C//2]`, which goes straight
  to the latent, and `x[..., C//2:]`, which `flow` transforms further; the
  latent is their concatenation, so `z` has the shape of `x`. `log_det` is
  `flow`'s. The factored-out half has the N(0, I) base; a learned
  conditional prior on it (Glow's split prior) is an `AffineCoupling` with
  `mask='channel', parity=1` placed before this layer.
  """

  flow: Bijector

  def __call__(self, x, *, inverse=False, train=False):
    c = x.shape[-1]
    out, keep = x[..., : c // 2], x[..., c // 2 :]
    keep, log_det = self.flow(keep, inverse=inverse, train=train)
    return jnp.concatenate([out, keep], axis=-1), log_det


# ---------------------------------------------------------------------------
# NICE (Dinh et al. 2015): additive coupling and diagonal rescaling, flat inputs.


class MLP(nn.Module):
  """ReLU MLP whose last layer starts at zero, so a coupling starts as identity."""

  hidden: int
  num_hidden_layers: int
  out_dim: int
  dropout_rate: float = 0.0

  @nn.compact
  def __call__(self, x, *, train=False):
    for _ in range(self.num_hidden_layers):
      x = nn.relu(nn.Dense(self.hidden)(x))
      if self.dropout_rate:
        x = nn_layers.Dropout(self.dropout_rate, deterministic=not train)(x)
    return nn.Dense(self.out_dim, kernel_init=nn.initializers.zeros)(x)


def _split_parity(x: Array, parity: int):
  """`[B, D] -> ([B, D/2], [B, D/2])`: even and odd features, swapped if `parity`."""
  pairs = x.reshape(x.shape[0], -1, 2)
  return pairs[..., parity], pairs[..., 1 - parity]


def _merge_parity(a: Array, b: Array, parity: int) -> Array:
  pairs = jnp.stack([a, b] if parity == 0 else [b, a], axis=-1)
  return pairs.reshape(a.shape[0], -1)


class AdditiveCoupling(Bijector):
  """NICE additive coupling on `[B, D]` (Dinh et al. 2015, eq. 4), `D` even.

  With `(x_a, x_b)` the even and odd features (swapped when `parity=1`):
  `z_a = x_a`, `z_b = x_b + m(x_a)`. Volume preserving: `log_det = 0`.
  """

  hidden: int = 256
  num_hidden_layers: int = 3
  parity: int = 0
  dropout_rate: float = 0.0

  @nn.compact
  def __call__(self, x, *, inverse=False, train=False):
    if x.ndim != 2 or x.shape[1] % 2:
      raise ValueError(f'AdditiveCoupling needs [B, D] with D even; got {x.shape}.')
    a, b = _split_parity(x, self.parity)
    shift = MLP(self.hidden, self.num_hidden_layers, b.shape[1], self.dropout_rate, name='net')(
      a, train=train and not inverse
    )
    b = b - shift if inverse else b + shift
    return _merge_parity(a, b, self.parity), jnp.zeros(x.shape[:1], x.dtype)


class Rescale(Bijector):
  """NICE diagonal scaling `z = x * exp(s)` (Dinh et al. 2015, section 3.3).

  `s` has the shape of one example; `log_det = sum(s)`. Shapes: `[B, ...]`.
  """

  @nn.compact
  def __call__(self, x, *, inverse=False, train=False):
    del train
    s = self.param('log_scale', nn.initializers.zeros, x.shape[1:], x.dtype)
    ld = _per_example(jnp.sum(s), x.shape[0])
    if inverse:
      return x * jnp.exp(-s), -ld
    return x * jnp.exp(s), ld


# ---------------------------------------------------------------------------
# RealNVP (Dinh et al. 2017): affine coupling with checkerboard / channel masks.


class ConvNet(nn.Module):
  """Glow's coupling network: 3x3 conv, 1x1 conv, zero-initialised 3x3 conv.

  With `num_blocks > 0`, residual blocks `h + conv1x1(relu(conv3x3(relu(h))))`
  (the branch's last convolution zero-initialised, so each block starts as the
  identity) sit between the first 3x3 and the 1x1 convolution: RealNVP's deeper
  ResNet coupling networks (Dinh et al. 2017, section 4.1). `num_blocks=0` is
  the plain three-layer network with the same parameter names.
  """

  hidden: int
  out_channels: int
  dropout_rate: float = 0.0
  num_blocks: int = 0

  @nn.compact
  def __call__(self, x, *, train=False):
    h = nn.Conv(self.hidden, (3, 3))(x)
    for i in range(self.num_blocks):
      r = nn.Conv(self.hidden, (3, 3), name=f'block{i}_conv3x3')(nn.relu(h))
      h = h + nn.Conv(
        self.hidden, (1, 1), kernel_init=nn.initializers.zeros, name=f'block{i}_conv1x1'
      )(nn.relu(r))
    h = nn.relu(nn.Conv(self.hidden, (1, 1))(nn.relu(h)))
    if self.dropout_rate:
      h = nn_layers.Dropout(self.dropout_rate, deterministic=not train)(h)
    return nn.Conv(self.out_channels, (3, 3), kernel_init=nn.initializers.zeros)(h)


def checkerboard(height: int, width: int, parity: int) -> np.ndarray:
  """`[H, W, 1]` float mask, 1 where `(i + j) % 2 == parity` (the conditioning half)."""
  i, j = np.meshgrid(np.arange(height), np.arange(width), indexing='ij')
  return ((i + j) % 2 == parity).astype(np.float32)[..., None]


SCALES = ('tanh', 'sigmoid')  # AffineCoupling's log-scale parametrisations


class AffineCoupling(Bijector):
  """RealNVP affine coupling on `[B, H, W, C]` (Dinh et al. 2017, eqs. 7-9).

  The mask splits the input into a conditioning half `x_a` (kept) and a
  transformed half `x_b`: `z_b = x_b * exp(s(x_a)) + t(x_a)`, `log_det =
  sum s(x_a)`. `mask='checkerboard'` alternates pixels (`parity` picks which
  are kept); `mask='channel'` keeps channels `[:C//2]` when `parity=0` and
  `[C//2:]` when `parity=1`. By default (`scale='tanh'`) the log-scale is soft-clamped,
  `s = clamp * tanh(raw / clamp)`, so one bad step cannot blow the scale up
  (a bounded variant of RealNVP's `scale * tanh`). `scale='sigmoid'` uses
  Glow's released parametrisation instead, `exp(s) = sigmoid(raw + 2)`: the
  coupling never amplifies (`s < 0`), so a chain of couplings cannot send a rare
  input's latent far out (with `'tanh'` each coupling may scale by up to
  `e ** clamp`). `hidden`, `dropout_rate` and `num_blocks` (residual blocks)
  shape the `ConvNet` that computes `s, t`.
  """

  mask: str = 'checkerboard'
  parity: int = 0
  hidden: int = 64
  clamp: float = 2.0
  dropout_rate: float = 0.0
  num_blocks: int = 0
  scale: str = 'tanh'

  @nn.compact
  def __call__(self, x, *, inverse=False, train=False):
    if x.ndim != 4:
      raise ValueError(f'AffineCoupling needs [B, H, W, C]; got {x.shape}.')
    if self.scale not in SCALES:
      raise ValueError(f'scale must be one of {SCALES}; got {self.scale!r}.')
    if not isinstance(self.num_blocks, int) or self.num_blocks < 0:
      raise ValueError(f'num_blocks must be an integer >= 0; got {self.num_blocks!r}.')
    b, h, w, c = x.shape
    train = train and not inverse
    if self.mask == 'checkerboard':
      m = jnp.asarray(checkerboard(h, w, self.parity), x.dtype)
      net_in = jnp.concatenate([x * m, jnp.broadcast_to(m, (b, h, w, 1))], -1)
      raw = ConvNet(self.hidden, 2 * c, self.dropout_rate, self.num_blocks, name='net')(
        net_in, train=train
      )
      s = self._log_scale(raw[..., :c]) * (1.0 - m)
      t = raw[..., c:] * (1.0 - m)
      if inverse:
        y = (x - t) * jnp.exp(-s)
      else:
        y = x * jnp.exp(s) + t
      log_det = _sum_non_batch(s)
    elif self.mask == 'channel':
      if c < 2:
        raise ValueError(f'channel mask needs C >= 2; got input shape {x.shape}.')
      k = c // 2
      if self.parity == 0:
        x_a, x_b = x[..., :k], x[..., k:]
      else:
        x_a, x_b = x[..., c - k :], x[..., : c - k]
      cb = x_b.shape[-1]
      raw = ConvNet(self.hidden, 2 * cb, self.dropout_rate, self.num_blocks, name='net')(
        x_a, train=train
      )
      s, t = self._log_scale(raw[..., :cb]), raw[..., cb:]
      y_b = (x_b - t) * jnp.exp(-s) if inverse else x_b * jnp.exp(s) + t
      y = jnp.concatenate([x_a, y_b], -1) if self.parity == 0 else jnp.concatenate([y_b, x_a], -1)
      log_det = _sum_non_batch(s)
    else:
      raise ValueError(f"mask must be 'checkerboard' or 'channel'; got {self.mask!r}.")
    return y, (-log_det if inverse else log_det)

  def _log_scale(self, raw):
    """`s` from the network's raw output, by `self.scale` (see the class docstring)."""
    if self.scale == 'sigmoid':
      return jax.nn.log_sigmoid(raw + 2.0)
    return self.clamp * jnp.tanh(raw / self.clamp)


# ---------------------------------------------------------------------------
# Glow (Kingma & Dhariwal 2018): ActNorm and invertible 1x1 convolution.


class ActNorm(Bijector):
  """Per-channel affine `z = (x + bias) * exp(log_scale)` (Glow, section 3.1).

  Data-dependent initialisation: on the batch seen by `init` (forward
  direction), `bias = -mean` and `log_scale = -log(std + eps)` over all axes but
  the channel axis, so the output starts with zero mean and unit variance per
  channel. `log_det = (H * W) * sum(log_scale)`. Shapes: `[B, ..., C]`.
  """

  eps: float = 1e-6

  @nn.compact
  def __call__(self, x, *, inverse=False, train=False):
    del train
    axes = tuple(range(x.ndim - 1))
    c = x.shape[-1]

    def init_bias(key):
      del key
      return jnp.zeros((c,), x.dtype) if inverse else -jnp.mean(x, axes)

    def init_log_scale(key):
      del key
      if inverse:
        return jnp.zeros((c,), x.dtype)
      return -jnp.log(jnp.std(x, axes) + self.eps)

    bias = self.param('bias', init_bias)
    log_scale = self.param('log_scale', init_log_scale)
    num_pixels = math.prod(x.shape[1:-1])
    ld = _per_example(num_pixels * jnp.sum(log_scale), x.shape[0])
    if inverse:
      return x * jnp.exp(-log_scale) - bias, -ld
    return (x + bias) * jnp.exp(log_scale), ld


class Invertible1x1Conv(Bijector):
  """Invertible 1x1 convolution in LU form (Glow, section 3.2, eq. 10).

  `W = P L (U + diag(sign * exp(log_s)))`, `z[b, h, w] = W x[b, h, w]`, with
  `P` a permutation and `sign` fixed at initialisation, `L` unit lower- and
  `U` strictly upper-triangular learned. `log_det = (H * W) * sum(log_s)`.
  `W` starts as a random rotation drawn with NumPy from `seed`, so `P` and
  `sign` are reproducible constants, not state. Shapes: `[B, ..., C]`.
  """

  seed: int = 0

  @nn.compact
  def __call__(self, x, *, inverse=False, train=False):
    del train
    c = x.shape[-1]
    rotation = np.linalg.qr(np.random.RandomState(self.seed).randn(c, c))[0]
    perm, lower0, upper0 = scipy.linalg.lu(rotation)
    s0 = np.diag(upper0)
    dtype = x.dtype
    lower_p = self.param('lower', lambda k: jnp.asarray(np.tril(lower0, -1), dtype))
    upper_p = self.param('upper', lambda k: jnp.asarray(np.triu(upper0, 1), dtype))
    log_s = self.param('log_s', lambda k: jnp.asarray(np.log(np.abs(s0)), dtype))
    eye = jnp.eye(c, dtype=dtype)
    lower = jnp.tril(lower_p, -1) + eye
    upper = jnp.triu(upper_p, 1) + jnp.diag(jnp.asarray(np.sign(s0), dtype) * jnp.exp(log_s))
    perm = jnp.asarray(perm, dtype)
    num_pixels = math.prod(x.shape[1:-1])
    ld = _per_example(num_pixels * jnp.sum(log_s), x.shape[0])
    if not inverse:
      w = perm @ lower @ upper
      return x @ w.T, ld
    # W^-1 = U^-1 L^-1 P^T, by triangular solves (exact, no general inverse).
    l_inv_pt = jax.scipy.linalg.solve_triangular(lower, perm.T, lower=True, unit_diagonal=True)
    w_inv = jax.scipy.linalg.solve_triangular(upper, l_inv_pt, lower=False)
    return x @ w_inv.T, -ld


__all__ = (
  'ActNorm',
  'AdditiveCoupling',
  'AffineCoupling',
  'Bijector',
  'Chain',
  'ConvNet',
  'FactorOut',
  'Invertible1x1Conv',
  'Logit',
  'MLP',
  'Rescale',
  'Reshape',
  'Squeeze',
  'Unsqueeze',
  'checkerboard',
  'rational_quadratic_spline',
  'run_layers',
)
