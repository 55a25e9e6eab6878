"""PyTorch replicas of `gm_jax.models.autoregressive` (gated PixelCNN, causal-conv LM).

Layer for layer the models of `gm_jax.families.autoregressive.build_model`, channels-first:

* `PixelCNN` (van den Oord et al. 2016a): per layer a vertical `(k//2 + 1, k)` conv
  over the rows above and the current one, a horizontal `(1, k//2 + 1)` conv over the
  current row's left context whose last tap is colour-channel masked ('A' in the first
  layer, 'B' after), the vertical pre-activations shifted down one row and mixed into
  the horizontal stack by a 1x1 conv (`vh`), gated activations `tanh(a) * sigmoid(b)`
  with dropout, a masked 1x1 `h_out`, residuals after the first layer, and an
  `elu -> masked 1x1 -> elu -> masked 1x1` head to `C * num_levels` logits.
* `CausalConvLM` (WaveNet-style): embedding, shift right by one, per dilation a causal
  dilated conv to `2C`, gate, dropout, 1x1 residual and 1x1 skip, then
  `elu -> 1x1 -> elu -> 1x1(vocab)`.

The loss is the family's: the exact NLL in nats summed over positions, averaged over
the batch (`losses.autoregressive_nll`), with the images scaled to [-1, 1] as
`nn.layers.images_to_unit` does. Masks are fixed buffers multiplied into the weight in
each forward (as `MaskedConv2D` does); an all-ones mask (mask 'B' with one colour
channel) is dropped.

`load_flax_params(module, params)` copies a Flax parameter tree into the replica (for
the equality test of the two forward passes).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn
import torch.nn.functional as F

from benchmarks.torch_ref import common

# -- initialisation of the same kind as Flax's (lecun_normal kernels, zero biases) -----


def _lecun_normal_(w: torch.Tensor, fan_in: int) -> None:
  # flax variance_scaling(1, 'fan_in', 'truncated_normal'): N(0, 1/fan_in) truncated at
  # 2 std, the std corrected for the truncation.
  std = math.sqrt(1.0 / fan_in) / 0.87962566103423978
  nn.init.trunc_normal_(w, std=std, a=-2 * std, b=2 * std)


def _init_conv(conv: nn.Module) -> None:
  w = conv.weight
  _lecun_normal_(w, w.shape[1] * int(np.prod(w.shape[2:])))
  nn.init.zeros_(conv.bias)


# -- masks (gm_jax.nn.autoregressive.channel_groups / channel_mask) ---------------------


def _channel_groups(num_features: int, num_channels: int, repeat: int = 1) -> np.ndarray:
  block = num_features // repeat
  return np.tile(np.arange(block) * num_channels // block, repeat)


def _centre_mask(
  f_in: int, f_out: int, num_channels: int, mask_type: str, out_repeat: int
) -> np.ndarray:
  """`[f_out, f_in]` 0/1: which input features the output features see at the pixel."""
  g_in = _channel_groups(f_in, num_channels)
  g_out = _channel_groups(f_out, num_channels, out_repeat)
  if mask_type == 'A':
    allowed = g_in[None, :] < g_out[:, None]
  else:
    allowed = g_in[None, :] <= g_out[:, None]
  return allowed.astype(np.float32)


class MaskedConv2d(nn.Conv2d):
  """VALID conv whose bottom-right tap (the current pixel) is channel-masked."""

  def __init__(
    self,
    f_in: int,
    f_out: int,
    kernel_size: tuple[int, int],
    mask_type: str,
    num_channels: int,
    out_repeat: int = 1,
  ):
    super().__init__(f_in, f_out, kernel_size)
    kh, kw = kernel_size
    mask = np.ones((f_out, f_in, kh, kw), np.float32)
    mask[:, :, kh - 1, kw - 1] = _centre_mask(f_in, f_out, num_channels, mask_type, out_repeat)
    if mask.all():
      self.mask = None
    else:
      self.register_buffer('mask', torch.from_numpy(mask), persistent=False)

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    w = self.weight if self.mask is None else self.weight * self.mask
    return F.conv2d(x, w, self.bias)


def _gate(x: torch.Tensor) -> torch.Tensor:
  a, b = x.chunk(2, dim=1)
  return torch.tanh(a) * torch.sigmoid(b)


class PixelCNN(nn.Module):
  """`gm_jax.models.autoregressive.PixelCNN`, NCHW."""

  def __init__(
    self,
    num_levels: int,
    num_channels: int = 1,
    features: int = 64,
    num_layers: int = 6,
    kernel_size: int = 3,
    dropout_rate: float = 0.0,
  ):
    super().__init__()
    k, f, c = kernel_size, features, num_channels
    self.num_levels, self.num_channels, self.r = num_levels, c, k // 2
    self.dropout_rate = dropout_rate
    f_in = [c] + [f] * (num_layers - 1)
    self.v_convs = nn.ModuleList(nn.Conv2d(fi, 2 * f, (k // 2 + 1, k)) for fi in f_in)
    self.vh = nn.ModuleList(nn.Conv2d(2 * f, 2 * f, 1) for _ in f_in)
    self.h_convs = nn.ModuleList(
      MaskedConv2d(fi, 2 * f, (1, k // 2 + 1), 'A' if n == 0 else 'B', c, out_repeat=2)
      for n, fi in enumerate(f_in)
    )
    self.h_outs = nn.ModuleList(MaskedConv2d(f, f, (1, 1), 'B', c) for _ in f_in)
    self.head1 = MaskedConv2d(f, f, (1, 1), 'B', c)
    self.head2 = MaskedConv2d(f, c * num_levels, (1, 1), 'B', c)
    for m in self.modules():
      if isinstance(m, nn.Conv2d):
        _init_conv(m)

  def forward(self, u: torch.Tensor) -> torch.Tensor:
    """u: `[B, C, H, W]` in [-1, 1] -> logits `[B, C * num_levels, H, W]`."""
    r, p = self.r, self.dropout_rate
    v_in = h_in = u
    for n in range(len(self.v_convs)):
      v_pre = self.v_convs[n](F.pad(v_in, (r, r, r, 0)))
      shifted = F.pad(v_pre[:, :, :-1], (0, 0, 1, 0))  # one row down, zeros in row 0
      h_pre = self.h_convs[n](F.pad(h_in, (r, 0))) + self.vh[n](shifted)
      v_g = F.dropout(_gate(v_pre), p, self.training)
      h_out = self.h_outs[n](F.dropout(_gate(h_pre), p, self.training))
      if n == 0:  # the input has C channels, not F: no residual
        v_in, h_in = v_g, h_out
      else:
        v_in, h_in = v_in + v_g, h_in + h_out
    return self.head2(F.elu(self.head1(F.elu(h_in))))

  def nll(self, levels: torch.Tensor) -> torch.Tensor:
    """levels: int64 `[B, C, H, W]` -> mean over the batch of `-log p(x)` in nats."""
    u = levels.float() * (2.0 / (self.num_levels - 1)) - 1.0
    logits = self(u)
    b, _, h, w = logits.shape
    c, l = self.num_channels, self.num_levels
    if c == 1:  # logits [B, L, H, W] already
      target = levels[:, 0]
    else:  # features c * L + l  ->  [B, L, C, H, W]
      logits = logits.view(b, c, l, h, w).transpose(1, 2)
      target = levels
    return F.cross_entropy(logits, target, reduction='sum') / b


class CausalConvLM(nn.Module):
  """`gm_jax.models.autoregressive.CausalConvLM`, NCW."""

  def __init__(
    self,
    vocab_size: int,
    channels: int = 64,
    dilations=(1, 2, 4, 8, 16, 32),
    kernel_size: int = 2,
    dropout_rate: float = 0.0,
  ):
    super().__init__()
    c = channels
    self.dilations = tuple(int(d) for d in dilations)
    self.kernel_size, self.dropout_rate = kernel_size, dropout_rate
    self.embed = nn.Embedding(vocab_size, c)
    self.convs = nn.ModuleList(nn.Conv1d(c, 2 * c, kernel_size, dilation=d) for d in self.dilations)
    self.res = nn.ModuleList(nn.Conv1d(c, c, 1) for _ in self.dilations)
    self.skip = nn.ModuleList(nn.Conv1d(c, c, 1) for _ in self.dilations)
    self.out1 = nn.Conv1d(c, c, 1)
    self.out2 = nn.Conv1d(c, vocab_size, 1)
    nn.init.normal_(self.embed.weight, std=1.0 / math.sqrt(c))
    for m in self.modules():
      if isinstance(m, nn.Conv1d):
        _init_conv(m)

  def forward(self, tokens: torch.Tensor) -> torch.Tensor:
    """tokens: int64 `[B, T]` -> logits `[B, vocab, T]` (position t sees tokens < t)."""
    e = self.embed(tokens).transpose(1, 2)  # [B, C, T]
    h = F.pad(e[:, :, :-1], (1, 0))  # shift right by one
    skip = 0.0
    k, p = self.kernel_size, self.dropout_rate
    for conv, res, skp, d in zip(self.convs, self.res, self.skip, self.dilations):
      g = F.dropout(_gate(conv(F.pad(h, ((k - 1) * d, 0)))), p, self.training)
      h = h + res(g)
      skip = skip + skp(g)
    return self.out2(F.elu(self.out1(F.elu(skip))))

  def nll(self, tokens: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of `-sum_t log p(x_t | x_<t)` in nats."""
    return F.cross_entropy(self(tokens), tokens, reduction='sum') / tokens.shape[0]


