"""PyTorch replica of the DCGAN family (`gm_jax/models/gan.py`, `gm_jax/families/gan.py`).

One step = the family's `train_update`: draw `z`, update D on real and `G(z)` (two
separate D passes in train mode, so real and fake batches get their own batch-norm
statistics and D's running averages are updated twice, real then fake), then update G
through the *updated* D, whose running averages that pass does not touch. Each network
has its own Adam (`adam_b1`, `adam_b2`, eps 1e-8) on `optim.learning_rate_schedule`; no
gradient clipping (the GAN family ignores `grad_clip_norm`). The returned loss is
`d_loss + g_loss` (each measured before its update), as the family's `metrics['loss']`.

`G(z)` is computed once and reused for both updates (the usual PyTorch DCGAN step), as
the JAX step does (one generator forward, its VJP reused for G's gradient); G's running
averages are updated once in both.

Layouts: Flax is NHWC with `(h, w, c)` flattening; here NCHW with `(c, h, w)` flattening
(`load_flax_params` permutes the Dense weights accordingly). Flax `ConvTranspose`
(no kernel flip, lax 'SAME' padding) equals `nn.ConvTranspose2d` with the spatially
flipped kernel and the padding from `common`-style arithmetic below; Flax 'SAME'
convolutions equal `nn.Conv2d` with explicit (possibly asymmetric) zero padding.

Known differences (evaluation-only): PyTorch's batch norm updates `running_var` with
the unbiased batch variance, Flax with the biased one; in train mode (the benchmarked
step) both normalise with the biased batch variance.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import torch
from torch import nn
import torch.nn.functional as F

from benchmarks.torch_ref import common

# ----------------------------------------------------------------------------- layers


def same_padding(n: int, k: int, s: int) -> tuple[int, int]:
  """lax 'SAME' padding (low, high) of a length-`n` axis, kernel `k`, stride `s`."""
  out = -(-n // s)
  total = max((out - 1) * s + k - n, 0)
  return total // 2, total - total // 2


def transpose_padding(k: int, s: int) -> tuple[int, int]:
  """`lax._conv_transpose_padding(k, s, 'SAME')`: padding of the dilated input."""
  pad_len = k + s - 2
  pad_a = k - 1 if s > k - 1 else int(math.ceil(pad_len / 2))
  return pad_a, pad_len - pad_a


class Conv2dSame(nn.Conv2d):
  """`nn.Conv(..., padding='SAME')` of Flax: zero padding split as lax does it."""

  def __init__(self, cin: int, cout: int, k: int, stride: int = 1, bias: bool = True):
    super().__init__(cin, cout, k, stride=stride, padding=0, bias=bias)

  def forward(self, x):
    k, s = self.kernel_size[0], self.stride[0]
    ph, pw = same_padding(x.shape[-2], k, s), same_padding(x.shape[-1], k, s)
    if ph[0] == ph[1] and pw[0] == pw[1]:
      return F.conv2d(x, self.weight, self.bias, self.stride, (ph[0], pw[0]))
    return F.conv2d(F.pad(x, (pw[0], pw[1], ph[0], ph[1])), self.weight, self.bias, self.stride)


class ConvTranspose2dSame(nn.ConvTranspose2d):
  """`nn.ConvTranspose(..., padding='SAME')` of Flax (kernel not transposed).

  Flax: VALID correlation of the stride-dilated input padded `(a, b)` with the kernel.
  PyTorch `conv_transpose2d(padding=p, output_padding=q)`: the same with the kernel
  flipped and padding `(k-1-p, k-1-p+q)`; so `p = k-1-a` and `q = b-a` (cropped when
  negative: k=3, s=2 has `(a, b) = (2, 1)`, one extra row/column computed and dropped).
  """

  def __init__(self, cin: int, cout: int, k: int, stride: int, bias: bool = True):
    a, b = transpose_padding(k, stride)
    p, q = k - 1 - a, b - a
    if p < 0 or q >= stride:
      raise NotImplementedError(f'kernel {k}, stride {stride}')
    super().__init__(cin, cout, k, stride=stride, padding=p, output_padding=max(q, 0), bias=bias)
    self.crop = -q if q < 0 else 0

  def forward(self, x):
    y = super().forward(x)
    if self.crop:
      y = y[..., : y.shape[-2] - self.crop, : y.shape[-1] - self.crop]
    return y


def lecun_normal_(module: nn.Module) -> None:
  """Flax's default init: truncated-normal kernels with variance 1/fan_in, zero biases."""
  for m in module.modules():
    if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
      w = m.weight
      if isinstance(m, nn.ConvTranspose2d):  # weight [in, out, kh, kw]
        fan_in = w.shape[0] * w.shape[2] * w.shape[3]
      else:  # [out, in, ...]
        fan_in = w[0].numel()
      std = math.sqrt(1.0 / fan_in) / 0.87962566103423978
      with torch.no_grad():
        nn.init.trunc_normal_(w, std=std, a=-2 * std, b=2 * std)
        if m.bias is not None:
          m.bias.zero_()


