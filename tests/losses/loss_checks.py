"""Shared checks for the loss tests: jit with static keyword-only arguments,
jit(vmap) against a loop, and finite values/gradients."""

import inspect

import jax
import jax.numpy as jnp
import numpy as np

RTOL = 1e-5


def _f32(*arrays):
  return [jnp.asarray(a, jnp.float32) for a in arrays]


def _jit(fn):
  """jax.jit with keyword-only hyper-parameters (num_levels, ...) static.

  Every call in these tests is jitted: on CPU, eager op-by-op dispatch compiles
  each primitive separately and is several times slower than one jit.
  """
  static = [
    p.name
    for p in inspect.signature(fn).parameters.values()
    if p.kind is inspect.Parameter.KEYWORD_ONLY
  ]
  return jax.jit(fn, static_argnames=static)


def _assert_close_jit(fn, args, expected, rtol=RTOL, atol=0.0):
  """jax.jit(fn)(*args) equals a float64 reference."""
  out = _jit(fn)(*args)
  assert out.shape == np.shape(expected)
  np.testing.assert_allclose(out, expected, rtol=rtol, atol=atol)


def _assert_jit_vmap_match_loop(fn, *args):
  """jit(vmap(fn)) over an extra leading axis equals a loop of jit(fn)."""
  vmapped = np.asarray(jax.jit(jax.vmap(fn))(*args))
  jitted = _jit(fn)
  looped = np.stack([np.asarray(jitted(*[a[i] for a in args])) for i in range(args[0].shape[0])])
  assert vmapped.shape == looped.shape
  np.testing.assert_allclose(vmapped, looped, rtol=1e-6, atol=1e-6)


def _assert_finite(fn, *args):
  """Values and gradients w.r.t. every argument are finite (jitted).

  A finite sum implies finite terms: inf and nan propagate through a sum.
  """
  total, grads = jax.jit(
    jax.value_and_grad(lambda *a: jnp.sum(fn(*a)), argnums=tuple(range(len(args))))
  )(*args)
  assert np.isfinite(total)
  for g in grads:
    assert np.all(np.isfinite(np.asarray(g))), g
