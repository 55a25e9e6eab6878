"""`gm_jax.sampling.sample`: cached == naive for the same key, the right distribution."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gm_jax import losses
from gm_jax import sampling
from gm_jax.models.autoregressive import CausalConvLM
from gm_jax.models.autoregressive import PixelCNN


def _random_params(model, x, seed=0, scale=0.5):
  params = jax.jit(model.init)(jax.random.key(seed), jnp.asarray(x))
  leaves, tree = jax.tree.flatten(params)
  rng = np.random.RandomState(seed)
  return jax.tree.unflatten(
    tree, [a + scale * rng.standard_normal(a.shape).astype(a.dtype) for a in leaves]
  )


@pytest.mark.parametrize('shape,levels', [((3, 5, 4, 1), 17), ((2, 3, 4, 3), 6)])
def test_pixelcnn_cached_equals_naive(shape, levels):
  model = PixelCNN(
    num_levels=levels, num_channels=shape[-1], features=2 * shape[-1] * 3, num_layers=2
  )
  params = _random_params(model, np.zeros(shape, np.int32))
  key = jax.random.key(7)
  naive = np.asarray(sampling.sample(model, params, key, shape, method='naive'))
  cached = np.asarray(sampling.sample(model, params, key, shape, method='cached'))
  assert naive.shape == shape and naive.dtype == np.int32
  np.testing.assert_array_equal(cached, naive)
  assert naive.min() >= 0 and naive.max() < levels
  assert len(np.unique(naive)) > 1
  other = np.asarray(sampling.sample(model, params, jax.random.key(8), shape))
  assert np.any(other != cached)  # the key matters


def test_lm_cached_equals_naive_at_two_temperatures():
  model = CausalConvLM(vocab_size=9, channels=8, dilations=(1, 2, 4, 8))
  shape = (3, 40)
  params = _random_params(model, np.zeros(shape, np.int32))
  for temperature in (1.0, 0.5):
    naive = sampling.sample(
      model, params, jax.random.key(3), shape, method='naive', temperature=temperature
    )
    cached = sampling.sample(model, params, jax.random.key(3), shape, temperature=temperature)
    np.testing.assert_array_equal(np.asarray(cached), np.asarray(naive))


def test_samples_follow_the_model_distribution():
  """Empirical frequencies of every 1x2x2 binary image (4,000 cached draws) against
  exp(-NLL) from the model's logits: chi-square-sized agreement."""
  shape, levels = (1, 2, 2), 2
  model = PixelCNN(num_levels=levels, num_channels=2, features=4, num_layers=1)
  images = np.array(list(itertools.product(range(levels), repeat=4)), np.int32).reshape(
    (-1,) + shape
  )
  params = _random_params(model, images[:1], scale=0.8)
  probs = np.exp(
    -np.asarray(
      jax.jit(lambda p, x: losses.autoregressive_nll(model.apply(p, x), x))(params, images)
    )
  )
  n = 4000
  draws = np.asarray(sampling.sample(model, params, jax.random.key(0), (n,) + shape))
  index = (draws.reshape(n, -1) * (levels ** np.arange(3, -1, -1))).sum(1)
  freq = np.bincount(index, minlength=len(images)) / n
  assert np.all(np.abs(freq - probs) < 5 * np.sqrt(probs * (1 - probs) / n) + 1e-3)


def test_bad_arguments_are_named():
  model = PixelCNN(num_levels=4, features=2, num_layers=1)
  params = _random_params(model, np.zeros((1, 2, 2, 1), np.int32))
  with pytest.raises(ValueError, match='method must be one of'):
    sampling.sample(model, params, jax.random.key(0), (1, 2, 2, 1), method='fast')
  with pytest.raises(ValueError, match='temperature must be > 0'):
    sampling.sample(model, params, jax.random.key(0), (1, 2, 2, 1), temperature=0.0)
  with pytest.raises(ValueError, match=r'\(batch, height, width, channels\)'):
    sampling.sample(model, params, jax.random.key(0), (1, 2, 2))
  with pytest.raises(ValueError, match='num_channels=1'):
    sampling.sample(model, params, jax.random.key(0), (1, 2, 2, 3))
  with pytest.raises(ValueError, match='positive sizes'):
    sampling.sample(model, params, jax.random.key(0), (0, 2, 2, 1))
  with pytest.raises(TypeError, match='CausalConvLM or PixelCNN'):
    sampling.sample(object(), params, jax.random.key(0), (1, 2))
  lm = CausalConvLM(vocab_size=3, channels=2, dilations=(1,))
  with pytest.raises(ValueError, match=r'\(batch, length\)'):
    sampling.sample(lm, params, jax.random.key(0), (1, 2, 2, 1))
