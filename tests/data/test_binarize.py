"""Static and dynamic binarisation: probabilities, determinism, keys."""

import jax
import numpy as np
import pytest

from gm_jax.data import binarize


def test_intensity_maps_the_grid_onto_0_1():
  np.testing.assert_allclose(binarize.intensity(np.array([0, 51, 255]), 256), [0, 0.2, 1])
  with pytest.raises(ValueError, match='num_levels'):
    binarize.intensity(np.array([0]), 1)


def test_static_is_a_fixed_draw_with_the_right_frequency():
  levels = np.tile(np.arange(0, 256, 17, dtype=np.uint8), (4000, 1))  # 16 levels
  a = binarize.static_binarize(levels, num_levels=256, seed=[0, 2])
  assert a.dtype == np.uint8 and set(np.unique(a)) == {0, 1}
  np.testing.assert_array_equal(a, binarize.static_binarize(levels, num_levels=256, seed=[0, 2]))
  assert not np.array_equal(a, binarize.static_binarize(levels, num_levels=256, seed=[1, 2]))
  p = levels[0] / 255
  # Binomial standard error over 4,000 draws is <= 0.008; 5 of them.
  np.testing.assert_allclose(a.mean(0), p, atol=0.04)
  assert a[:, 0].sum() == 0 and a[:, -1].all()  # Levels 0 and 255 are certain.


def test_dynamic_draws_depend_only_on_the_key():
  levels = np.tile(np.arange(0, 256, 17, dtype=np.uint8), (4000, 1))
  draw = jax.jit(lambda x, k: binarize.dynamic_binarize(x, k, num_levels=256))
  key = jax.random.key(0)
  a, b = np.asarray(draw(levels, key)), np.asarray(draw(levels, key))
  c = np.asarray(draw(levels, jax.random.fold_in(key, 1)))
  assert a.dtype == np.uint8
  np.testing.assert_array_equal(a, b)
  assert not np.array_equal(a, c)
  np.testing.assert_allclose(a.mean(0), levels[0] / 255, atol=0.04)
  np.testing.assert_allclose(c.mean(0), levels[0] / 255, atol=0.04)
