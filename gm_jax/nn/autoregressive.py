"""Causal building blocks for autoregressive models: shifts, masks, causal convolutions.

Both layers here can run on a whole sequence/image (training, naive sampling) or on a
window of cached inputs that ends at the current position (fast cached sampling), with
the same parameters: the window form is what Fast WaveNet (Paine et al. 2016) and Fast
PixelCNN++ (Ramachandran et al. 2017) evaluate per generated position.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from gm_jax.nn import layers
from gm_jax.nn import precision


def shift_right(x: jnp.ndarray) -> jnp.ndarray:
  """`[B, T, ...]` -> the same shape with `out[:, t] = x[:, t - 1]` and zeros at t = 0."""
  pad = [(0, 0)] * x.ndim
  pad[1] = (1, 0)
  return jnp.pad(x, pad)[:, :-1]


def shift_down(x: jnp.ndarray) -> jnp.ndarray:
  """`[B, H, W, C]` -> rows moved down by one (`out[:, i] = x[:, i - 1]`, zeros in row 0)."""
  return shift_right(x)


def channel_groups(num_features: int, num_channels: int, *, repeat: int = 1) -> np.ndarray:
  """Colour channel (0..C-1) that each of `num_features` features belongs to.

  Features are split into `num_channels` contiguous blocks (PixelCNN, van den Oord
  et al. 2016a, Fig. 2: R features, then G, then B). With `repeat` > 1 the layout is
  tiled `repeat` times, e.g. the two halves of a gated layer's `[tanh | sigmoid]`
  pre-activations each follow it.
  """
  block = num_features // repeat
  if num_features % repeat or block % num_channels:
    raise ValueError(
      f'{num_features} features do not split into {repeat} x {num_channels} colour-channel groups'
    )
  return np.tile(np.arange(block) * num_channels // block, repeat)


def channel_mask(in_groups: np.ndarray, out_groups: np.ndarray, *, mask_type: str) -> np.ndarray:
  """`[F_in, F_out]` 0/1 mask of which features may see which at the same pixel.

  Mask 'A' (first layer): output group g sees input groups < g, so a channel never
  sees itself; mask 'B' (later layers): groups <= g.
  """
  if mask_type not in ('A', 'B'):
    raise ValueError(f"mask_type must be 'A' or 'B', got {mask_type!r}")
  if mask_type == 'A':
    allowed = in_groups[:, None] < out_groups[None, :]
  else:
    allowed = in_groups[:, None] <= out_groups[None, :]
  return allowed.astype(np.float32)


class CausalConv1D(nn.Module):
  """Dilated causal 1-D convolution: `out[t]` sees `x[t], x[t - d], ..., x[t - (K-1) d]`.

  Attributes:
    features: output channels.
    kernel_size: taps `K`.
    dilation: spacing `d` between taps (WaveNet, van den Oord et al. 2016b).
  """

  features: int
  kernel_size: int = 2
  dilation: int = 1
  dtype: Any = None  # compute dtype (None: the inputs'); see gm_jax.nn.precision

  @property
  def window(self) -> int:
    """Past-and-present inputs a position needs: `(K - 1) * d + 1`."""
    return (self.kernel_size - 1) * self.dilation + 1

  @nn.compact
  def __call__(self, x: jnp.ndarray, *, last: bool = False) -> jnp.ndarray:
    """The convolution over a whole sequence, or its output at the newest position.

    Args:
      x: `[B, T, F_in]`; with `last=True` a window `[B, (K - 1) d + 1, F_in]` of the
        layer's inputs at positions `t - (K-1) d, ..., t` (zeros before the start).
      last: compute only the output at the window's last position (cached decoding).

    Returns:
      `[B, T, features]` (zeros left-pad the sequence), or `[B, features]` with
      `last=True`, equal to the full output at position `t`.
    """
    kernel = self.param(
      'kernel', nn.initializers.lecun_normal(), (self.kernel_size, x.shape[-1], self.features)
    )
    bias = self.param('bias', nn.initializers.zeros_init(), (self.features,))
    x, kernel, bias = precision.in_dtype(self.dtype, x, kernel, bias)
    if last:
      taps = x[:, :: self.dilation]  # [B, K, F_in]
      return jnp.einsum('bki,kio->bo', taps, kernel) + bias
    y = jax.lax.conv_general_dilated(
      x,
      kernel,
      window_strides=(1,),
      padding=[(self.window - 1, 0)],
      rhs_dilation=(self.dilation,),
      dimension_numbers=('NWC', 'WIO', 'NWC'),
    )
    return y + bias


class MaskedConv2D(nn.Module):
  """VALID 2-D convolution whose last tap is the current pixel, channel-masked there.

  The caller pads the input so that the bottom-right tap of the kernel lands on the
  pixel being predicted and every other tap on an earlier pixel in raster order (e.g.
  a `(1, k)` kernel over the current row's left context; `(1, 1)` for per-pixel
  layers). Only the last tap is masked, by `channel_mask` between the input's and
  output's colour-channel groups, which orders R -> G -> B inside a pixel.

  Attributes:
    features: output channels.
    kernel_size: `(kh, kw)`.
    mask_type: 'A' (the current pixel's channel never sees itself) or 'B'.
    num_channels: colour channels `C` of the image.
    out_repeat: the output's channel layout is tiled this often (2 for gated layers).
  """

  features: int
  kernel_size: tuple[int, int]
  mask_type: str
  num_channels: int
  out_repeat: int = 1
  dtype: Any = None  # compute dtype (None: the inputs'); see gm_jax.nn.precision

  @nn.compact
  def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
    """x: `[B, H + kh - 1, W + kw - 1, F_in]` (pre-padded) -> `[B, H, W, features]`."""
    kh, kw = self.kernel_size
    f_in = x.shape[-1]
    kernel = self.param('kernel', nn.initializers.lecun_normal(), (kh, kw, f_in, self.features))
    bias = self.param('bias', nn.initializers.zeros_init(), (self.features,))
    centre = channel_mask(
      channel_groups(f_in, self.num_channels),
      channel_groups(self.features, self.num_channels, repeat=self.out_repeat),
      mask_type=self.mask_type,
    )
    mask = np.ones((kh, kw, f_in, self.features), np.float32)
    mask[kh - 1, kw - 1] = centre
    x, kernel, bias = precision.in_dtype(self.dtype, x, kernel * mask, bias)
    if (kh, kw) == (1, 1):
      y = layers.pointwise_conv(x, kernel)
    elif kh * kw <= 2:  # see layers.conv_tapwise_grad: faster for one or two taps
      y = layers.conv_tapwise_grad(x, kernel)
    else:
      y = jax.lax.conv_general_dilated(
        x,
        kernel,
        window_strides=(1, 1),
        padding='VALID',
        dimension_numbers=('NHWC', 'HWIO', 'NHWC'),
      )
    return y + bias


def gate(x: jnp.ndarray) -> jnp.ndarray:
  """Gated activation `tanh(a) * sigmoid(b)` of `x = [a | b]` along the last axis.

  van den Oord et al. 2016a ("Conditional Image Generation with PixelCNN Decoders"),
  eq. 2; also WaveNet's residual block.
  """
  a, b = jnp.split(x, 2, axis=-1)
  return jnp.tanh(a) * jax.nn.sigmoid(b)