def build_module(config, info) -> nn.Module:
  """The replica of `gm_jax.families.autoregressive.build_model(config, info)`."""
  dropout = float(config.get('dropout_rate', 0.0))
  if config.model == 'pixelcnn':
    return PixelCNN(
      num_levels=info.num_levels,
      num_channels=info.shape[-1],
      features=int(config.channels),
      num_layers=int(config.num_layers),
      kernel_size=int(config.kernel_size),
      dropout_rate=dropout,
    )
  if config.model == 'char_lm':
    return CausalConvLM(
      vocab_size=info.num_levels,
      channels=int(config.channels),
      dilations=tuple(config.dilations),
      kernel_size=int(config.kernel_size),
      dropout_rate=dropout,
    )
  raise ValueError(f'unknown autoregressive model {config.model!r}')


def batch_tensor(info, batch: dict) -> torch.Tensor:
  """The model's input: levels `[B, C, H, W]` (int64) or tokens `[B, T]` (int64)."""
  if info.kind == 'image':
    return common.to_nchw(batch['image'])
  return torch.from_numpy(np.asarray(batch['tokens'])).long()


def make_step(config, info, batch):
  module = build_module(config, info)
  module.train()  # dropout on, as the JAX step (train=True)
  x = batch_tensor(info, batch)
  step = common.make_train_step(config, module, lambda: module.nll(x))
  return step, module


