"""`ema_init` / `ema_update` against a float64 NumPy loop."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gm_jax.nn import ema as ema_lib


def _trajectory(num, seed=0):
  """Parameters after each of `num` optimiser steps: a dict of a matrix and a vector."""
  rng = np.random.default_rng(seed)
  w = np.cumsum(rng.normal(size=(num + 1, 3, 2)), axis=0)
  b = np.cumsum(rng.normal(size=(num + 1, 4)), axis=0)
  return [{'w': w[i], 'b': b[i]} for i in range(num + 1)]


def _numpy_ema(trajectory, decay):
  ema = {k: np.asarray(v, np.float64) for k, v in trajectory[0].items()}
  for n, params in enumerate(trajectory[1:]):
    d = min(decay, (1 + n) / (10 + n))
    ema = {k: d * ema[k] + (1 - d) * params[k] for k in ema}
  return ema


@pytest.mark.parametrize('decay', [0.0, 0.9, 0.999])
def test_matches_a_numpy_loop_under_jit(decay):
  traj = _trajectory(60)
  stacked = jax.tree.map(lambda *a: jnp.asarray(np.stack(a), jnp.float32), *traj)

  @jax.jit
  def run(stacked):
    ema = ema_lib.ema_init(jax.tree.map(lambda a: a[0], stacked))

    def body(n, ema):
      params = jax.tree.map(lambda a: a[n + 1], stacked)
      return ema_lib.ema_update(ema, params, decay=decay, count=n)

    return jax.lax.fori_loop(0, len(traj) - 1, body, ema)

  out = run(stacked)
  expected = _numpy_ema(traj, decay)
  for k in expected:
    assert out[k].dtype == jnp.float32
    np.testing.assert_allclose(out[k], expected[k], rtol=1e-5, atol=1e-5)
  if decay == 0.0:  # off: the average is the last parameters
    for k in expected:
      np.testing.assert_array_equal(out[k], np.float32(traj[-1][k]))


def test_warm_up_and_dtypes():
  # the decay actually used: min(decay, (1 + n) / (10 + n))
  for n, want in ((0, 0.1), (1, 2 / 11), (8, 0.5), (10_000, 0.999)):
    np.testing.assert_allclose(ema_lib.ema_decay(0.999, n), want, rtol=1e-6)
  params = {'w': jnp.ones((2,), jnp.bfloat16), 'step': jnp.asarray(3, jnp.int32)}
  ema = ema_lib.ema_init(params)
  assert ema['w'].dtype == jnp.float32 and ema['step'].dtype == jnp.int32
  new = {'w': jnp.full((2,), 3.0, jnp.bfloat16), 'step': jnp.asarray(4, jnp.int32)}
  out = jax.jit(lambda e, p, c: ema_lib.ema_update(e, p, decay=0.5, count=c))(
    ema, new, jnp.asarray(0)
  )
  np.testing.assert_allclose(out['w'], 0.1 * 1.0 + 0.9 * 3.0, rtol=1e-6)
  assert out['w'].dtype == jnp.float32 and int(out['step']) == 4
  # a traced decay works too
  out2 = jax.jit(lambda d: ema_lib.ema_update(ema, new, decay=d, count=100))(0.5)
  np.testing.assert_allclose(out2['w'], 2.0, rtol=1e-6)


def test_bad_input_names_the_argument():
  params = {'w': jnp.ones(2)}
  ema = ema_lib.ema_init(params)
  for decay in (1.0, -0.1, 1.5):
    with pytest.raises(ValueError, match=r'decay must be in \[0, 1\)'):
      ema_lib.ema_update(ema, params, decay=decay, count=0)
  with pytest.raises(ValueError, match='ema and params must have the same tree structure'):
    ema_lib.ema_update(ema, {'w': jnp.ones(2), 'b': jnp.ones(1)}, decay=0.9, count=0)
