"""PyTorch replica of gm_jax's flows (`gm_jax.models.flows`: RealNVP and Glow).

Same bijection, layer by layer, as `gm_jax.nn.flows`: the counted `Logit`
pre-processing, squeeze (the same channel order, `(di * 2 + dj) * C + c`), RealNVP
checkerboard / channel affine couplings with the `2 tanh(raw / 2)` soft-clamped
log-scale, Glow steps of ActNorm (data-dependent initialisation on a dequantised
batch), LU-parameterised invertible 1x1 convolution (the same NumPy-seeded rotation,
permutation and signs) and channel coupling, Glow's learned split prior (a parity-1
channel coupling without dropout) and the multi-scale factor-out. The coupling network
is Glow's 3x3 conv, ReLU, 1x1 conv, ReLU, dropout, zero-initialised 3x3 conv.

Loss (`gm_jax.families.flows`): uniform dequantisation `x = (k + u) / L` with fresh
noise every step, then the discrete bound `-log N(z; 0, I) - log|det| + D log L`
in nats, averaged over the batch.

The final unsqueezes of the JAX model only reorder `z`; the Gaussian log-density is
a sum over all of `z`, so here the factored-out halves are kept as a list instead of
being concatenated and unsqueezed back (same log-likelihood, no copies).
`load_flax_params(module, params)` copies a Flax parameter tree into the replica
(used by the test to check that both compute the same log-likelihood).
"""

from __future__ import annotations

import math

import numpy as np
import scipy.linalg
import torch
from torch import nn
import torch.nn.functional as F

from benchmarks.torch_ref import common

_LOG_2PI = math.log(2.0 * math.pi)


def _lecun_normal_(w: torch.Tensor) -> torch.Tensor:
  """Flax's default conv kernel init: truncated-normal variance scaling 1 / fan_in."""
  fan_in = w.shape[1] * w.shape[2] * w.shape[3]
  std = math.sqrt(1.0 / fan_in) / 0.87962566103423978
  return nn.init.trunc_normal_(w, std=std, a=-2.0 * std, b=2.0 * std)


class ConvNet(nn.Module):
  """`gm_jax.nn.flows.ConvNet`: 3x3 conv, ReLU, 1x1 conv, ReLU, dropout, zero 3x3 conv."""

  def __init__(self, in_channels: int, hidden: int, out_channels: int, dropout_rate: float):
    super().__init__()
    self.conv0 = nn.Conv2d(in_channels, hidden, 3, padding=1)
    self.conv1 = nn.Conv2d(hidden, hidden, 1)
    self.conv2 = nn.Conv2d(hidden, out_channels, 3, padding=1)
    self.dropout_rate = dropout_rate
    for conv in (self.conv0, self.conv1):
      _lecun_normal_(conv.weight)
      nn.init.zeros_(conv.bias)
    nn.init.zeros_(self.conv2.weight)  # the coupling starts as the identity
    nn.init.zeros_(self.conv2.bias)

  def forward(self, x):
    h = F.relu(self.conv0(x))
    h = F.relu(self.conv1(h))
    if self.dropout_rate:
      h = F.dropout(h, self.dropout_rate, self.training)
    return self.conv2(h)


class AffineCoupling(nn.Module):
  """`gm_jax.nn.flows.AffineCoupling` (forward direction) on NCHW inputs of `shape`."""

  def __init__(
    self, mask: str, parity: int, shape, hidden: int, dropout_rate: float = 0.0, clamp: float = 2.0
  ):
    super().__init__()
    c, h, w = shape
    self.mask, self.parity, self.clamp = mask, parity, clamp
    if mask == 'checkerboard':
      i, j = np.meshgrid(np.arange(h), np.arange(w), indexing='ij')
      m = torch.from_numpy(((i + j) % 2 == parity).astype(np.float32))[None, None]
      self.register_buffer('m', m, persistent=False)
      self.register_buffer('one_minus_m', 1.0 - m, persistent=False)
      self.net = ConvNet(c + 1, hidden, 2 * c, dropout_rate)
    elif mask == 'channel':
      k = c // 2
      self.cond = slice(0, k) if parity == 0 else slice(c - k, c)
      self.trans = slice(k, c) if parity == 0 else slice(0, c - k)
      self.net = ConvNet(k, hidden, 2 * (c - k), dropout_rate)
    else:
      raise ValueError(f'unknown mask {mask!r}')

  def forward(self, x):
    if self.mask == 'checkerboard':
      b = x.shape[0]
      net_in = torch.cat([x * self.m, self.m.expand(b, 1, -1, -1)], 1)
      s_raw, t = self.net(net_in).chunk(2, 1)
      s = self.clamp * torch.tanh(s_raw / self.clamp) * self.one_minus_m
      y = x * torch.exp(s) + t * self.one_minus_m
      return y, s.sum((1, 2, 3))
    x_a, x_b = x[:, self.cond], x[:, self.trans]
    s_raw, t = self.net(x_a).chunk(2, 1)
    s = self.clamp * torch.tanh(s_raw / self.clamp)
    y_b = x_b * torch.exp(s) + t
    y = torch.cat([x_a, y_b] if self.parity == 0 else [y_b, x_a], 1)
    return y, s.sum((1, 2, 3))


