"""Binarising grey-level images: static (one fixed draw) and dynamic (a draw per step).

A pixel on the level grid `[0, num_levels)` becomes 1 with probability
`p = level / (num_levels - 1)` (so white is always 1: the torchvision / tfds
`/ 255` convention; the `mnist.pkl.gz` values themselves are `level / 256`).

- Static binarisation (Larochelle & Murray 2011 style): one draw per image, from a
  fixed seed, reused for the whole run.
- Dynamic binarisation (Salakhutdinov & Murray 2008; the protocol of Burda et al.
  2016, IWAE, Table 1): a fresh draw each time an image is used for training,
  from that step's PRNG key.

Test (and validation) images are binarised once with a fixed seed in both modes,
so every evaluation sees the same binary test set.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

MODES = ('none', 'static', 'dynamic')


def intensity(images, num_levels: int):
  """Integer levels -> Bernoulli probabilities `level / (num_levels - 1)` (float32)."""
  if num_levels < 2:
    raise ValueError(f'num_levels must be >= 2, got {num_levels}')
  return images.astype(np.float32) / np.float32(num_levels - 1)


def static_binarize(images: np.ndarray, *, num_levels: int, seed) -> np.ndarray:
  """One Bernoulli draw per pixel from `np.random.default_rng(seed)`.

  Args:
    images: integer `[N, ...]` on `[0, num_levels)`.
    num_levels: number of grey levels of `images`.
    seed: anything `np.random.default_rng` accepts (an int or a list of ints).

  Returns:
    uint8 `[N, ...]` of 0/1, the same for the same `(images, seed)`.
  """
  images = np.asarray(images)
  u = np.random.default_rng(seed).random(images.shape, dtype=np.float32)
  return (u < intensity(images, num_levels)).astype(np.uint8)


def dynamic_binarize(images, key, *, num_levels: int):
  """A fresh Bernoulli draw per pixel from `key` (jittable): int `[B, ...]` -> uint8 0/1."""
  p = intensity(jnp.asarray(images), num_levels)
  return jax.random.bernoulli(key, p).astype(jnp.uint8)
