"""The rational-quadratic spline against nflows (Durkan et al.'s reference code), in float64.

Independent checks: nflows' `unconstrained_rational_quadratic_spline` (torch, float64) for
values and log-dets both ways; autodiff of the forward map for the log-det; the knots
recomputed in NumPy for continuity; round trips at bin edges and in the tails.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gm_jax.nn import flows as fl
from gm_jax.nn import splines

torch = pytest.importorskip('torch')
nflows_rq = pytest.importorskip('nflows.transforms.splines.rational_quadratic')

K = 6


@pytest.fixture(autouse=True)
def _x64():
  with jax.enable_x64(True):
    yield


def _params(n, seed, scale=1.5):
  rng = np.random.RandomState(seed)
  return (
    scale * rng.standard_normal((n, K)),
    scale * rng.standard_normal((n, K)),
    scale * rng.standard_normal((n, K - 1)),
  )


def _nflows(x, w, h, d, **kw):
  t = lambda a: torch.tensor(np.asarray(a), dtype=torch.float64)
  y, ld = nflows_rq.unconstrained_rational_quadratic_spline(t(x), t(w), t(h), t(d), **kw)
  return y.numpy(), ld.numpy()


def _spline(x, w, h, d, **kw):
  return jax.jit(lambda *a: fl.rational_quadratic_spline(*a, **kw))(x, w, h, d)


def _knots_numpy(u, bound, minimum=1e-3):
  """Knot positions `[n, K + 1]` recomputed from the paper's formulas in NumPy."""
  e = np.exp(u - u.max(-1, keepdims=True))
  sizes = minimum + (1 - minimum * u.shape[-1]) * e / e.sum(-1, keepdims=True)
  knots = np.concatenate([np.zeros((len(u), 1)), np.cumsum(sizes, -1)], -1)
  return 2 * bound * knots - bound


@pytest.mark.parametrize(
  'kw',
  [
    {},
    dict(tail_bound=1.5, min_bin_width=0.05, min_bin_height=0.02, min_derivative=0.1),
  ],
)
def test_matches_nflows_both_ways(kw):
  n = 400
  w, h, d = _params(n, 0)
  bound = kw.get('tail_bound', 3.0)
  x = np.random.RandomState(1).uniform(-1.3 * bound, 1.3 * bound, n)  # tails included
  y, ld = _spline(x, w, h, d, **kw)
  y_ref, ld_ref = _nflows(
    x,
    w,
    h,
    d,
    tails='linear',
    tail_bound=bound,
    **{k: v for k, v in kw.items() if k != 'tail_bound'},
  )
  np.testing.assert_allclose(y, y_ref, rtol=1e-12, atol=1e-12)
  np.testing.assert_allclose(ld, ld_ref, rtol=1e-10, atol=1e-10)
  assert np.sum(np.abs(x) > bound) > 50 and np.sum(np.abs(x) < bound) > 200
  np.testing.assert_array_equal(np.asarray(y)[np.abs(x) > bound], x[np.abs(x) > bound])
  # inverse, on points inside and outside the interval
  xi, ldi = _spline(x, w, h, d, inverse=True, **kw)
  xi_ref, ldi_ref = _nflows(
    x,
    w,
    h,
    d,
    inverse=True,
    tails='linear',
    tail_bound=bound,
    **{k: v for k, v in kw.items() if k != 'tail_bound'},
  )
  np.testing.assert_allclose(xi, xi_ref, rtol=1e-10, atol=1e-10)
  np.testing.assert_allclose(ldi, ldi_ref, rtol=1e-9, atol=1e-9)


def test_log_det_is_the_derivative_and_the_map_is_monotone():
  n = 300
  w, h, d = _params(n, 2)
  x = np.linspace(-3.6, 3.6, n)
  f = lambda x, w, h, d: fl.rational_quadratic_spline(x, w, h, d)[0]
  slope = jax.jit(jax.vmap(jax.grad(f)))(x, w, h, d)
  _, ld = _spline(x, w, h, d)
  np.testing.assert_allclose(ld, np.log(slope), rtol=1e-10, atol=1e-10)
  # one parameter set on a fine grid: strictly increasing, unit slope at the edges
  xs = np.linspace(-3.5, 3.5, 2001)
  rep = lambda a: np.broadcast_to(a[:1], (len(xs),) + a.shape[1:])
  ys, _ = _spline(xs, rep(w), rep(h), rep(d))
  assert np.all(np.diff(np.asarray(ys)) > 0)
  edge_slope = jax.vmap(jax.grad(f))(
    jnp.array([-3.0 + 1e-9, 3.0 - 1e-9]),
    *(np.broadcast_to(a[:1], (2,) + a.shape[1:]) for a in (w, h, d)),
  )
  np.testing.assert_allclose(edge_slope, 1.0, atol=1e-6)


