"""Autoregressive models: a dilated causal-conv character model and a gated PixelCNN.

Both factorise `p(x) = prod_i p(x_i | x_<i)` (chain rule) and follow one convention:
**the logits at position i are the distribution of x_i given x_<i**. The shift lives
inside the model, so `losses.autoregressive_nll(model.apply(params, x), x)` is the exact
negative log-likelihood. Positions are time steps for text and, for images, pixels in
raster order with the colour channels ordered R -> G -> B inside a pixel.

Besides `__call__`, each model has the per-position methods that
`gm_jax.sampling.sample(method='cached')` uses: they evaluate only what a new position
changes, from per-layer caches of earlier activations (Fast WaveNet, Paine et al. 2016;
Fast PixelCNN++, Ramachandran et al. 2017).
"""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from gm_jax.nn import autoregressive as ar
from gm_jax.nn import layers
from gm_jax.nn.layers import images_to_unit


def _check_int_input(x, name: str, rank: int, num_levels: int, what: str):
  """Dtype/rank checks (always) and a value-range check (when `x` is concrete)."""
  if not isinstance(x, jax.core.Tracer):
    x = jnp.asarray(x)
  if not jnp.issubdtype(x.dtype, jnp.integer):
    raise TypeError(
      f'{name} must be an integer array of {what} in [0, {num_levels}); got dtype {x.dtype}'
    )
  if x.ndim != rank:
    raise ValueError(f'{name} must have rank {rank}; got shape {x.shape}')
  if not isinstance(x, jax.core.Tracer) and x.size:
    values = np.asarray(x)  # NumPy, so no JAX op is traced when x is a captured constant
    lo, hi = int(values.min()), int(values.max())
    if lo < 0 or hi >= num_levels:
      raise ValueError(
        f'{name} values must lie in [0, {num_levels}) ({what}); found values in [{lo}, {hi}]'
      )
  return x


class CausalConvLM(nn.Module):
  """WaveNet-style character model: gated residual blocks of dilated causal convs.

  tokens `int[B, T]` -> embedding -> shift right by one -> for each dilation `d`:
  `g = tanh(a) * sigmoid(b)`, `[a | b] = CausalConv1D(2C, K, d)(h)`, `h += Dense(g)`,
  `skip += Dense(g)` (van den Oord et al. 2016b, "WaveNet", sec. 2.3-2.4) ->
  `elu -> Dense -> elu -> Dense(vocab)`. Receptive field
  `1 + sum_d (K - 1) d` tokens before the predicted one.

  Attributes:
    vocab_size: number of token values.
    channels: residual width `C` (also the embedding and skip width).
    dilations: one gated block per entry.
    kernel_size: taps per causal convolution.
    dropout_rate: dropout on the gated activations (only when `train`).
  """

  vocab_size: int
  channels: int = 64
  dilations: Sequence[int] = (1, 2, 4, 8, 16, 32)
  kernel_size: int = 2
  dropout_rate: float = 0.0

  def setup(self):
    if self.vocab_size < 2:
      raise ValueError(f'vocab_size must be >= 2, got {self.vocab_size}')
    if not self.dilations or any(int(d) < 1 for d in self.dilations):
      raise ValueError(
        f'dilations must be a non-empty list of positive integers; got {self.dilations!r}'
      )
    if self.kernel_size < 2:
      raise ValueError(f'kernel_size must be >= 2, got {self.kernel_size}')
    c = self.channels
    self.embed = nn.Embed(self.vocab_size, c)
    self.convs = [ar.CausalConv1D(2 * c, self.kernel_size, int(d)) for d in self.dilations]
    self.res = [nn.Dense(c) for _ in self.dilations]
    self.skip = [nn.Dense(c) for _ in self.dilations]
    self.out1 = nn.Dense(c)
    self.out2 = nn.Dense(self.vocab_size)
    self.drop = layers.Dropout(self.dropout_rate)

  def __call__(self, tokens: jnp.ndarray, *, train: bool = False) -> jnp.ndarray:
    """tokens: `int[B, T]` in `[0, vocab_size)` -> logits `[B, T, vocab_size]`."""
    tokens = _check_int_input(tokens, 'tokens', 2, self.vocab_size, 'token ids')
    return self.logits_from_embeddings(self.embed(tokens), train=train)

  def logits_from_embeddings(self, e: jnp.ndarray, *, train: bool = False) -> jnp.ndarray:
    """e: `[B, T, channels]` token embeddings -> logits; position t sees `e[:, :t]`."""
    h = ar.shift_right(e)
    skip = 0.0
    for conv, res, skp in zip(self.convs, self.res, self.skip):
      g = self.drop(ar.gate(conv(h)), deterministic=not train)
      h = h + res(g)
      skip = skip + skp(g)
    return self._head(skip)

  def _head(self, skip):
    return self.out2(nn.elu(self.out1(nn.elu(skip))))

  # -- cached decoding (Fast WaveNet) ----------------------------------------------------

  def init_cache(self, batch_size: int) -> list[jnp.ndarray]:
    """Per block, its last `(K - 1) d` inputs `[B, (K-1) d, channels]` (all zeros)."""
    return [
      jnp.zeros((batch_size, (self.kernel_size - 1) * int(d), self.channels))
      for d in self.dilations
    ]

  def decode_step(self, cache, prev_tokens: jnp.ndarray, t):
    """Logits of position `t` given the caches of positions `< t`.

    Args:
      cache: `init_cache` structure holding the block inputs of the last positions.
      prev_tokens: `int[B]`, the tokens at position `t - 1` (ignored at `t = 0`).
      t: position (int32 scalar, may be traced).

    Returns:
      `(logits [B, vocab_size], cache)` with the caches advanced to include `t`.
    """
    h = jnp.where(t > 0, self.embed(prev_tokens), 0.0)  # shift_right's zero at t = 0
    skip = 0.0
    new_cache = []
    for buf, conv, res, skp in zip(cache, self.convs, self.res, self.skip):
      window = jnp.concatenate([buf, h[:, None]], axis=1)
      new_cache.append(window[:, 1:])
      g = ar.gate(conv(window, last=True))
      h = h + res(g)
      skip = skip + skp(g)
    return self._head(skip), new_cache


