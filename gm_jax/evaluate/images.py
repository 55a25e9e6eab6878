"""Image grids as PNG files (Pillow only; no plotting library needed).

Tiles are separated by a blue-grey gap about an eighth of a tile wide (at least 2 pixels):
a one-pixel white line between 8x8 digits (white strokes on black) let neighbouring tiles
run together into vertical strips; a coloured gap is no grey level of the data.
"""

from __future__ import annotations

import math
import os

import numpy as np
from PIL import Image

GAP_COLOR = (70, 100, 150)  # RGB of the gap between tiles and of empty slots


def _to_pixels(images: np.ndarray, num_levels: int, scale: int) -> np.ndarray:
  """`[N, H, W, C]` levels -> `[N, H * scale, W * scale, 3]` uint8."""
  pixels = np.clip(np.rint(images.astype(np.float64) * 255.0 / (num_levels - 1)), 0, 255)
  pixels = pixels.astype(np.uint8)
  if pixels.shape[-1] == 1:
    pixels = np.repeat(pixels, 3, axis=-1)
  if scale > 1:
    pixels = pixels.repeat(scale, axis=1).repeat(scale, axis=2)
  return pixels


def default_gap(tile_size: int) -> int:
  """The gap between tiles of `tile_size` displayed pixels: max(2, tile_size // 8)."""
  return max(2, tile_size // 8)


def make_grid(
  images: np.ndarray,
  *,
  num_levels: int,
  nrow: int | None = None,
  pad: int | None = None,
  scale: int = 1,
  pad_color: tuple[int, int, int] = GAP_COLOR,
) -> np.ndarray:
  """Tiles images into one uint8 picture.

  Args:
    images: `[N, H, W, C]` integers on the level grid `[0, num_levels)` (C = 1 or 3).
    num_levels: number of grey levels of the data; values are stretched to 0..255.
    nrow: images per row (default: ceil(sqrt(N))).
    pad: pixels of gap between tiles and around them (default `default_gap` of the
      displayed tile size).
    scale: integer nearest-neighbour upscaling (8x8 digits are tiny).
    pad_color: RGB (0..255) of the gap and of empty slots.

  Returns:
    `[rows*(H*scale+pad)+pad, nrow*(W*scale+pad)+pad, 3]` uint8.
  """
  images = np.asarray(images)
  if images.ndim != 4 or images.shape[-1] not in (1, 3):
    raise ValueError(f'images must be [N, H, W, 1 or 3], got shape {images.shape}')
  if num_levels < 2:
    raise ValueError(f'num_levels must be >= 2, got {num_levels}')
  n = images.shape[0]
  pixels = _to_pixels(images, num_levels, scale)
  h, w = pixels.shape[1:3]
  if pad is None:
    pad = default_gap(min(h, w))
  nrow = nrow or max(1, math.ceil(math.sqrt(n)))
  rows = max(1, math.ceil(n / nrow))
  grid = np.full((rows * (h + pad) + pad, nrow * (w + pad) + pad, 3), 0, np.uint8)
  grid[...] = np.asarray(pad_color, np.uint8)
  for i in range(n):
    r, col = divmod(i, nrow)
    y, x = pad + r * (h + pad), pad + col * (w + pad)
    grid[y : y + h, x : x + w] = pixels[i]
  return grid


def _default_scale(images: np.ndarray) -> int:
  return max(1, 64 // max(images.shape[1], 1))  # tiles of about 64 pixels


def save_image_grid(
  images: np.ndarray,
  path: str,
  *,
  num_levels: int,
  nrow: int | None = None,
  scale: int | None = None,
) -> str:
  """Writes `make_grid(images)` to `path` as PNG and returns the path."""
  images = np.asarray(images)
  grid = make_grid(
    images,
    num_levels=num_levels,
    nrow=nrow,
    scale=_default_scale(images) if scale is None else scale,
  )
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  Image.fromarray(grid).save(path)
  return path


def save_trajectory(
  trajectory: np.ndarray,
  path: str,
  *,
  num_levels: int,
  max_columns: int = 11,
  scale: int | None = None,
) -> str:
  """A sampler's trajectory: one row per sample, one column per (chosen) step.

  Args:
    trajectory: `[T, N, H, W, C]` states on the level grid (clip and quantise them first),
      `T` the number of states (the start, then one per step).
    path: the PNG to write.
    num_levels: levels of the data.
    max_columns: at most this many states are shown, evenly spaced, first and last
      always included.

  Returns:
    `path`.
  """
  trajectory = np.asarray(trajectory)
  if trajectory.ndim != 5:
    raise ValueError(f'trajectory must be [T, N, H, W, C], got shape {trajectory.shape}')
  num_states = trajectory.shape[0]
  columns = np.unique(
    np.rint(np.linspace(0, num_states - 1, min(max_columns, num_states))).astype(int)
  )
  chosen = np.swapaxes(trajectory[columns], 0, 1)  # [N, columns, H, W, C]
  tiles = chosen.reshape((-1,) + chosen.shape[2:])
  return save_image_grid(tiles, path, num_levels=num_levels, nrow=len(columns), scale=scale)
