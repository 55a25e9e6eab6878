"""An exponential moving average of parameters as a pure `(init, update)` pair.

    ema = ema_init(params)
    ema = ema_update(ema, params, decay=0.999, count=n)   # after the n-th optimiser step

`ema_update` uses the warm-up decay `min(decay, (1 + n) / (10 + n))` after `n` earlier
updates (`tf.train.ExponentialMovingAverage(num_updates=...)`, as in the DDPM and
score-SDE code): early averages are not dominated by the random initialisation, and
`decay = 0` makes the average the parameters themselves (EMA off). The average is kept
in float32 whatever the parameters' dtype.

Why not `optax.ema` (optax 0.2.8): it is a `GradientTransformation` that averages the
*updates* it is chained with (and replaces them by their average), starting from zeros
with Adam's bias correction `1 - decay^t` instead of this warm-up, in the updates' dtype
unless told otherwise. Averaging the parameters would need it outside the optimiser
chain anyway, fed the parameters as "updates", with another warm-up than the usual one
for diffusion models; optax.contrib (0.2.8) has nothing for parameter averaging either.
These two functions are what the trainer needs: pure, jittable, inside the step.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def _is_float(leaf) -> bool:
  return jnp.issubdtype(jnp.result_type(leaf), jnp.floating)


def ema_init(params):
  """The starting average: a copy of `params`, every floating leaf as float32.

  Always new buffers (never `params`' own), so a step that donates its state may hold
  both.
  """
  return jax.tree.map(
    lambda p: jnp.array(p, jnp.float32, copy=True) if _is_float(p) else jnp.array(p, copy=True),
    params,
  )


def ema_decay(decay, count) -> jnp.ndarray:
  """The warm-up decay `min(decay, (1 + count) / (10 + count))` (float32 scalar)."""
  count = jnp.asarray(count, jnp.float32)
  return jnp.minimum(jnp.asarray(decay, jnp.float32), (1.0 + count) / (10.0 + count))


def ema_update(ema, params, *, decay, count):
  """The average after one more update: `d ema + (1 - d) params`, `d = ema_decay(decay, count)`.

  Args:
    ema: the current average (`ema_init(params)` at first), float32 leaves.
    params: the parameters after the optimiser step (same tree as `ema`).
    decay: in `[0, 1)` (a float, or a traced scalar, unchecked); 0 copies `params`.
    count: `n`, the number of updates applied to `ema` before this one (an int or an int
      array: the optimiser step count works).

  Returns:
    the new average, float32 floating leaves; non-floating leaves are `params`'.
  """
  if isinstance(decay, (int, float)) and not 0.0 <= decay < 1.0:
    raise ValueError(f'decay must be in [0, 1), got {decay!r}')
  if jax.tree.structure(ema) != jax.tree.structure(params):
    raise ValueError(
      f'ema and params must have the same tree structure, got '
      f'{jax.tree.structure(ema)} and {jax.tree.structure(params)}'
    )
  d = ema_decay(decay, count)

  def one(e, p):
    if not _is_float(p):
      return jnp.asarray(p)
    return d * jnp.asarray(e, jnp.float32) + (1.0 - d) * jnp.asarray(p, jnp.float32)

  return jax.tree.map(one, ema, params)
