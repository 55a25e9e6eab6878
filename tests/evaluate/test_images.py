"""Image grids: level stretching, tiling with a visible gap, PNG round trip, trajectories."""

import numpy as np
from PIL import Image
import pytest

from gm_jax.evaluate import images


def test_grid_stretches_levels_and_tiles_in_order(tmp_path):
  x = np.zeros((3, 2, 2, 1), np.int32)
  x[1] = 16  # white on a 17-level grid
  x[2, 0, 0, 0] = 8
  grid = images.make_grid(x, num_levels=17, nrow=2, pad=1)
  assert grid.shape == (2 * 3 + 1, 2 * 3 + 1, 3) and grid.dtype == np.uint8
  assert (grid[1:3, 1:3] == 0).all()  # tile 0: black
  assert (grid[1:3, 4:6] == 255).all()  # tile 1: white
  assert (grid[4, 1] == 128).all()  # 8/16 of 255, rounded
  assert (grid[4:6, 4:6] == images.GAP_COLOR).all()  # empty slot: the gap's colour
  path = images.save_image_grid(x, str(tmp_path / 'g.png'), num_levels=17, nrow=2, scale=1)
  np.testing.assert_array_equal(
    np.asarray(Image.open(path)), images.make_grid(x, num_levels=17, nrow=2)
  )


def test_gap_is_grey_and_wide_enough_between_scaled_digits():
  # Black tiles with white strokes on their edges: the gap between them is neither.
  x = np.zeros((2, 8, 8, 1), np.int32)
  x[:, :, 0] = x[:, :, -1] = 16
  grid = images.make_grid(x, num_levels=17, nrow=2, scale=8)
  gap = images.default_gap(64)
  assert gap == 8
  assert grid.shape == (64 + 2 * gap, 2 * 64 + 3 * gap, 3)
  between = grid[gap : gap + 64, gap + 64 : 2 * gap + 64]
  assert (between == images.GAP_COLOR).all()
  assert (grid[gap : gap + 64, gap + 63] == 255).all()  # tile 0's right stroke
  assert images.default_gap(8) == 2


def test_trajectory_rows_are_samples_and_columns_steps(tmp_path):
  t, n = 5, 2
  traj = np.zeros((t, n, 2, 2, 1), np.int32)
  for s in range(t):
    traj[s, 1] = 4 * s  # sample 1 brightens step by step; sample 0 stays black
  path = images.save_trajectory(
    traj, str(tmp_path / 't.png'), num_levels=17, max_columns=3, scale=1
  )
  grid = np.asarray(Image.open(path))
  pad = images.default_gap(2)
  assert grid.shape == (2 * (2 + pad) + pad, 3 * (2 + pad) + pad, 3)
  # Columns are states 0, 2, 4 of sample 1 (second row): levels 0, 8, 16.
  row1 = pad + (2 + pad)
  got = [grid[row1, pad + c * (2 + pad), 0] for c in range(3)]
  assert got == [0, 128, 255]
  assert (grid[pad : pad + 2, pad : pad + 2 + 2 * (2 + pad)] != 255).all()  # sample 0 stays dark
  with pytest.raises(ValueError, match=r'\[T, N, H, W, C\]'):
    images.save_trajectory(traj[0], str(tmp_path / 'x.png'), num_levels=17)


def test_bad_shape_is_named():
  with pytest.raises(ValueError, match=r'\[N, H, W, 1 or 3\]'):
    images.make_grid(np.zeros((2, 4, 4)), num_levels=2)