class PixelCNN(nn.Module):
  """Gated PixelCNN with vertical and horizontal stacks (no blind spot).

  van den Oord et al. 2016a, "Conditional Image Generation with PixelCNN Decoders",
  Fig. 2. The vertical stack at row i sees rows <= i (a `(k//2 + 1, k)` convolution
  over the rows above and the current one) and reaches the horizontal stack only after
  a one-row downward shift, so it carries all of rows < i; the horizontal stack sees
  the current row to the left (a `(1, k//2 + 1)` convolution) and, at the current
  pixel, colour channels before the predicted one (mask A in the first layer, mask B
  after it; `nn.autoregressive.channel_mask`). Gated activations
  `tanh(a) * sigmoid(b)` (eq. 2), residual connections in both stacks after the first
  layer, and an `elu -> 1x1 -> elu -> 1x1` masked head to `C * num_levels` logits
  (ELU as in PixelCNN++: unlike ReLU it never zeroes a gradient exactly, so a zero in
  the Jacobian always means a masked path).

  Attributes:
    num_levels: values per colour channel (17 for digits, 256 for 8-bit photos).
    num_channels: colour channels `C` (1 or 3).
    features: width `F` of each stack (divisible by `C`).
    num_layers: gated layers (the first one included).
    kernel_size: odd `k >= 3`.
    dropout_rate: dropout on the gated activations of both stacks (only when `train`).
  """

  num_levels: int
  num_channels: int = 1
  features: int = 64
  num_layers: int = 6
  kernel_size: int = 3
  dropout_rate: float = 0.0

  def setup(self):
    if self.num_levels < 2:
      raise ValueError(f'num_levels must be >= 2, got {self.num_levels}')
    if self.kernel_size < 3 or self.kernel_size % 2 == 0:
      raise ValueError(f'kernel_size must be odd and >= 3, got {self.kernel_size}')
    if self.num_layers < 1:
      raise ValueError(f'num_layers must be >= 1, got {self.num_layers}')
    if self.features < 1 or self.features % self.num_channels:
      raise ValueError(
        f'features ({self.features}) must be a positive multiple of '
        f'num_channels ({self.num_channels})'
      )
    k, f, c = self.kernel_size, self.features, self.num_channels
    self.v_convs = [
      nn.Conv(2 * f, (k // 2 + 1, k), padding='VALID') for _ in range(self.num_layers)
    ]
    self.vh = [nn.Dense(2 * f) for _ in range(self.num_layers)]
    self.h_convs = [
      ar.MaskedConv2D(2 * f, (1, k // 2 + 1), 'A' if n == 0 else 'B', c, out_repeat=2)
      for n in range(self.num_layers)
    ]
    self.h_outs = [ar.MaskedConv2D(f, (1, 1), 'B', c) for _ in range(self.num_layers)]
    self.head1 = ar.MaskedConv2D(f, (1, 1), 'B', c)
    self.head2 = ar.MaskedConv2D(c * self.num_levels, (1, 1), 'B', c)
    self.drop = layers.Dropout(self.dropout_rate)

  def __call__(self, x: jnp.ndarray, *, train: bool = False) -> jnp.ndarray:
    """x: `int[B, H, W, C]` in `[0, num_levels)` -> logits `[B, H, W, C, num_levels]`."""
    x = _check_int_input(x, 'images', 4, self.num_levels, 'pixel levels')
    if x.shape[-1] != self.num_channels:
      raise ValueError(
        f'images have {x.shape[-1]} channel(s); this PixelCNN was built '
        f'with num_channels={self.num_channels}'
      )
    return self.logits_from_unit(images_to_unit(x, self.num_levels), train=train)

  def logits_from_unit(self, u: jnp.ndarray, *, train: bool = False) -> jnp.ndarray:
    """u: `[B, H, W, C]` images scaled to [-1, 1] -> logits `[B, H, W, C, num_levels]`."""
    r = self.kernel_size // 2
    v_in = h_in = u
    for n in range(self.num_layers):
      v_pre = self.v_convs[n](jnp.pad(v_in, ((0, 0), (r, 0), (r, r), (0, 0))))
      h_pre = self.h_convs[n](jnp.pad(h_in, ((0, 0), (0, 0), (r, 0), (0, 0)))) + self.vh[n](
        ar.shift_down(v_pre)
      )
      v_in, h_in = self._layer_out(n, v_in, v_pre, h_in, h_pre, train)
    return self._head(h_in)

  def _layer_out(self, n, v_in, v_pre, h_in, h_pre, train):
    v_g = self.drop(ar.gate(v_pre), deterministic=not train)
    h_g = self.drop(ar.gate(h_pre), deterministic=not train)
    h_out = self.h_outs[n](h_g)
    if n == 0:  # the input has C channels, not F: no residual
      return v_g, h_out
    return v_in + v_g, h_in + h_out

  def _head(self, h):
    logits = self.head2(nn.elu(self.head1(nn.elu(h))))
    return logits.reshape(logits.shape[:-1] + (self.num_channels, self.num_levels))

  # -- cached decoding (Fast PixelCNN) ---------------------------------------------------

  def init_cache(self, batch_size: int, width: int) -> dict:
    """Zero caches for an image of `width` columns.

    'v': per layer the vertical-stack inputs of the last `k//2` rows
    `[B, k//2, W, F_in]`; 'vrow': per layer the vertical pre-activations of the row
    above `[B, W, 2F]`; 'h': per layer the horizontal-stack inputs of the last `k//2`
    pixels of the current row `[B, k//2, F_in]`.
    """
    r, f, c = self.kernel_size // 2, self.features, self.num_channels
    width_in = [c] + [f] * (self.num_layers - 1)
    return {
      'v': [jnp.zeros((batch_size, r, width, w)) for w in width_in],
      'vrow': [jnp.zeros((batch_size, width, 2 * f)) for _ in width_in],
      'h': [jnp.zeros((batch_size, r, w)) for w in width_in],
    }

  def pixel_logits(self, cache: dict, pixel: jnp.ndarray, j):
    """Logits of the pixel at column `j` of the current row, from the caches.

    Args:
      cache: `init_cache` structure, advanced to this pixel.
      pixel: `int[B, C]`, the pixel's channels sampled so far (later ones are ignored:
        the channel masks give them zero weight).
      j: column (may be traced).

    Returns:
      `(logits [B, C, num_levels], inputs)`: `inputs` are the horizontal-stack inputs
      at this pixel per layer (for `push_pixel`).
    """
    u = images_to_unit(pixel, self.num_levels)
    h_in = u
    inputs = []
    for n in range(self.num_layers):
      inputs.append(h_in)
      window = jnp.concatenate([cache['h'][n], h_in[:, None]], axis=1)[:, None]
      h_pre = self.h_convs[n](window)[:, 0, 0] + self.vh[n](cache['vrow'][n][:, j])
      h_g = ar.gate(h_pre)
      h_out = self.h_outs[n](h_g[:, None, None])[:, 0, 0]
      h_in = h_out if n == 0 else h_in + h_out
    return self._head(h_in[:, None, None])[:, 0, 0], inputs

  def push_pixel(self, cache: dict, pixel: jnp.ndarray, inputs: list) -> dict:
    """Moves the horizontal caches past a finished pixel `int[B, C]`.

    `inputs` from `pixel_logits` on the pixel with all but its last channel filled
    are final for layers >= 1 (their features never see the last channel at the same
    pixel); the first layer's input is the finished pixel itself.
    """
    inputs = [images_to_unit(pixel, self.num_levels)] + list(inputs[1:])
    h = [jnp.concatenate([buf, x[:, None]], axis=1)[:, 1:] for buf, x in zip(cache['h'], inputs)]
    return dict(cache, h=h)

  def end_row(self, cache: dict, row: jnp.ndarray) -> dict:
    """After a finished row `int[B, W, C]`: its vertical stack, fresh horizontal caches."""
    r = self.kernel_size // 2
    v_in = images_to_unit(row, self.num_levels)
    v_cache, vrow = [], []
    for n in range(self.num_layers):
      rows = jnp.concatenate([cache['v'][n], v_in[:, None]], axis=1)  # [B, r + 1, W, F]
      v_cache.append(rows[:, 1:])
      v_pre = self.v_convs[n](jnp.pad(rows, ((0, 0), (0, 0), (r, r), (0, 0))))[:, 0]
      vrow.append(v_pre)
      v_g = ar.gate(v_pre)
      v_in = v_g if n == 0 else v_in + v_g
    return {'v': v_cache, 'vrow': vrow, 'h': [jnp.zeros_like(b) for b in cache['h']]}
