"""DCGAN generator and discriminator, and the three GAN objectives.

Radford et al. 2016, "Unsupervised Representation Learning with Deep Convolutional
GANs": strided (transposed) convolutions, no pooling, batch norm in both networks
except at the generator's output and the discriminator's input, ReLU in the
generator with a tanh output, LeakyReLU(0.2) in the discriminator. The
discriminator may use spectral normalisation instead (Miyato et al. 2018).
Images live in [-1, 1]; `levels_from_unit` maps generator outputs back onto the
dataset's integer level grid.

Batch-norm statistics (and spectral norm's power-iteration vectors) live in the
`batch_stats` collection. Under `pmap` the modules take `axis_name='data'`, so batch
statistics are averaged over the devices and the global batch is normalised as one
(which is what `jit` over a sharded batch computes).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from gm_jax import losses
from gm_jax.nn import layers

# config.gan_loss -> (discriminator loss, generator loss), both from gm_jax.losses and
# both per example, to be minimised.
GAN_LOSSES: dict[str, tuple[Callable, Callable]] = {
  # Goodfellow et al. 2014, eq. 1: G minimises log(1 - D(G(z))) (saturates).
  'minimax': (losses.discriminator_loss, losses.generator_minimax_loss),
  # Goodfellow et al. 2014, Sec. 3: G maximises log D(G(z)) instead.
  'non_saturating': (losses.discriminator_loss, losses.generator_nonsaturating_loss),
  # Mao et al. 2017, eq. 2 (a=0, b=c=1).
  'lsgan': (losses.lsgan_discriminator_loss, losses.lsgan_generator_loss),
}
GENERATOR_NORMS = ('batch_norm', 'none')
DISCRIMINATOR_NORMS = ('batch_norm', 'spectral_norm', 'none')


def gan_losses(name: str) -> tuple[Callable, Callable]:
  """`(d_loss, g_loss)` for `config.gan_loss == name`; a ValueError names the field."""
  if name not in GAN_LOSSES:
    raise ValueError(f'config.gan_loss must be one of {tuple(GAN_LOSSES)}, got {name!r}')
  return GAN_LOSSES[name]


def levels_from_unit(x: jnp.ndarray, num_levels: int) -> jnp.ndarray:
  """Floats in [-1, 1] -> uint8 on the grid `[0, num_levels)` (nearest level)."""
  levels = jnp.round((jnp.clip(x, -1.0, 1.0) + 1.0) * (num_levels - 1) / 2.0)
  return levels.astype(jnp.uint8)


def _one_hot(labels, num_classes):
  return jax.nn.one_hot(labels, num_classes, dtype=jnp.float32)


class Generator(nn.Module):
  """`z [B, latent] (+ labels [B]) -> images [B, H, W, C]` in [-1, 1].

  Attributes:
    image_shape: `(H, W, C)`; `H` and `W` divisible by `2 ** len(features)`.
    features: channels from the first (smallest) feature map up; each further
      entry and the output layer double the resolution.
    num_classes: > 0 makes it class-conditional (one-hot label joined to `z`).
    norm: 'batch_norm' or 'none'.
  """

  image_shape: tuple[int, int, int]
  features: Sequence[int] = (128, 64)
  num_classes: int = 0
  norm: str = 'batch_norm'

  @nn.compact
  def __call__(self, z, labels=None, *, train: bool = True, axis_name: str | None = None):
    h, w, c = self.image_shape
    factor = 2 ** len(self.features)
    if self.num_classes:
      z = jnp.concatenate([z, _one_hot(labels, self.num_classes)], -1)

    def norm(x):
      if self.norm == 'batch_norm':
        return nn.BatchNorm(use_running_average=not train, momentum=0.9, axis_name=axis_name)(x)
      return x

    # No bias before batch norm: it is cancelled by the normalisation, so its gradient is
    # pure round-off, which Adam would turn into +-lr steps (and device-dependent noise).
    bias = self.norm != 'batch_norm'
    x = nn.Dense(h // factor * (w // factor) * self.features[0], use_bias=bias)(z)
    x = x.reshape((z.shape[0], h // factor, w // factor, self.features[0]))
    x = nn.relu(norm(x))
    for width in self.features[1:]:
      x = layers.ConvTranspose(width, (4, 4), strides=(2, 2), padding='SAME', use_bias=bias)(x)
      x = nn.relu(norm(x))
    x = layers.ConvTranspose(c, (4, 4), strides=(2, 2), padding='SAME')(x)
    return jnp.tanh(x)


class Discriminator(nn.Module):
  """`images [B, H, W, C]` in [-1, 1] (+ labels) -> logits `[B]`.

  Attributes:
    features: channels of the stride-2 convolutions, from the input down.
    num_classes: > 0 makes it class-conditional (one-hot label maps as channels).
    norm: 'batch_norm', 'spectral_norm' or 'none'.
  """

  features: Sequence[int] = (64, 128)
  num_classes: int = 0
  norm: str = 'batch_norm'

  @nn.compact
  def __call__(self, x, labels=None, *, train: bool = True, axis_name: str | None = None):
    if self.num_classes:
      maps = jnp.broadcast_to(
        _one_hot(labels, self.num_classes)[:, None, None, :], x.shape[:3] + (self.num_classes,)
      )
      x = jnp.concatenate([x, maps], -1)

    def layer(module, x, first=False):
      if self.norm == 'spectral_norm':
        return nn.SpectralNorm(module)(x, update_stats=train)
      x = module(x)
      if self.norm == 'batch_norm' and not first:  # DCGAN: no BN on the input layer
        x = nn.BatchNorm(use_running_average=not train, momentum=0.9, axis_name=axis_name)(x)
      return x

    for i, width in enumerate(self.features):
      bias = i == 0 or self.norm != 'batch_norm'  # no bias before batch norm (see Generator)
      x = nn.leaky_relu(
        layer(
          layers.Conv(width, (4, 4), strides=(2, 2), padding='SAME', use_bias=bias), x, first=i == 0
        ),
        0.2,
      )
    x = x.reshape((x.shape[0], -1))
    if self.norm == 'spectral_norm':
      return nn.SpectralNorm(nn.Dense(1))(x, update_stats=train)[:, 0]
    return nn.Dense(1)(x)[:, 0]
