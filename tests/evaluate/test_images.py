"""Image grids: level stretching, tiling, PNG round trip."""

import numpy as np
import pytest
from PIL import Image

from gm_jax.evaluate import images


def test_grid_stretches_levels_and_tiles_in_order(tmp_path):
  x = np.zeros((3, 2, 2, 1), np.int32)
  x[1] = 16  # white on a 17-level grid
  x[2, 0, 0, 0] = 8
  grid = images.make_grid(x, num_levels=17, nrow=2, pad=1)
  assert grid.shape == (2 * 3 + 1, 2 * 3 + 1, 3) and grid.dtype == np.uint8
  assert (grid[1:3, 1:3] == 0).all()            # tile 0: black
  assert (grid[1:3, 4:6] == 255).all()          # tile 1: white
  assert (grid[4, 1] == 128).all()              # 8/16 of 255, rounded
  assert (grid[4:6, 4:6] == 255).all()          # empty slot stays white padding
  path = images.save_image_grid(x, str(tmp_path / 'g.png'), num_levels=17, nrow=2, scale=1)
  np.testing.assert_array_equal(np.asarray(Image.open(path)), grid)


def test_bad_shape_is_named():
  with pytest.raises(ValueError, match=r'\[N, H, W, 1 or 3\]'):
    images.make_grid(np.zeros((2, 4, 4)), num_levels=2)
