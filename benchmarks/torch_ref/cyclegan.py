"""PyTorch replica of the CycleGAN family (`gm_jax/models/cyclegan.py`,
`gm_jax/families/cyclegan.py`).

One step = the family's `train_update`:

1. both generators (one Adam) against the current discriminators: LSGAN adversarial
   terms `+ cycle_weight * (|F(G(a)) - a|_1 + |G(F(b)) - b|_1)
   + identity_weight * cycle_weight * (|G(b) - b|_1 + |F(a) - a|_1)`;
2. the fakes `F(b)`, `G(a)` of that pass go through the image pools (50 images each;
   while a pool has room an image is stored and returned, then with probability 1/2 a
   random stored image is returned and replaced);
3. both discriminators (another Adam) on real images and the pooled fakes.

Adam(`adam_b1`, `adam_b2`, eps 1e-8), learning rate constant until
`decay_start_fraction * num_train_steps`, then linear decay to 0
(`gm_jax.families.cyclegan.learning_rate_schedule`); no clipping. Returns
`g_loss + d_loss`, the family's `metrics['loss']`.

Layers: reflection padding via `padding_mode='reflect'`, `nn.InstanceNorm2d(affine=True,
eps=1e-6)` (Flax `nn.InstanceNorm` defaults), Flax 'SAME' convolutions and transposed
convolutions through `gan.Conv2dSame` / `gan.ConvTranspose2dSame` (the stride-2 3x3
downsampling pads (0, 1), the 4x4 stride-1 PatchGAN layers pad (1, 2), the 3x3
stride-2 transposed convolutions compute one extra row/column that is cropped): the
same alignment as the JAX model, so `load_flax_params` reproduces it exactly.
"""

from __future__ import annotations

import torch
from torch import nn
import torch.nn.functional as F

from benchmarks.torch_ref.gan import _t
from benchmarks.torch_ref.gan import Conv2dSame
from benchmarks.torch_ref.gan import conv_transpose_weight
from benchmarks.torch_ref.gan import conv_weight
from benchmarks.torch_ref.gan import ConvTranspose2dSame
from benchmarks.torch_ref.gan import gan_losses
from benchmarks.torch_ref.gan import images_to_unit
from benchmarks.torch_ref.gan import lecun_normal_


def _norm(c: int) -> nn.InstanceNorm2d:
  return nn.InstanceNorm2d(c, eps=1e-6, affine=True)


class ResidualBlock(nn.Module):
  def __init__(self, f: int):
    super().__init__()
    self.conv1 = nn.Conv2d(f, f, 3, padding=1, padding_mode='reflect', bias=False)
    self.norm1 = _norm(f)
    self.conv2 = nn.Conv2d(f, f, 3, padding=1, padding_mode='reflect', bias=False)
    self.norm2 = _norm(f)

  def forward(self, x):
    y = F.relu(self.norm1(self.conv1(x)))
    return x + self.norm2(self.conv2(y))


class ResnetGenerator(nn.Module):
  """c7s1-f, d2f, d4f, residual blocks (4f), u2f, u1f, c7s1-C + tanh (NCHW)."""

  def __init__(self, channels: int, filters: int, num_blocks: int):
    super().__init__()
    f = filters
    self.conv_in = nn.Conv2d(channels, f, 7, padding=3, padding_mode='reflect', bias=False)
    self.norm_in = _norm(f)
    self.downs = nn.ModuleList(
      [Conv2dSame(f, 2 * f, 3, 2, bias=False), Conv2dSame(2 * f, 4 * f, 3, 2, bias=False)]
    )
    self.down_norms = nn.ModuleList([_norm(2 * f), _norm(4 * f)])
    self.blocks = nn.Sequential(*[ResidualBlock(4 * f) for _ in range(num_blocks)])
    self.ups = nn.ModuleList(
      [
        ConvTranspose2dSame(4 * f, 2 * f, 3, 2, bias=False),
        ConvTranspose2dSame(2 * f, f, 3, 2, bias=False),
      ]
    )
    self.up_norms = nn.ModuleList([_norm(2 * f), _norm(f)])
    self.conv_out = nn.Conv2d(f, channels, 7, padding=3, padding_mode='reflect')

  def forward(self, x):
    x = F.relu(self.norm_in(self.conv_in(x)))
    for conv, norm in zip(self.downs, self.down_norms):
      x = F.relu(norm(conv(x)))
    x = self.blocks(x)
    for conv, norm in zip(self.ups, self.up_norms):
      x = F.relu(norm(conv(x)))
    return torch.tanh(self.conv_out(x))


