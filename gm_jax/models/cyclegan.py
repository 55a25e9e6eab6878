"""CycleGAN networks and the image pool (Zhu et al. 2017, "Unpaired Image-to-Image
Translation using Cycle-Consistent Adversarial Networks", Sec. 4 and Appendix 7.2).

* `ResnetGenerator`: c7s1-k, two stride-2 downsamplings, residual blocks, two
  stride-2 upsamplings, c7s1-C with tanh; reflection padding, instance norm.
* `PatchDiscriminator`: 4x4 stride-2 convolutions with LeakyReLU 0.2 and instance
  norm (none on the first layer), a stride-1 layer and a 1-channel patch map of raw
  LSGAN scores (the "70x70 PatchGAN", with fewer layers for small images).
* `image_pool_init` / `image_pool_query`: the history of 50 generated images that the
  discriminators see instead of only the newest fakes (Shrivastava et al. 2017);
  a pure function of `(pool, images, key)`, so the pool is ordinary train state.

Instance norm has no batch statistics, so these networks need nothing from the
data-parallel axis; images are in [-1, 1].
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from gm_jax.nn import layers
from gm_jax.parallel.per_example import per_example_keys


def _reflect(x, pad: int):
  return jnp.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)), mode='reflect')


class ResidualBlock(nn.Module):
  """Two reflection-padded 3x3 convolutions with instance norm, plus the input."""

  features: int

  @nn.compact
  def __call__(self, x):
    conv = lambda: nn.Conv(self.features, (3, 3), padding='VALID', use_bias=False)
    y = nn.relu(nn.InstanceNorm()(conv()(_reflect(x, 1))))
    y = nn.InstanceNorm()(conv()(_reflect(y, 1)))
    return x + y


class ResnetGenerator(nn.Module):
  """`[B, H, W, C]` -> `[B, H, W, C]` in [-1, 1]; `H`, `W` divisible by 4.

  Attributes:
    channels: image channels `C`.
    filters: width of the first layer (Zhu et al.: 64); doubled per downsampling.
    num_blocks: residual blocks at the lowest resolution (Zhu et al.: 6 or 9).
  """

  channels: int
  filters: int = 64
  num_blocks: int = 6

  @nn.compact
  def __call__(self, x):
    f = self.filters
    # Convolutions followed by instance norm have no bias: the norm cancels it, so its
    # gradient is round-off that Adam would amplify into +-lr steps.
    x = nn.relu(
      nn.InstanceNorm()(nn.Conv(f, (7, 7), padding='VALID', use_bias=False)(_reflect(x, 3)))
    )
    for mult in (2, 4):
      x = nn.relu(
        nn.InstanceNorm()(
          nn.Conv(f * mult, (3, 3), strides=(2, 2), padding='SAME', use_bias=False)(x)
        )
      )
    for _ in range(self.num_blocks):
      x = ResidualBlock(4 * f)(x)
    for mult in (2, 1):
      x = nn.relu(
        nn.InstanceNorm()(
          layers.ConvTranspose(f * mult, (3, 3), strides=(2, 2), padding='SAME', use_bias=False)(x)
        )
      )
    return jnp.tanh(nn.Conv(self.channels, (7, 7), padding='VALID')(_reflect(x, 3)))


class PatchDiscriminator(nn.Module):
  """`[B, H, W, C]` -> patch scores `[B, H / 2^n, W / 2^n, 1]` (raw, for LSGAN).

  Attributes:
    filters: width of the first layer (Zhu et al.: 64), doubled per layer up to 8x.
    num_layers: stride-2 layers `n` (Zhu et al.: 3 for 256x256 images).
  """

  filters: int = 64
  num_layers: int = 3

  @nn.compact
  def __call__(self, x):
    for i in range(self.num_layers):
      x = layers.Conv(
        self.filters * min(2**i, 8), (4, 4), strides=(2, 2), padding='SAME', use_bias=i == 0
      )(x)  # no bias before instance norm
      if i > 0:
        x = nn.InstanceNorm()(x)
      x = nn.leaky_relu(x, 0.2)
    x = nn.Conv(self.filters * min(2**self.num_layers, 8), (4, 4), padding='SAME', use_bias=False)(
      x
    )
    x = nn.leaky_relu(nn.InstanceNorm()(x), 0.2)
    return nn.Conv(1, (4, 4), padding='SAME')(x)


def image_pool_init(size: int, image_shape) -> dict:
  """An empty pool: `{'images': zeros [size, H, W, C], 'count': int32 0}`."""
  return {
    'images': jnp.zeros((size,) + tuple(image_shape), jnp.float32),
    'count': jnp.zeros((), jnp.int32),
  }


def image_pool_query(pool: dict, images: jnp.ndarray, key) -> tuple[dict, jnp.ndarray]:
  """Passes `images [B, ...]` through the pool, one at a time, in order.

  Zhu et al. 2017 Sec. 4 (the reference `ImagePool`): while the pool has room an
  image is stored and returned; afterwards, with probability 1/2 a uniformly chosen
  stored image is returned and replaced by the new one, otherwise the new image is
  returned. Image `i` uses the key `fold_in(key, i)`.

  Returns:
    `(new_pool, returned [B, ...])`. A pool of size 0 returns `images` unchanged.
  """
  size = pool['images'].shape[0]
  if size == 0:
    return pool, images

  def one(carry, inp):
    stored, count = carry
    image_key, image = inp
    k_swap, k_index = jax.random.split(image_key)
    has_room = count < size
    swap = jnp.logical_and(~has_room, jax.random.uniform(k_swap) > 0.5)
    slot = jnp.where(has_room, count, jax.random.randint(k_index, (), 0, size))
    old = stored[slot]
    out = jnp.where(swap, old, image)
    write = jnp.logical_or(has_room, swap)
    stored = stored.at[slot].set(jnp.where(write, image, old))
    return (stored, count + has_room.astype(jnp.int32)), out

  (stored, count), out = jax.lax.scan(
    one, (pool['images'], pool['count']), (per_example_keys(key, images.shape[0]), images)
  )
  return {'images': stored, 'count': count}, out
