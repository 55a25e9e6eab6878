"""PyTorch replica of the VAE family (`gm_jax/models/vae.py`, `gm_jax/families/vae.py`).

Same layers as the Flax `VAE` / `ConditionalVAE`:

* `architecture='mlp'`: `MLP(hidden)` encoder on the flattened `[-1, 1]` image (H, W, C
  order, as the Flax reshape of NHWC), `Dense(latent)` heads for the mean and the
  log-variance, `MLP(reversed(hidden)) + Dense(H*W*C*P)` decoder; dropout after every
  hidden activation.
* `architecture='conv'`: two stride-2 3x3 convs (32, 64) + Dense(256) encoder with
  dropout; Dense(256) + dropout + Dense(H/4*W/4*64) + two stride-2 3x3 transposed convs
  (64, 32) + 3x3 conv to `C*P` channels decoder; GELU everywhere. The Flax 'SAME'
  paddings are reproduced exactly: a stride-2 conv on an even size pads (0, 1) (here
  `F.pad` then an unpadded conv), a stride-2 transposed conv pads its dilated input
  (2, 1) (here an unpadded `ConvTranspose2d`, whose 2n+1 output is cropped to 2n; the
  extra row costs nothing in the GEMM + col2im lowering).

Loss: `mean_b -(log p(x|z) - beta * KL(q(z|x) || N(0, I)))` with one reparameterised
sample `z = mean + exp(log_var / 2) * eps` per example, dropout on (train=True), the
categorical or Bernoulli decoder likelihood summed over sub-pixels, the analytic KL.
The flax GELU is the tanh approximation (`jax.nn.gelu(approximate=True)`).

`load_flax_params(module, params)` copies Flax parameters into the replica (kernel
transposes and flips, flatten-order permutations), for the weight-copy check;
`VAETorch.loss(x, eps=..., train=False)` then equals the JAX loss given the same eps.
"""

from __future__ import annotations

from collections.abc import Sequence
import itertools
import math

import numpy as np
import torch
from torch import nn
import torch.nn.functional as F

from benchmarks.torch_ref import common

ACTIVATIONS = {
  'gelu': lambda x: F.gelu(x, approximate='tanh'),
  'tanh': torch.tanh,
  'relu': F.relu,
}


def _lecun_normal_(weight: torch.Tensor, fan_in: int) -> None:
  """Flax's default kernel init: truncated normal (2 std), variance 1 / fan_in."""
  std = math.sqrt(1.0 / fan_in) / 0.87962566103423978
  nn.init.trunc_normal_(weight, std=std, a=-2 * std, b=2 * std)


def _linear(n_in: int, n_out: int) -> nn.Linear:
  layer = nn.Linear(n_in, n_out)
  _lecun_normal_(layer.weight, n_in)
  nn.init.zeros_(layer.bias)
  return layer


def _conv(n_in: int, n_out: int, stride: int = 1) -> nn.Conv2d:
  layer = nn.Conv2d(n_in, n_out, 3, stride=stride)  # padding applied by the caller
  _lecun_normal_(layer.weight, n_in * 9)
  nn.init.zeros_(layer.bias)
  return layer


def _conv_transpose(n_in: int, n_out: int) -> nn.ConvTranspose2d:
  layer = nn.ConvTranspose2d(n_in, n_out, 3, stride=2, padding=0)
  _lecun_normal_(layer.weight, n_in * 9)  # flax fan_in of the (3, 3, in, out) kernel
  nn.init.zeros_(layer.bias)
  return layer


class MLP(nn.Module):
  """`gm_jax.nn.layers.MLP`: Linear -> activation (-> dropout) stack, optional head."""

  def __init__(
    self,
    n_in: int,
    features: Sequence[int],
    out_features: int = 0,
    dropout_rate: float = 0.0,
    activation: str = 'gelu',
  ):
    super().__init__()
    widths = [n_in] + list(features)
    self.hidden = nn.ModuleList(_linear(a, b) for a, b in itertools.pairwise(widths))
    self.out = _linear(widths[-1], out_features) if out_features else None
    self.dropout_rate = dropout_rate
    self.act = ACTIVATIONS[activation]

  def forward(self, x, train: bool):
    for layer in self.hidden:
      x = self.act(layer(x))
      if self.dropout_rate > 0:
        x = F.dropout(x, self.dropout_rate, training=train)
    return self.out(x) if self.out is not None else x