def batch_norm(bn: nn.BatchNorm2d | None, x, update_stats: bool = True):
  """`bn(x)`; in train mode with `update_stats=False`, batch statistics are used but the
  running averages are left alone (Flax's `mutable` output discarded)."""
  if bn is None:
    return x
  if bn.training and not update_stats:
    return F.batch_norm(x, None, None, bn.weight, bn.bias, True, 0.0, bn.eps)
  return bn(x)


def _bn(c: int) -> nn.BatchNorm2d:
  # Flax nn.BatchNorm(momentum=0.9) (epsilon 1e-5): running = 0.9 running + 0.1 batch.
  return nn.BatchNorm2d(c, eps=1e-5, momentum=0.1)


# ----------------------------------------------------------------------------- models


class Generator(nn.Module):
  """`gm_jax.models.gan.Generator`: z -> Dense -> [BN] ReLU -> (ConvT 4x4/2 [BN] ReLU)*
  -> ConvT 4x4/2 -> tanh, NCHW output in [-1, 1]."""

  def __init__(
    self, image_shape, features, latent_dim: int, num_classes: int = 0, norm: str = 'batch_norm'
  ):
    super().__init__()
    h, w, c = image_shape
    factor = 2 ** len(features)
    self.h0, self.w0, self.f0 = h // factor, w // factor, features[0]
    self.num_classes = num_classes
    use_bn = norm == 'batch_norm'
    bias = not use_bn
    self.fc = nn.Linear(latent_dim + num_classes, self.h0 * self.w0 * self.f0, bias=bias)
    self.norms = nn.ModuleList([_bn(f) for f in features] if use_bn else [])
    self.ups = nn.ModuleList(
      [ConvTranspose2dSame(i, o, 4, 2, bias=bias) for i, o in itertools.pairwise(features)]
    )
    self.out = ConvTranspose2dSame(features[-1], c, 4, 2)

  def forward(self, z, labels=None):
    if self.num_classes:
      z = torch.cat([z, F.one_hot(labels, self.num_classes).to(z.dtype)], -1)
    norms = list(self.norms) or [None] * (len(self.ups) + 1)
    x = self.fc(z).view(z.shape[0], self.f0, self.h0, self.w0)
    x = F.relu(batch_norm(norms[0], x))
    for up, bn in zip(self.ups, norms[1:]):
      x = F.relu(batch_norm(bn, up(x)))
    return torch.tanh(self.out(x))