class ActNorm(nn.Module):
  """`(x + bias) * exp(log_scale)` per channel; data-dependent init on the first batch."""

  def __init__(self, channels: int, eps: float = 1e-6):
    super().__init__()
    self.bias = nn.Parameter(torch.zeros(channels))
    self.log_scale = nn.Parameter(torch.zeros(channels))
    self.eps = eps
    self.initialized = False

  def forward(self, x):
    if not self.initialized:
      with torch.no_grad():
        self.bias.copy_(-x.mean((0, 2, 3)))
        self.log_scale.copy_(-torch.log(x.std((0, 2, 3), unbiased=False) + self.eps))
      self.initialized = True
    y = (x + self.bias[:, None, None]) * torch.exp(self.log_scale)[:, None, None]
    return y, (x.shape[2] * x.shape[3]) * self.log_scale.sum()


class InvConv1x1(nn.Module):
  """LU invertible 1x1 conv, `W = P (L + I) (U + diag(sign * exp(log_s)))`.

  Same seeded NumPy rotation, permutation and signs as `gm_jax.nn.flows.Invertible1x1Conv`;
  `lower` / `upper` are full `[C, C]` parameters masked to their strict triangles, as there.
  """

  def __init__(self, channels: int, seed: int):
    super().__init__()
    rotation = np.linalg.qr(np.random.RandomState(seed).randn(channels, channels))[0]
    perm, lower0, upper0 = scipy.linalg.lu(rotation)
    s0 = np.diag(upper0)
    f32 = lambda a: torch.as_tensor(np.asarray(a), dtype=torch.float32)
    self.lower = nn.Parameter(f32(np.tril(lower0, -1)))
    self.upper = nn.Parameter(f32(np.triu(upper0, 1)))
    self.log_s = nn.Parameter(f32(np.log(np.abs(s0))))
    self.register_buffer('perm', f32(perm), persistent=False)
    self.register_buffer('sign', f32(np.sign(s0)), persistent=False)
    self.register_buffer('eye', torch.eye(channels), persistent=False)

  def forward(self, x):
    lower = torch.tril(self.lower, -1) + self.eye
    upper = torch.triu(self.upper, 1) + torch.diag(self.sign * torch.exp(self.log_s))
    w = self.perm @ lower @ upper
    y = F.conv2d(x, w[:, :, None, None])
    return y, (x.shape[2] * x.shape[3]) * self.log_s.sum()