# -- weight copy from Flax -----------------------------------------------------------------


def _t(a, *perm) -> torch.Tensor:
  a = np.asarray(a, np.float32)
  return torch.from_numpy(np.array(a.transpose(*perm) if perm else a, copy=True))


def _copy_conv(conv: nn.Module, p: dict) -> None:
  """Flax Conv/MaskedConv2D (HWIO) or Dense ([in, out]) -> torch conv (O, I, ...)."""
  k = np.asarray(p['kernel'])
  if k.ndim == 2:  # Dense -> 1x1 conv
    w = _t(k, 1, 0).reshape(conv.weight.shape)
  elif k.ndim == 3:  # WIO -> OIW
    w = _t(k, 2, 1, 0)
  else:  # HWIO -> OIHW
    w = _t(k, 3, 2, 0, 1)
  assert w.shape == conv.weight.shape, (w.shape, conv.weight.shape)
  conv.weight.copy_(w)
  conv.bias.copy_(_t(p['bias']))


@torch.no_grad()
def load_flax_params(module: nn.Module, params) -> None:
  """Copies the Flax parameters of the same model into `module` (in place)."""
  p = params['params'] if 'params' in params else params
  if isinstance(module, PixelCNN):
    for n in range(len(module.v_convs)):
      _copy_conv(module.v_convs[n], p[f'v_convs_{n}'])
      _copy_conv(module.vh[n], p[f'vh_{n}'])
      _copy_conv(module.h_convs[n], p[f'h_convs_{n}'])
      _copy_conv(module.h_outs[n], p[f'h_outs_{n}'])
    _copy_conv(module.head1, p['head1'])
    _copy_conv(module.head2, p['head2'])
  elif isinstance(module, CausalConvLM):
    module.embed.weight.copy_(_t(p['embed']['embedding']))
    for n in range(len(module.convs)):
      _copy_conv(module.convs[n], p[f'convs_{n}'])
      _copy_conv(module.res[n], p[f'res_{n}'])
      _copy_conv(module.skip[n], p[f'skip_{n}'])
    _copy_conv(module.out1, p['out1'])
    _copy_conv(module.out2, p['out2'])
  else:
    raise TypeError(f'not an autoregressive replica: {type(module).__name__}')