class PatchDiscriminator(nn.Module):
  """(Conv 4x4/2, [IN except first], LeakyReLU 0.2) * n, Conv 4x4/1 IN LeakyReLU,
  Conv 4x4/1 -> 1-channel patch scores."""

  def __init__(self, channels: int, filters: int, num_layers: int):
    super().__init__()
    convs, norms = [], []
    cin = channels
    for i in range(num_layers):
      width = filters * min(2**i, 8)
      convs.append(Conv2dSame(cin, width, 4, 2, bias=i == 0))
      norms.append(_norm(width) if i > 0 else nn.Identity())
      cin = width
    width = filters * min(2**num_layers, 8)
    convs.append(Conv2dSame(cin, width, 4, 1, bias=False))
    norms.append(_norm(width))
    self.convs = nn.ModuleList(convs)
    self.norms = nn.ModuleList(norms)
    self.out = Conv2dSame(width, 1, 4, 1)

  def forward(self, x):
    for conv, norm in zip(self.convs, self.norms):
      x = F.leaky_relu(norm(conv(x)), 0.2)
    return self.out(x)


class CycleGAN(nn.Module):
  def __init__(self, config, info):
    super().__init__()
    c = info.shape[-1]
    gen = lambda: ResnetGenerator(c, int(config.generator_filters), int(config.num_residual_blocks))
    disc = lambda: PatchDiscriminator(
      c, int(config.discriminator_filters), int(config.discriminator_layers)
    )
    self.g_ab, self.g_ba, self.d_a, self.d_b = gen(), gen(), disc(), disc()
    lecun_normal_(self)


class ImagePool:
  """`gm_jax.models.cyclegan.image_pool_query` (the reference ImagePool), NCHW."""

  def __init__(self, size: int, shape_chw):
    self.size = size
    self.images = torch.zeros((size,) + tuple(shape_chw))
    self.count = 0

  def query(self, images: torch.Tensor) -> torch.Tensor:
    if self.size == 0:
      return images
    out = []
    for image in images:
      if self.count < self.size:
        self.images[self.count] = image
        self.count += 1
        out.append(image)
      elif float(torch.rand(())) > 0.5:
        slot = int(torch.randint(self.size, ()))
        out.append(self.images[slot].clone())
        self.images[slot] = image
      else:
        out.append(image)
    return torch.stack(out)


def lr_at(config, step: int) -> float:
  """`gm_jax.families.cyclegan.learning_rate_schedule(config)(step)`."""
  lr = float(config.learning_rate)
  steps = int(config.num_train_steps)
  start = int(round(float(config.get('decay_start_fraction', 0.5)) * steps))
  if step < start:
    return lr
  span = max(1, steps - start)
  return lr * (1.0 - min(max(step - start, 0), span) / span)


def _l1(x, y):
  return (x - y).abs().mean()


def generator_objective(m: CycleGAN, a, b, lam: float, lam_id: float, g_loss_fn):
  """Batch mean of the generators' objective; returns `(total, fake_a, fake_b)`."""
  fake_b = m.g_ab(a)
  fake_a = m.g_ba(b)
  rec_a = m.g_ba(fake_b)
  rec_b = m.g_ab(fake_a)
  total = g_loss_fn(m.d_b(fake_b)) + g_loss_fn(m.d_a(fake_a))
  total = total + lam * (_l1(a, rec_a) + _l1(b, rec_b))
  if lam_id > 0:
    total = total + lam_id * (_l1(b, m.g_ab(b)) + _l1(a, m.g_ba(a)))
  return total, fake_a, fake_b