class Discriminator(nn.Module):
  """`gm_jax.models.gan.Discriminator`: (Conv 4x4/2 [BN except first] LeakyReLU 0.2)*
  -> flatten -> Dense(1); NCHW input, logits [B]."""

  def __init__(self, image_shape, features, num_classes: int = 0, norm: str = 'batch_norm'):
    super().__init__()
    if norm == 'spectral_norm':
      raise NotImplementedError('discriminator_norm=spectral_norm has no PyTorch replica')
    h, w, c = image_shape
    self.num_classes = num_classes
    use_bn = norm == 'batch_norm'
    convs, norms = [], []
    cin = c + num_classes
    for i, width in enumerate(features):
      convs.append(Conv2dSame(cin, width, 4, 2, bias=i == 0 or not use_bn))
      norms.append(_bn(width) if use_bn and i > 0 else nn.Identity())
      cin = width
      h, w = -(-h // 2), -(-w // 2)
    self.convs = nn.ModuleList(convs)
    self.norms = nn.ModuleList(norms)
    self.out_shape = (cin, h, w)  # of the last feature map, flattened into `fc`
    self.fc = nn.Linear(cin * h * w, 1)

  def forward(self, x, labels=None, update_stats: bool = True):
    if self.num_classes:
      maps = F.one_hot(labels, self.num_classes).to(x.dtype)[:, :, None, None]
      x = torch.cat([x, maps.expand(-1, -1, *x.shape[2:])], 1)
    for conv, bn in zip(self.convs, self.norms):
      x = conv(x)
      if isinstance(bn, nn.BatchNorm2d):
        x = batch_norm(bn, x, update_stats)
      x = F.leaky_relu(x, 0.2)
    return self.fc(x.flatten(1))[:, 0]


class DCGAN(nn.Module):
  def __init__(self, config, info):
    super().__init__()
    num_classes = info.num_classes if config.conditional else 0
    self.generator = Generator(
      tuple(info.shape),
      tuple(config.generator_features),
      int(config.latent_dim),
      num_classes,
      config.generator_norm,
    )
    self.discriminator = Discriminator(
      tuple(info.shape),
      tuple(config.discriminator_features),
      num_classes,
      config.discriminator_norm,
    )
    lecun_normal_(self)


# ----------------------------------------------------------------------------- losses


def gan_losses(name: str):
  """`gm_jax.models.gan.GAN_LOSSES[name]` as batch means: `(d_loss, g_loss)`."""
  if name == 'lsgan':
    return (
      lambda r, f: 0.5 * ((r - 1).square().mean() + f.square().mean()),
      lambda f: 0.5 * (f - 1).square().mean(),
    )
  d = lambda r, f: F.softplus(-r).mean() + F.softplus(f).mean()
  if name == 'non_saturating':
    return d, lambda f: F.softplus(-f).mean()
  if name == 'minimax':
    return d, lambda f: -F.softplus(f).mean()
  raise ValueError(f'gan_loss {name!r}')


def images_to_unit(images: np.ndarray, num_levels: int) -> torch.Tensor:
  """uint8 NHWC levels -> float32 NCHW in [-1, 1] (`gm_jax.nn.layers.images_to_unit`)."""
  return common.to_nchw(images).float() * (2.0 / (num_levels - 1)) - 1.0


# ----------------------------------------------------------------------------- step


class DCGANStep:
  """The family's `train_update` as a callable: `step(z=None) -> d_loss + g_loss`.

  `z` (`[B, latent]`) may be given to reproduce the JAX step's noise; otherwise it is
  drawn with `torch.randn`.
  """

  def __init__(self, config, info, batch):
    self.config = config
    self.module = DCGAN(config, info).train()
    self.x = images_to_unit(batch['image'], info.num_levels)
    self.labels = (
      torch.from_numpy(np.asarray(batch['label'])).long() if config.conditional else None
    )
    self.latent = int(config.latent_dim)
    self.d_loss_fn, self.g_loss_fn = gan_losses(config.gan_loss)
    betas = (float(config.adam_b1), float(config.get('adam_b2', 0.999)))
    lr = common.lr_at(config, 0)
    self.g, self.d = self.module.generator, self.module.discriminator
    self.opt_g = torch.optim.Adam(self.g.parameters(), lr=lr, betas=betas, eps=1e-8)
    self.opt_d = torch.optim.Adam(self.d.parameters(), lr=lr, betas=betas, eps=1e-8)
    self.step = 0

  def __call__(self, z: torch.Tensor | None = None) -> float:
    lr = common.lr_at(self.config, self.step)
    for opt in (self.opt_g, self.opt_d):
      for group in opt.param_groups:
        group['lr'] = lr
    if z is None:
      z = torch.randn(self.x.shape[0], self.latent)
    fake = self.g(z, self.labels)

    # 1. Discriminator on real and (fixed) fake images.
    self.opt_d.zero_grad(set_to_none=True)
    d_loss = self.d_loss_fn(self.d(self.x, self.labels), self.d(fake.detach(), self.labels))
    d_loss.backward()
    self.opt_d.step()

    # 2. Generator through the updated discriminator (its running stats untouched).
    self.opt_g.zero_grad(set_to_none=True)
    self.d.requires_grad_(False)
    g_loss = self.g_loss_fn(self.d(fake, self.labels, update_stats=False))
    g_loss.backward()
    self.d.requires_grad_(True)
    self.opt_g.step()
    self.step += 1
    return float(d_loss.detach()) + float(g_loss.detach())


def make_step(config, info, batch):
  step = DCGANStep(config, info, batch)
  return step, step.module


def eval_loss(module: DCGAN, config, info, batch, z: torch.Tensor) -> dict:
  """`family.loss(train=False)` with noise `z`: networks in eval mode, no update."""
  was = module.training
  module.eval()
  d_loss_fn, g_loss_fn = gan_losses(config.gan_loss)
  x = images_to_unit(batch['image'], info.num_levels)
  labels = torch.from_numpy(np.asarray(batch['label'])).long() if config.conditional else None
  with torch.no_grad():
    fake = module.generator(z, labels)
    real_out = module.discriminator(x, labels)
    fake_out = module.discriminator(fake, labels)
    d_loss, g_loss = d_loss_fn(real_out, fake_out), g_loss_fn(fake_out)
  module.train(was)
  return {'loss': float(d_loss + g_loss), 'fake': fake, 'real_out': real_out, 'fake_out': fake_out}


# ----------------------------------------------------------------------------- weights


def _t(x) -> torch.Tensor:
  return torch.from_numpy(np.array(x, dtype=np.float32))


def conv_weight(kernel) -> torch.Tensor:
  """Flax Conv kernel [kh, kw, in, out] -> torch [out, in, kh, kw]."""
  return _t(np.asarray(kernel).transpose(3, 2, 0, 1))


def conv_transpose_weight(kernel) -> torch.Tensor:
  """Flax ConvTranspose kernel [kh, kw, in, out] -> torch [in, out, kh, kw], flipped."""
  return _t(np.asarray(kernel)[::-1, ::-1].transpose(2, 3, 0, 1))


def _copy_bn(bn: nn.BatchNorm2d, p, stats) -> None:
  bn.weight.copy_(_t(p['scale']))
  bn.bias.copy_(_t(p['bias']))
  if stats is not None:
    bn.running_mean.copy_(_t(stats['mean']))
    bn.running_var.copy_(_t(stats['var']))


@torch.no_grad()
def load_flax_params(module: DCGAN, params) -> None:
  """Copies the family's params tree (`{'generator': {'params', 'batch_stats'},
  'discriminator': ...}`) into `module`."""
  g, d = module.generator, module.discriminator
  gp, gs = params['generator']['params'], params['generator'].get('batch_stats', {})
  kernel = np.asarray(gp['Dense_0']['kernel'])  # [latent, h0*w0*f0] in (h, w, c) order
  zdim = kernel.shape[0]
  kernel = kernel.reshape(zdim, g.h0, g.w0, g.f0).transpose(0, 3, 1, 2).reshape(zdim, -1)
  g.fc.weight.copy_(_t(kernel.T))
  if g.fc.bias is not None:
    g.fc.bias.copy_(
      _t(np.asarray(gp['Dense_0']['bias']).reshape(g.h0, g.w0, g.f0).transpose(2, 0, 1).reshape(-1))
    )
  for i, bn in enumerate(g.norms):
    _copy_bn(bn, gp[f'BatchNorm_{i}'], gs.get(f'BatchNorm_{i}'))
  for i, conv in enumerate(list(g.ups) + [g.out]):
    p = gp[f'ConvTranspose_{i}']
    conv.weight.copy_(conv_transpose_weight(p['kernel']))
    if conv.bias is not None:
      conv.bias.copy_(_t(p['bias']))

  dp, ds = params['discriminator']['params'], params['discriminator'].get('batch_stats', {})
  j = 0
  for i, (conv, bn) in enumerate(zip(d.convs, d.norms)):
    conv.weight.copy_(conv_weight(dp[f'Conv_{i}']['kernel']))
    if conv.bias is not None:
      conv.bias.copy_(_t(dp[f'Conv_{i}']['bias']))
    if isinstance(bn, nn.BatchNorm2d):
      _copy_bn(bn, dp[f'BatchNorm_{j}'], ds.get(f'BatchNorm_{j}'))
      j += 1
  kernel = np.asarray(dp['Dense_0']['kernel'])[:, 0]  # (h, w, c) order
  c, h, w = d.out_shape
  d.fc.weight.copy_(_t(kernel.reshape(h, w, c).transpose(2, 0, 1).reshape(1, -1)))
  d.fc.bias.copy_(_t(dp['Dense_0']['bias']))
