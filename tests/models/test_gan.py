"""DCGAN / CycleGAN modules, the loss table and the image pool."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gm_jax import losses
from gm_jax.models import cyclegan as cg
from gm_jax.models import gan

_jit = jax.jit  # compiled fast by the suite's XLA flags (tests/conftest.py)


def test_loss_table_uses_exactly_the_gm_jax_losses():
  assert gan.GAN_LOSSES['minimax'] == (losses.discriminator_loss, losses.generator_minimax_loss)
  assert gan.GAN_LOSSES['non_saturating'] == (
    losses.discriminator_loss,
    losses.generator_nonsaturating_loss,
  )
  assert gan.GAN_LOSSES['lsgan'] == (losses.lsgan_discriminator_loss, losses.lsgan_generator_loss)
  with pytest.raises(ValueError, match=r"config.gan_loss must be one of .* got 'wgan'"):
    gan.gan_losses('wgan')


def test_levels_from_unit_is_the_inverse_of_images_to_unit():
  from gm_jax.nn.layers import images_to_unit

  levels = jnp.arange(17, dtype=jnp.uint8)
  np.testing.assert_array_equal(gan.levels_from_unit(images_to_unit(levels, 17), 17), levels)
  np.testing.assert_array_equal(gan.levels_from_unit(jnp.array([-3.0, 3.0]), 17), [0, 16])


@pytest.mark.parametrize('norm', ['batch_norm', 'spectral_norm'])
def test_generator_and_discriminator_shapes(norm):
  g = gan.Generator(image_shape=(8, 8, 1), features=(8, 4), num_classes=10)
  d = gan.Discriminator(features=(4, 8), num_classes=10, norm=norm)
  z, labels = jnp.ones((3, 5)), jnp.array([0, 4, 9])

  @_jit  # one compilation instead of many eager op-by-op ones
  def run(z, labels):
    gv = g.init(jax.random.key(0), z, labels, train=False)
    x, _ = g.apply(gv, z, labels, train=True, mutable=['batch_stats'])
    dv = d.init(jax.random.key(1), x, labels, train=False)
    out, _ = d.apply(dv, x, labels, train=True, mutable=['batch_stats'])
    out2, _ = d.apply(dv, x, labels[::-1], train=True, mutable=['batch_stats'])
    return x, dv, out, out2

  x, dv, out, out2 = run(z, labels)
  assert x.shape == (3, 8, 8, 1) and float(jnp.max(jnp.abs(x))) <= 1.0
  assert 'batch_stats' in dv  # BN running averages or spectral norm's power-iteration vector
  assert out.shape == (3,)
  assert not np.allclose(out, out2)  # conditioning matters: other labels, other logits


def test_cyclegan_networks_shapes():
  gen = cg.ResnetGenerator(channels=3, filters=4, num_blocks=1)
  disc = cg.PatchDiscriminator(filters=4, num_layers=2)
  x = jax.random.uniform(jax.random.key(0), (2, 16, 16, 3), minval=-1, maxval=1)

  @_jit
  def run(x):
    y = gen.apply(gen.init(jax.random.key(1), x), x)
    return y, disc.apply(disc.init(jax.random.key(2), x), x)

  y, scores = run(x)
  assert y.shape == x.shape and float(jnp.max(jnp.abs(y))) <= 1.0
  assert scores.shape == (2, 4, 4, 1)


def _reference_pool(stored, count, images, key):
  """The reference ImagePool.query, written as a plain Python loop."""
  stored, out = np.array(stored), []
  size = len(stored)
  for i, image in enumerate(np.asarray(images)):
    k_swap, k_index = jax.random.split(jax.random.fold_in(key, i))
    if count < size:
      stored[count] = image
      count += 1
      out.append(image)
    elif float(jax.random.uniform(k_swap)) > 0.5:
      j = int(jax.random.randint(k_index, (), 0, size))
      out.append(stored[j].copy())
      stored[j] = image
    else:
      out.append(image)
  return stored, count, np.stack(out)


def test_image_pool_matches_reference_loop():
  pool = cg.image_pool_init(5, (2, 2, 1))
  query = _jit(cg.image_pool_query)
  ref_stored, ref_count = np.asarray(pool['images']), 0
  returned_old = 0
  for step in range(4):  # 4 x 3 images through a pool of 5: fills, then swaps
    images = jnp.full((3, 2, 2, 1), 1.0) * (10 * step + jnp.arange(1, 4))[:, None, None, None]
    key = jax.random.key(step)
    pool, out = query(pool, images, key)
    ref_stored, ref_count, ref_out = _reference_pool(ref_stored, ref_count, images, key)
    np.testing.assert_array_equal(pool['images'], ref_stored)
    np.testing.assert_array_equal(out, ref_out)
    assert int(pool['count']) == ref_count == min(5, 3 * (step + 1))
    returned_old += int(np.sum(np.any(np.asarray(out) != np.asarray(images), axis=(1, 2, 3))))
  assert returned_old > 0  # the history was used once the pool was full


def test_image_pool_of_size_zero_passes_through():
  pool = cg.image_pool_init(0, (2, 2, 1))
  images = jnp.ones((3, 2, 2, 1))
  new_pool, out = cg.image_pool_query(pool, images, jax.random.key(0))
  assert out is images and new_pool is pool