def test_continuous_at_knots_and_round_trip_at_bin_edges_and_tails():
  n = 50
  w, h, d = _params(n, 3)
  xk, yk = _knots_numpy(w, 3.0), _knots_numpy(h, 3.0)  # [n, K + 1]
  rep = lambda a: np.repeat(a, K + 1, axis=0)
  args = (rep(w), rep(h), rep(d))
  eps = 1e-9
  at, _ = _spline(xk.reshape(-1), *args)
  below, _ = _spline(xk.reshape(-1) - eps, *args)
  above, _ = _spline(xk.reshape(-1) + eps, *args)
  # the knots map onto the height knots, and the two sides meet there
  np.testing.assert_allclose(np.asarray(at).reshape(n, -1), yk, atol=1e-12)
  np.testing.assert_allclose(below, at, atol=1e-6)
  np.testing.assert_allclose(above, at, atol=1e-6)
  # inverse at the height knots, just beside them, and far in both tails
  for offset in (0.0, -1e-10, 1e-10, -1e-6, 1e-6):
    y = yk.reshape(-1) + offset
    x, ld_inv = _spline(y, *args, inverse=True)
    y_back, ld = _spline(x, *args)
    np.testing.assert_allclose(y_back, y, rtol=0, atol=1e-10)
    np.testing.assert_allclose(ld + ld_inv, 0.0, atol=1e-8)
  tails = np.array([-50.0, -3.0 - 1e-12, 3.0 + 1e-12, 1e3])
  x, ld = _spline(tails, *(a[:4] for a in (w, h, d)), inverse=True)
  np.testing.assert_array_equal(x, tails)
  np.testing.assert_array_equal(ld, 0.0)


def test_jit_vmap_grad_and_float32():
  n = 16
  w, h, d = _params(n, 4)
  x = np.random.RandomState(5).uniform(-4, 4, n)
  y, ld = _spline(x, w, h, d)
  # vmap over examples of a per-example call gives the batched values
  yv, ldv = jax.jit(jax.vmap(fl.rational_quadratic_spline))(x, w, h, d)
  np.testing.assert_allclose(yv, y, rtol=1e-13)
  np.testing.assert_allclose(ldv, ld, rtol=1e-13)
  # gradients of the log-dets wrt every input are finite (tails included) and
  # match central differences
  loss = lambda x, w, h, d: jnp.sum(
    fl.rational_quadratic_spline(x, w, h, d)[1] ** 2 + fl.rational_quadratic_spline(x, w, h, d)[0]
  )
  grads = jax.jit(jax.grad(loss, argnums=(0, 1, 2, 3)))(x, w, h, d)
  assert all(np.all(np.isfinite(g)) for g in grads)
  step = 1e-6
  e = np.zeros_like(w)
  e[3, 2] = step
  numeric = (loss(x, w + e, h, d) - loss(x, w - e, h, d)) / (2 * step)
  np.testing.assert_allclose(grads[1][3, 2], numeric, rtol=1e-6)
  # float32 stays float32 and close to the float64 values
  y32, ld32 = fl.rational_quadratic_spline(*(jnp.asarray(a, jnp.float32) for a in (x, w, h, d)))
  assert y32.dtype == jnp.float32 and ld32.dtype == jnp.float32
  np.testing.assert_allclose(y32, y, atol=1e-5)


@pytest.mark.parametrize(
  'kwargs, shapes, field',
  [
    ({}, ((3,), (3, 1), (3, 1), (3, 0)), 'unnormalized_widths'),
    ({}, ((3,), (3, 4), (3, 5), (3, 3)), 'unnormalized_heights'),
    ({}, ((3,), (3, 4), (3, 4), (3, 4)), 'unnormalized_derivatives'),
    (dict(min_bin_width=0.25), ((3,), (3, 4), (3, 4), (3, 3)), 'min_bin_width'),
    (dict(min_bin_height=0.5), ((3,), (3, 4), (3, 4), (3, 3)), 'min_bin_height'),
    (dict(min_derivative=0.0), ((3,), (3, 4), (3, 4), (3, 3)), 'min_derivative'),
    (dict(tail_bound=-1.0), ((3,), (3, 4), (3, 4), (3, 3)), 'tail_bound'),
  ],
)
def test_bad_input_names_the_argument(kwargs, shapes, field):
  arrays = [jnp.zeros(s) for s in shapes]
  with pytest.raises(ValueError, match=field):
    fl.rational_quadratic_spline(*arrays, **kwargs)


def test_split_params():
  raw = jnp.arange(2 * splines.num_spline_params(4), dtype=jnp.float32).reshape(2, 11)
  w, h, d = splines.split_spline_params(raw, 4)
  assert (w.shape, h.shape, d.shape) == ((2, 4), (2, 4), (2, 3))
  np.testing.assert_array_equal(jnp.concatenate([w, h, d], -1), raw)