def squeeze(x):
  """Space-to-depth with gm_jax's channel order `(di * 2 + dj) * C + c`."""
  b, c, h, w = x.shape
  x = x.reshape(b, c, h // 2, 2, w // 2, 2).permute(0, 3, 5, 1, 2, 4)
  return x.reshape(b, 4 * c, h // 2, w // 2)


class Flow(nn.Module):
  """A gm_jax flow as a program: `('layer', name)`, `('squeeze',)`, `('factor',)`.

  `layers` is keyed by the Flax module names, so `load_flax_params` is a name lookup.
  """

  def __init__(self, logit_alpha, num_levels: int, num_dims: int):
    super().__init__()
    self.layers = nn.ModuleDict()
    self.program = []
    self.alpha = float(logit_alpha) if logit_alpha else None
    self.num_levels, self.num_dims = num_levels, num_dims

  def add(self, name, layer):
    self.layers[name] = layer
    self.program.append(('layer', name))

  def forward(self, x):
    """`x: [B, C, H, W]` in `[0, 1]` -> (list of latent parts, log_det `[B]`)."""
    log_det = x.new_zeros(x.shape[0])
    if self.alpha:
      a = self.alpha
      p = a + (1.0 - 2.0 * a) * x
      log_p, log_1mp = torch.log(p), torch.log1p(-p)
      x = log_p - log_1mp
      log_det = log_det + (x[0].numel() * math.log1p(-2.0 * a) - (log_p + log_1mp).sum((1, 2, 3)))
    zs = []
    for op in self.program:
      if op[0] == 'layer':
        x, ld = self.layers[op[1]](x)
        log_det = log_det + ld
      elif op[0] == 'squeeze':
        x = squeeze(x)
      else:  # factor out the first half of the channels
        c = x.shape[1] // 2
        zs.append(x[:, :c])
        x = x[:, c:]
    zs.append(x)
    return zs, log_det

  def nll(self, x):
    """Per-example discrete NLL bound (nats) of dequantised `x: [B, C, H, W]`."""
    zs, log_det = self(x)
    sq = sum(z.square().sum((1, 2, 3)) for z in zs)
    return (
      0.5 * sq
      + 0.5 * self.num_dims * _LOG_2PI
      - log_det
      + self.num_dims * math.log(self.num_levels)
    )


def build_realnvp(config, info) -> Flow:
  h, w, c = info.shape
  hidden, rate = int(config.hidden), float(config.dropout_rate)
  flow = Flow(config.get('logit_alpha', 0.05), info.num_levels, info.num_dims)
  shape = (c, h, w)
  for s in range(int(config.num_scales)):
    last = s == int(config.num_scales) - 1
    n = int(config.num_final) if last else int(config.num_checkerboard)
    for i in range(n):
      flow.add(f's{s}_checker{i}', AffineCoupling('checkerboard', i % 2, shape, hidden, rate))
    if last:
      break
    flow.program.append(('squeeze',))
    shape = (4 * shape[0], shape[1] // 2, shape[2] // 2)
    for i in range(int(config.num_channel)):
      flow.add(f's{s}_channel{i}', AffineCoupling('channel', i % 2, shape, hidden, rate))
    flow.program.append(('factor',))
    shape = (shape[0] - shape[0] // 2,) + shape[1:]
  return flow


def build_glow(config, info) -> Flow:
  h, w, c = info.shape
  hidden, rate = int(config.hidden), float(config.dropout_rate)
  flow = Flow(config.get('logit_alpha', 0.05), info.num_levels, info.num_dims)
  shape = (c, h, w)
  num_scales = int(config.num_scales)
  for s in range(num_scales):
    flow.program.append(('squeeze',))
    shape = (4 * shape[0], shape[1] // 2, shape[2] // 2)
    for i in range(int(config.steps_per_scale)):
      flow.add(f's{s}_actnorm{i}', ActNorm(shape[0]))
      flow.add(f's{s}_conv1x1_{i}', InvConv1x1(shape[0], seed=1000 * s + i))
      flow.add(f's{s}_coupling{i}', AffineCoupling('channel', 0, shape, hidden, rate))
    if s < num_scales - 1:
      if config.get('learned_prior', True):
        flow.add(f's{s}_split_prior', AffineCoupling('channel', 1, shape, hidden))
      flow.program.append(('factor',))
      shape = (shape[0] - shape[0] // 2,) + shape[1:]
  return flow


BUILDERS = {'realnvp': build_realnvp, 'glow': build_glow}


def build_model(config, info) -> Flow:
  if config.model not in BUILDERS:
    raise ValueError(f'no PyTorch replica of flow {config.model!r}')
  return BUILDERS[config.model](config, info)


def dequantize(levels: torch.Tensor, num_levels: int) -> torch.Tensor:
  """Uniform dequantisation `(k + u) / L`, `u ~ U[0, 1)`, fresh noise each call."""
  return (levels + torch.rand_like(levels)) / num_levels


def load_flax_params(module: Flow, params) -> None:
  """Copies a Flax flow's params (`family.init` output) into `module`."""
  params = params['params'] if 'params' in params else params
  t = lambda a: torch.from_numpy(np.array(a, np.float32))
  with torch.no_grad():
    for name, layer in module.layers.items():
      p = params[name]
      if isinstance(layer, AffineCoupling):
        for i, conv in enumerate((layer.net.conv0, layer.net.conv1, layer.net.conv2)):
          q = p['net'][f'Conv_{i}']
          conv.weight.copy_(t(q['kernel']).permute(3, 2, 0, 1))
          conv.bias.copy_(t(q['bias']))
      elif isinstance(layer, ActNorm):
        layer.bias.copy_(t(p['bias']))
        layer.log_scale.copy_(t(p['log_scale']))
        layer.initialized = True
      elif isinstance(layer, InvConv1x1):
        for k in ('lower', 'upper', 'log_s'):
          getattr(layer, k).copy_(t(p[k]))
      else:
        raise TypeError(f'unexpected layer {name}: {type(layer)}')
    missing = set(params) - set(module.layers)
    if missing:
      raise KeyError(f'Flax params without a PyTorch layer: {sorted(missing)}')


def make_step(config, info, batch):
  """One training step of the replica on `batch` (see benchmarks/torch_ref/__init__.py)."""
  module = build_model(config, info)
  levels = common.to_nchw(batch['image']).float()
  num_levels = int(info.num_levels)
  # ActNorm's data-dependent initialisation, on a dequantised batch (as family.init).
  module.eval()
  with torch.no_grad():
    module(dequantize(levels, num_levels))
  module.train()

  def loss_fn():
    return module.nll(dequantize(levels, num_levels)).mean()

  return common.make_train_step(config, module, loss_fn), module
