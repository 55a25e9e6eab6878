"""Image grids as PNG files (Pillow only; no plotting library needed)."""

from __future__ import annotations

import math
import os
from typing import Optional

import numpy as np
from PIL import Image


def make_grid(images: np.ndarray, *, num_levels: int, nrow: Optional[int] = None,
              pad: int = 1, scale: int = 1) -> np.ndarray:
  """Tiles images into one uint8 picture.

  Args:
    images: `[N, H, W, C]` integers on the level grid `[0, num_levels)` (C = 1 or 3).
    num_levels: number of grey levels of the data; values are stretched to 0..255.
    nrow: images per row (default: ceil(sqrt(N))).
    pad: pixels of white space between tiles.
    scale: integer nearest-neighbour upscaling (8x8 digits are tiny).

  Returns:
    `[rows*(H+pad)+pad, nrow*(W+pad)+pad, 3]` uint8.
  """
  images = np.asarray(images)
  if images.ndim != 4 or images.shape[-1] not in (1, 3):
    raise ValueError(f'images must be [N, H, W, 1 or 3], got shape {images.shape}')
  n, h, w, c = images.shape
  pixels = np.clip(np.rint(images.astype(np.float64) * 255.0 / (num_levels - 1)), 0, 255)
  pixels = pixels.astype(np.uint8)
  if c == 1:
    pixels = np.repeat(pixels, 3, axis=-1)
  if scale > 1:
    pixels = pixels.repeat(scale, axis=1).repeat(scale, axis=2)
    h, w = h * scale, w * scale
  nrow = nrow or max(1, math.ceil(math.sqrt(n)))
  rows = max(1, math.ceil(n / nrow))
  grid = np.full((rows * (h + pad) + pad, nrow * (w + pad) + pad, 3), 255, np.uint8)
  for i in range(n):
    r, col = divmod(i, nrow)
    y, x = pad + r * (h + pad), pad + col * (w + pad)
    grid[y:y + h, x:x + w] = pixels[i]
  return grid


def save_image_grid(images: np.ndarray, path: str, *, num_levels: int,
                    nrow: Optional[int] = None, scale: Optional[int] = None) -> str:
  """Writes `make_grid(images)` to `path` as PNG and returns the path."""
  images = np.asarray(images)
  if scale is None:
    scale = max(1, 64 // max(images.shape[1], 1))  # tiles of about 64 pixels
  grid = make_grid(images, num_levels=num_levels, nrow=nrow, scale=scale)
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  Image.fromarray(grid).save(path)
  return path
