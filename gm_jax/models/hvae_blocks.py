"""Building blocks of the hierarchical VAE: normalised convolutions and residual cells.

`Conv` is a convolution with weight normalisation (Salimans & Kingma 2016; NVAE's
default), spectral normalisation (Miyato et al. 2018) or none; each can report its
largest singular value (`spectral_norm_estimate`, into the `INTERMEDIATES` collection)
for NVAE's spectral regulariser (Vahdat & Kautz 2020, Sec. 3.3). `ResidualCell` is
NVAE's cell built from them. Every name here is also importable from
`gm_jax.models.hvae`.
"""

from __future__ import annotations

import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from gm_jax.nn import layers

NORMALIZATIONS = ('weight', 'spectral', 'none')
INTERMEDIATES = 'intermediates'  # collection holding each conv's spectral-norm estimate


def soft_clamp(x, limit: float):
  """`limit * tanh(x / limit)`: identity near 0, bounded by +-limit (NVAE's soft clamp)."""
  return limit * jnp.tanh(x / limit)


def spectral_norm_estimate(w: jnp.ndarray, *, num_iters: int = 10) -> jnp.ndarray:
  """Largest singular value of the matrix `w` `[n, m]` by power iteration.

  The singular vectors are computed without gradient, so `d sigma / d w = u v^T`
  (Miyato et al. 2018, Alg. 1). The start vector is fixed (a cosine, not a PRNG draw,
  which would add a threefry to every layer's compiled graph), so the estimate is a
  deterministic function of `w`; with no state carried between steps, unlike the
  original, it takes a few iterations and slightly underestimates `sigma`.
  """
  w_sg = jax.lax.stop_gradient(w)
  v = jnp.cos(1.7 * jnp.arange(w.shape[1], dtype=w.dtype) + 0.3)
  normalize = lambda a: a / (jnp.linalg.norm(a) + 1e-12)

  def step(_, uv):
    v = normalize(w_sg.T @ uv[0])
    return normalize(w_sg @ v), v

  v = normalize(v)
  # A rolled loop keeps the compiled graph small with dozens of layers.
  u, v = jax.lax.fori_loop(0, num_iters, step, (normalize(w_sg @ v), v))
  return u @ (w @ v)


def fast_normal_init(scale: str = 'fan_in'):
  """Normal initialiser `N(0, 1/fan_in)` (LeCun) or `N(0, 1)` (`scale='unit'`) drawn with
  XLA's RngBitGenerator, seeded from the key flax hands out.

  Why: on CPU, compiling one threefry normal per parameter tensor took ~3 s per
  tensor here (the RBG draw ~0.4 s), and a deep conv stack has dozens of them. The
  draws are still a deterministic function of the init key.
  """

  def init(key, shape, dtype=jnp.float32):
    data = jnp.resize(jax.random.key_data(key).ravel(), (4,)).astype(jnp.uint32)
    z = jax.random.normal(jax.random.wrap_key_data(data, impl='rbg'), shape, dtype)
    if scale == 'unit':
      return z
    return z / math.sqrt(max(1, math.prod(shape[:-1])))

  return init


class Conv(nn.Module):
  """A 'SAME' 2-D convolution with weight, spectral or no normalisation of its kernel.

  Attributes:
    features: output channels.
    kernel_size: square kernel size.
    strides: spatial stride.
    normalization: one of `NORMALIZATIONS`. 'weight': `W = g v / ||v||` per output
      channel, `g` initialised to `scale_init`; 'spectral': `W = scale_init v /
      sigma(v)`; 'none': `W = scale_init v`, `v` LeCun-normal.
    scale_init: initial gain; small values make a residual branch start near zero.

  When the 'intermediates' collection is mutable, sows `sigma`, the estimated largest
  singular value of the effective kernel reshaped to `[k*k*in, out]` (the quantity
  NVAE's spectral regulariser sums).
  """

  features: int
  kernel_size: int = 3
  strides: int = 1
  normalization: str = 'weight'
  scale_init: float = 1.0
  dtype: Any = None  # compute dtype (None: the inputs'); see gm_jax.nn.precision

  @nn.compact
  def __call__(self, x):
    if self.dtype is not None:
      x = x.astype(self.dtype)
    k, cin = self.kernel_size, x.shape[-1]
    v = self.param('kernel', fast_normal_init(), (k, k, cin, self.features))
    if self.normalization == 'weight':
      g = self.param('scale', nn.initializers.constant(self.scale_init), (self.features,))
      norm = jnp.sqrt(jnp.sum(jnp.square(v), axis=(0, 1, 2)) + 1e-12)
      w = v * (g / norm)
    elif self.normalization == 'spectral':
      w = v * (self.scale_init / spectral_norm_estimate(v.reshape(-1, self.features)))
    else:
      w = v * self.scale_init
    if self.is_mutable_collection(INTERMEDIATES):
      self.sow(INTERMEDIATES, 'sigma', spectral_norm_estimate(w.reshape(-1, self.features)))
    b = self.param('bias', nn.initializers.zeros, (self.features,))
    y = jax.lax.conv_general_dilated(
      x,
      w.astype(x.dtype),
      (self.strides, self.strides),
      'SAME',
      dimension_numbers=('NHWC', 'HWIO', 'NHWC'),
    )
    return y + b.astype(y.dtype)


class ResidualCell(nn.Module):
  """`x + 0.1-scaled [swish -> conv3x3 -> swish -> dropout -> conv3x3](x)`.

  NVAE's cells without batch norm (whose running statistics do not fit the pure
  `params`-only family contract) and without squeeze-and-excitation; the residual
  branch starts small, which keeps a deep stack near the identity at init.
  """

  normalization: str = 'weight'
  dropout_rate: float = 0.0

  @nn.compact
  def __call__(self, x, *, train: bool = False):
    c = x.shape[-1]
    h = Conv(c, normalization=self.normalization)(nn.swish(x))
    h = layers.Dropout(self.dropout_rate, deterministic=not train)(nn.swish(h))
    h = Conv(c, normalization=self.normalization, scale_init=0.1)(h)
    return x + h
