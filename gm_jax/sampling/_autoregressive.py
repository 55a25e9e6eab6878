"""Sampling the autoregressive models, naive or cached.

    samples = sample(model, params, key, shape, method='cached', temperature=1.0)

Both methods draw position `p` (raster order; channels R -> G -> B inside a pixel)
from `softmax(logits_p / temperature)` with the key `fold_in(key, p)`, so the same
`key` gives identical samples from both:

* `'naive'` re-runs the whole network on the partly generated array once per position
  (O(L^2) work for L positions), inside one jitted `lax.fori_loop`.
* `'cached'` keeps per-layer caches of earlier activations and computes only what the
  new position changes (Fast WaveNet, Paine et al. 2016; Fast PixelCNN++, Ramachandran
  et al. 2017): O(L) work. For PixelCNN the vertical stack runs once per finished row
  and the horizontal stack once per channel of each pixel.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp

from gm_jax.models.autoregressive import CausalConvLM
from gm_jax.models.autoregressive import PixelCNN

METHODS = ('cached', 'naive')


def _draw(key, position, logits, temperature):
  """The value at `position`: `int[B]` from `logits [B, K]`, one key per position."""
  return jax.random.categorical(
    jax.random.fold_in(key, position), logits / temperature, axis=-1
  ).astype(jnp.int32)


# -- CausalConvLM ---------------------------------------------------------------------------


def _lm_naive(model, params, key, shape, temperature):
  _, t_len = shape

  def body(t, tokens):
    logits = model.apply(params, tokens)[:, t]
    return tokens.at[:, t].set(_draw(key, t, logits, temperature))

  return jax.lax.fori_loop(0, t_len, body, jnp.zeros(shape, jnp.int32))


def _lm_cached(model, params, key, shape, temperature):
  b, t_len = shape
  cache = model.apply(params, b, method=model.init_cache)

  def body(t, carry):
    tokens, cache, prev = carry
    logits, cache = model.apply(params, cache, prev, t, method=model.decode_step)
    new = _draw(key, t, logits, temperature)
    return tokens.at[:, t].set(new), cache, new

  tokens, _, _ = jax.lax.fori_loop(
    0, t_len, body, (jnp.zeros(shape, jnp.int32), cache, jnp.zeros((b,), jnp.int32))
  )
  return tokens


# -- PixelCNN -------------------------------------------------------------------------------


def _pixelcnn_naive(model, params, key, shape, temperature):
  _, h, w, c = shape

  def body(p, x):
    i, rest = jnp.divmod(p, w * c)
    j, ch = jnp.divmod(rest, c)
    logits = model.apply(params, x)[:, i, j, ch]
    return x.at[:, i, j, ch].set(_draw(key, p, logits, temperature))

  return jax.lax.fori_loop(0, h * w * c, body, jnp.zeros(shape, jnp.int32))


def _pixelcnn_cached(model, params, key, shape, temperature):
  b, h, w, c = shape
  apply = lambda method, *args: model.apply(params, *args, method=method)

  def row(i, carry):
    x, cache = carry

    def column(j, carry):
      x, cache = carry
      pixel = jnp.zeros((b, c), jnp.int32)
      for ch in range(c):  # channels in order; each sees the ones before it
        logits, inputs = apply(model.pixel_logits, cache, pixel, j)
        pixel = pixel.at[:, ch].set(_draw(key, (i * w + j) * c + ch, logits[:, ch], temperature))
      cache = apply(model.push_pixel, cache, pixel, inputs)
      return x.at[:, i, j].set(pixel), cache

    x, cache = jax.lax.fori_loop(0, w, column, (x, cache))
    return x, apply(model.end_row, cache, x[:, i])

  cache = apply(model.init_cache, b, w)
  x, _ = jax.lax.fori_loop(0, h, row, (jnp.zeros(shape, jnp.int32), cache))
  return x


_SAMPLERS = {
  (CausalConvLM, 'naive'): _lm_naive,
  (CausalConvLM, 'cached'): _lm_cached,
  (PixelCNN, 'naive'): _pixelcnn_naive,
  (PixelCNN, 'cached'): _pixelcnn_cached,
}
_JITTED: dict = {}


def _check(model, shape, method, temperature) -> tuple[int, ...]:
  if method not in METHODS:
    raise ValueError(f'method must be one of {METHODS}, got {method!r}')
  if not isinstance(model, (CausalConvLM, PixelCNN)):
    raise TypeError(f'sample() needs a CausalConvLM or PixelCNN, got {type(model).__name__}')
  try:
    shape = tuple(int(s) for s in shape)
  except TypeError as e:
    raise ValueError(f'shape must be a sequence of positive integers, got {shape!r}') from e
  if isinstance(model, CausalConvLM) and len(shape) != 2:
    raise ValueError(f'shape must be (batch, length) for a CausalConvLM, got {shape}')
  if isinstance(model, PixelCNN):
    if len(shape) != 4:
      raise ValueError(
        f'shape must be (batch, height, width, channels) for a PixelCNN, got {shape}'
      )
    if shape[-1] != model.num_channels:
      raise ValueError(
        f'shape has {shape[-1]} channel(s) but the PixelCNN was built with '
        f'num_channels={model.num_channels}'
      )
  if any(s <= 0 for s in shape):
    raise ValueError(f'shape must hold positive sizes, got {shape}')
  if isinstance(temperature, (int, float)) and not temperature > 0:
    raise ValueError(f'temperature must be > 0, got {temperature!r}')
  return shape


def sample(
  model, params, key, shape: Sequence[int], *, method: str = 'cached', temperature: float = 1.0
) -> jnp.ndarray:
  """Draws `shape` values from an autoregressive model, position by position.

  Args:
    model: a `CausalConvLM` or `PixelCNN` (`gm_jax.models.autoregressive`).
    params: its parameters (`model.init(...)`).
    key: PRNG key; position `p` uses `fold_in(key, p)`.
    shape: `(B, T)` for a `CausalConvLM`, `(B, H, W, C)` for a `PixelCNN`.
    method: 'cached' (O(L)) or 'naive' (O(L^2)); same key -> same samples.
    temperature: > 0; logits are divided by it (1 = the model's distribution).

  Returns:
    `int32` array of `shape`: token ids or pixel levels.
  """
  shape = _check(model, shape, method, temperature)
  cache_key = (id(model), shape, method)
  if cache_key not in _JITTED:
    fn = _SAMPLERS[(type(model), method)]
    # The model is kept alive with its compiled sampler, so its id stays unique.
    _JITTED[cache_key] = (model, jax.jit(lambda p, k, t, fn=fn: fn(model, p, k, shape, t)))
  return _JITTED[cache_key][1](params, key, jnp.asarray(temperature, jnp.float32))