class ConvEncoder(nn.Module):
  """Two stride-2 convs (Flax 'SAME' = pad (0, 1) on even sizes), Dense, dropout."""

  def __init__(
    self,
    image_shape,
    in_channels: int,
    channels=(32, 64),
    hidden: int = 256,
    dropout_rate: float = 0.0,
  ):
    super().__init__()
    h, w, _ = image_shape
    chans = [in_channels] + list(channels)
    self.convs = nn.ModuleList(_conv(a, b, 2) for a, b in itertools.pairwise(chans))
    self.pads = []
    for _ in channels:  # flax SAME, stride 2: total pad max((ceil(n/2)-1)*2+3-n, 0)
      ph, pw = max((-(-h // 2) - 1) * 2 + 3 - h, 0), max((-(-w // 2) - 1) * 2 + 3 - w, 0)
      self.pads.append((pw // 2, pw - pw // 2, ph // 2, ph - ph // 2))
      h, w = -(-h // 2), -(-w // 2)
    self.dense = _linear(h * w * chans[-1], hidden)
    self.dropout_rate = dropout_rate

  def forward(self, x, train: bool):
    for conv, pad in zip(self.convs, self.pads):
      x = F.gelu(conv(F.pad(x, pad)), approximate='tanh')
    x = F.gelu(self.dense(x.flatten(1)), approximate='tanh')
    return F.dropout(x, self.dropout_rate, training=train) if self.dropout_rate > 0 else x


class ConvDecoder(nn.Module):
  """Dense, dropout, Dense to a (C=64, H/4, W/4) map, two stride-2 transposed convs,
  3x3 'SAME' conv to `out_channels`."""

  def __init__(
    self,
    image_shape,
    z_dim: int,
    out_channels: int,
    channels=(64, 32),
    hidden: int = 256,
    dropout_rate: float = 0.0,
  ):
    super().__init__()
    h, w, _ = image_shape
    self.h4, self.w4, self.c0 = h // 4, w // 4, channels[0]
    self.dense0 = _linear(z_dim, hidden)
    self.dense1 = _linear(hidden, self.h4 * self.w4 * channels[0])
    chans = [channels[0]] + list(channels)
    self.deconvs = nn.ModuleList(_conv_transpose(a, b) for a, b in itertools.pairwise(chans))
    self.out = _conv(channels[-1], out_channels)
    self.dropout_rate = dropout_rate

  def forward(self, z, train: bool):
    x = F.gelu(self.dense0(z), approximate='tanh')
    if self.dropout_rate > 0:
      x = F.dropout(x, self.dropout_rate, training=train)
    x = F.gelu(self.dense1(x), approximate='tanh').view(-1, self.c0, self.h4, self.w4)
    for deconv in self.deconvs:
      n_h, n_w = x.shape[2], x.shape[3]
      # flax pads the dilated input (2, 1): the unpadded transposed conv minus its last
      # row and column.
      x = F.gelu(deconv(x)[:, :, : 2 * n_h, : 2 * n_w], approximate='tanh')
    return self.out(F.pad(x, (1, 1, 1, 1)))


class VAETorch(nn.Module):
  """`gm_jax.models.vae.VAE` (categorical or Bernoulli decoder; `num_classes > 0`: CVAE)."""

  def __init__(
    self,
    image_shape,
    num_levels: int,
    latent_dim: int = 16,
    hidden: Sequence[int] = (512, 512),
    architecture: str = 'mlp',
    likelihood: str = 'categorical',
    dropout_rate: float = 0.0,
    num_classes: int = 0,
    activation: str = 'gelu',
  ):
    super().__init__()
    if likelihood not in ('categorical', 'bernoulli'):
      raise NotImplementedError(f'likelihood {likelihood!r} is not replicated')
    self.image_shape = tuple(image_shape)
    self.num_levels = num_levels
    self.likelihood = likelihood
    self.num_classes = num_classes
    self.architecture = architecture
    self.out_per_subpixel = num_levels if likelihood == 'categorical' else 1
    h, w, c = self.image_shape
    out = h * w * c * self.out_per_subpixel
    if architecture == 'mlp':
      self.encoder = MLP(
        h * w * c + num_classes, hidden, dropout_rate=dropout_rate, activation=activation
      )
      self.decoder = MLP(
        latent_dim + num_classes,
        tuple(reversed(hidden)),
        out_features=out,
        dropout_rate=dropout_rate,
        activation=activation,
      )
      enc_width = hidden[-1]
    elif architecture == 'conv':
      self.encoder = ConvEncoder(self.image_shape, c + num_classes, dropout_rate=dropout_rate)
      self.decoder = ConvDecoder(
        self.image_shape,
        latent_dim + num_classes,
        c * self.out_per_subpixel,
        dropout_rate=dropout_rate,
      )
      enc_width = 256
    else:
      raise ValueError(f'unknown architecture {architecture!r}')
    self.to_mean = _linear(enc_width, latent_dim)
    self.to_log_var = _linear(enc_width, latent_dim)

  def prepare(self, images: np.ndarray) -> torch.Tensor:
    """uint8 `[B, H, W, C]` levels -> the int64 targets in the layout `loss` expects
    (NHWC for the MLP, NCHW for the conv net)."""
    if self.architecture == 'mlp':
      return torch.from_numpy(np.ascontiguousarray(images)).long()
    return common.to_nchw(images)

  def _onehot(self, labels, dtype):
    return F.one_hot(labels, self.num_classes).to(dtype)

  def encode(self, x, labels=None, *, train: bool = False):
    """x: int64 levels (layout of `prepare`) -> (mean, log_var)."""
    u = x.float() * (2.0 / (self.num_levels - 1)) - 1.0
    if self.architecture == 'mlp':
      u = u.flatten(1)
      if self.num_classes:
        u = torch.cat([u, self._onehot(labels, u.dtype)], 1)
    elif self.num_classes:
      oh = self._onehot(labels, u.dtype)[:, :, None, None].expand(-1, -1, *u.shape[2:])
      u = torch.cat([u, oh], 1)
    h = self.encoder(u, train)
    return self.to_mean(h), self.to_log_var(h)

  def decode(self, z, labels=None, *, train: bool = False):
    """Decoder output: MLP `[B, H*W*C*P]` (P fastest), conv `[B, C*P, H, W]`."""
    if self.num_classes:
      z = torch.cat([z, self._onehot(labels, z.dtype)], 1)
    return self.decoder(z, train)

  def log_likelihood(self, out, x):
    """Summed over the batch: log p(x | decoder output)."""
    b = x.shape[0]
    p = self.out_per_subpixel
    if self.architecture == 'mlp':
      logits = out.view(-1, p)  # x is NHWC: same (h, w, c) order as out
      target = x.reshape(-1)
    else:
      c = self.image_shape[2]
      logits = out.view(b, c, p, *out.shape[2:])
      logits = logits[:, 0] if c == 1 else logits.transpose(1, 2)  # [B, P, (C,) H, W]
      target = x[:, 0] if c == 1 else x
    if self.likelihood == 'categorical':
      return -F.cross_entropy(logits, target, reduction='sum')
    return -F.binary_cross_entropy_with_logits(
      logits.reshape(target.shape), target.float(), reduction='sum'
    )

  def loss(
    self, x, labels=None, *, train: bool = True, beta: float = 1.0, eps: torch.Tensor | None = None
  ):
    """Mean negative single-sample ELBO in nats (`gm_jax.models.vae.elbo_terms`)."""
    mean, log_var = self.encode(x, labels, train=train)
    if eps is None:
      eps = torch.randn_like(mean)
    z = torch.addcmul(mean, torch.exp(0.5 * log_var), eps)
    log_px = self.log_likelihood(self.decode(z, labels, train=train), x)
    kl = 0.5 * torch.sum(torch.exp(log_var) + mean * mean - 1.0 - log_var)
    return (beta * kl - log_px) / x.shape[0]


def build_module(config, info) -> VAETorch:
  """`gm_jax.families.vae.build_model`, in PyTorch."""
  if config.get('objective', 'elbo') != 'elbo':
    raise NotImplementedError('only the ELBO objective is replicated')
  return VAETorch(
    image_shape=tuple(info.shape),
    num_levels=info.num_levels,
    latent_dim=int(config.latent_dim),
    hidden=tuple(config.hidden),
    architecture=config.architecture,
    likelihood=config.get('likelihood', 'categorical'),
    dropout_rate=float(config.dropout_rate),
    num_classes=info.num_classes if config.model == 'cvae' else 0,
    activation=config.get('activation', 'gelu'),
  )


def make_step(config, info, batch):
  """One training step of the replica on `batch` (converted to tensors once)."""
  module = build_module(config, info)
  module.train()
  x = module.prepare(batch['image'])
  labels = torch.from_numpy(np.asarray(batch['label'])).long() if module.num_classes else None
  beta = float(config.get('beta', 1.0))
  step = common.make_train_step(
    config, module, lambda: module.loss(x, labels, train=True, beta=beta)
  )
  return step, module


# ---------------------------------------------------------------------------------------
# Weight copy from the Flax parameters.


def _t(a) -> torch.Tensor:
  return torch.from_numpy(np.array(a, dtype=np.float32))


def _copy_dense(layer: nn.Linear, p, row_perm=None, col_perm=None):
  k = np.asarray(p['kernel'])  # [in, out]
  b = np.asarray(p['bias'])
  if row_perm is not None:
    k = k[row_perm]
  if col_perm is not None:
    k, b = k[:, col_perm], b[col_perm]
  layer.weight.copy_(_t(k.T))
  layer.bias.copy_(_t(b))


def _copy_conv(layer: nn.Conv2d, p):
  layer.weight.copy_(_t(np.asarray(p['kernel']).transpose(3, 2, 0, 1)))  # HWIO -> OIHW
  layer.bias.copy_(_t(p['bias']))


def _copy_conv_transpose(layer: nn.ConvTranspose2d, p):
  # lax.conv_transpose does not flip the kernel; torch's transposed conv does.
  k = np.asarray(p['kernel'])[::-1, ::-1].transpose(2, 3, 0, 1)  # HWIO -> IOHW, flipped
  layer.weight.copy_(_t(k))
  layer.bias.copy_(_t(p['bias']))


def _hwc_to_chw(h: int, w: int, c: int) -> np.ndarray:
  """perm with `flat_hwc[perm] == flat_chw` (index of the HWC feature at each CHW slot)."""
  return np.arange(h * w * c).reshape(h, w, c).transpose(2, 0, 1).reshape(-1)


@torch.no_grad()
def load_flax_params(module: VAETorch, params) -> VAETorch:
  """Copies the Flax `VAE` parameters (`{'params': ...}` or the inner dict) into `module`."""
  p = params['params'] if 'params' in params else params
  enc, dec = p['encoder'], p['decoder']
  if module.architecture == 'mlp':
    for i, layer in enumerate(module.encoder.hidden):
      _copy_dense(layer, enc[f'Dense_{i}'])
    for i, layer in enumerate(module.decoder.hidden):
      _copy_dense(layer, dec[f'Dense_{i}'])
    _copy_dense(module.decoder.out, dec['out'])
  else:
    e, d = module.encoder, module.decoder
    for i, conv in enumerate(e.convs):
      _copy_conv(conv, enc[f'Conv_{i}'])
    h, w, _ = module.image_shape  # H, W divisible by 4: two stride-2 convs give H/4
    _copy_dense(
      e.dense, enc['Dense_0'], row_perm=_hwc_to_chw(h // 4, w // 4, e.convs[-1].out_channels)
    )
    _copy_dense(d.dense0, dec['Dense_0'])
    _copy_dense(d.dense1, dec['Dense_1'], col_perm=_hwc_to_chw(d.h4, d.w4, d.c0))
    for i, deconv in enumerate(d.deconvs):
      _copy_conv_transpose(deconv, dec[f'ConvTranspose_{i}'])
    _copy_conv(d.out, dec['Conv_0'])
  _copy_dense(module.to_mean, p['to_mean'])
  _copy_dense(module.to_log_var, p['to_log_var'])
  return module