class CycleGANStep:
  """The family's `train_update` as a callable `step() -> g_loss + d_loss`."""

  def __init__(self, config, info, batch):
    self.config = config
    self.module = CycleGAN(config, info).train()
    m = self.module
    self.a = images_to_unit(batch['image_a'], info.num_levels)
    self.b = images_to_unit(batch['image_b'], info.num_levels)
    self.d_loss_fn, self.g_loss_fn = gan_losses(config.gan_loss)
    self.lam = float(config.cycle_weight)
    self.lam_id = float(config.identity_weight) * self.lam
    betas = (float(config.adam_b1), float(config.get('adam_b2', 0.999)))
    lr = lr_at(config, 0)
    self.gens = [m.g_ab, m.g_ba]
    self.discs = [m.d_a, m.d_b]
    self.opt_g = torch.optim.Adam(
      [p for g in self.gens for p in g.parameters()], lr=lr, betas=betas, eps=1e-8
    )
    self.opt_d = torch.optim.Adam(
      [p for d in self.discs for p in d.parameters()], lr=lr, betas=betas, eps=1e-8
    )
    chw = (info.shape[-1],) + tuple(info.shape[:2])
    self.pool_a = ImagePool(int(config.pool_size), chw)
    self.pool_b = ImagePool(int(config.pool_size), chw)
    self.step = 0

  def _set_requires_grad(self, nets, flag: bool):
    for net in nets:
      net.requires_grad_(flag)

  def __call__(self) -> float:
    m, a, b = self.module, self.a, self.b
    lr = lr_at(self.config, self.step)
    for opt in (self.opt_g, self.opt_d):
      for group in opt.param_groups:
        group['lr'] = lr

    # 1. Both generators against the current discriminators.
    self._set_requires_grad(self.discs, False)
    self.opt_g.zero_grad(set_to_none=True)
    g_loss, fake_a, fake_b = generator_objective(m, a, b, self.lam, self.lam_id, self.g_loss_fn)
    g_loss.backward()
    self.opt_g.step()
    self._set_requires_grad(self.discs, True)

    # 2. The image pools.
    pooled_a = self.pool_a.query(fake_a.detach())
    pooled_b = self.pool_b.query(fake_b.detach())

    # 3. Both discriminators on real images and pooled fakes.
    self.opt_d.zero_grad(set_to_none=True)
    d_loss = self.d_loss_fn(m.d_a(a), m.d_a(pooled_a)) + self.d_loss_fn(m.d_b(b), m.d_b(pooled_b))
    d_loss.backward()
    self.opt_d.step()
    self.step += 1
    return float(g_loss.detach()) + float(d_loss.detach())


def make_step(config, info, batch):
  step = CycleGANStep(config, info, batch)
  return step, step.module


@torch.no_grad()
def eval_loss(module: CycleGAN, config, info, batch) -> dict:
  """`family.loss` (no pool, no update): generator objective + discriminator losses."""
  d_loss_fn, g_loss_fn = gan_losses(config.gan_loss)
  a = images_to_unit(batch['image_a'], info.num_levels)
  b = images_to_unit(batch['image_b'], info.num_levels)
  lam = float(config.cycle_weight)
  g_loss, fake_a, fake_b = generator_objective(
    module, a, b, lam, float(config.identity_weight) * lam, g_loss_fn
  )
  d_loss = d_loss_fn(module.d_a(a), module.d_a(fake_a)) + d_loss_fn(
    module.d_b(b), module.d_b(fake_b)
  )
  return {
    'loss': float(g_loss + d_loss),
    'fake_a': fake_a,
    'fake_b': fake_b,
    'd_a_real': module.d_a(a),
  }


def _copy_conv(conv, p, transpose=False):
  conv.weight.copy_((conv_transpose_weight if transpose else conv_weight)(p['kernel']))
  if conv.bias is not None:
    conv.bias.copy_(_t(p['bias']))


def _copy_norm(norm, p):
  norm.weight.copy_(_t(p['scale']))
  norm.bias.copy_(_t(p['bias']))


@torch.no_grad()
def load_flax_params(module: CycleGAN, params) -> None:
  """Copies the family's params tree (`{'g_ab': {'params': ...}, 'g_ba', 'd_a', 'd_b'}`)."""
  for name in ('g_ab', 'g_ba'):
    g, p = getattr(module, name), params[name]['params']
    _copy_conv(g.conv_in, p['Conv_0'])
    _copy_norm(g.norm_in, p['InstanceNorm_0'])
    for i, (conv, norm) in enumerate(zip(g.downs, g.down_norms)):
      _copy_conv(conv, p[f'Conv_{i + 1}'])
      _copy_norm(norm, p[f'InstanceNorm_{i + 1}'])
    for i, block in enumerate(g.blocks):
      q = p[f'ResidualBlock_{i}']
      _copy_conv(block.conv1, q['Conv_0'])
      _copy_norm(block.norm1, q['InstanceNorm_0'])
      _copy_conv(block.conv2, q['Conv_1'])
      _copy_norm(block.norm2, q['InstanceNorm_1'])
    for i, (conv, norm) in enumerate(zip(g.ups, g.up_norms)):
      _copy_conv(conv, p[f'ConvTranspose_{i}'], transpose=True)
      _copy_norm(norm, p[f'InstanceNorm_{i + 3}'])
    _copy_conv(g.conv_out, p['Conv_3'])
  for name in ('d_a', 'd_b'):
    d, p = getattr(module, name), params[name]['params']
    j = 0
    for i, (conv, norm) in enumerate(zip(d.convs, d.norms)):
      _copy_conv(conv, p[f'Conv_{i}'])
      if isinstance(norm, nn.InstanceNorm2d):
        _copy_norm(norm, p[f'InstanceNorm_{j}'])
        j += 1
    _copy_conv(d.out, p[f'Conv_{len(d.convs)}'])
