"""IAF posterior steps, in float64, with random (non-initial) parameters.

Independent checks: `slogdet(jacfwd)` of the map `eps -> z_T` for the log-det and for
`iaf_log_q` (with SciPy's normal log-density), the Jacobian of one step triangular in
its order with diagonal `sigma`, the inverse round trip, jit/vmap/grad.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats

from gm_jax.nn import iaf as iaf_lib

D, C = 5, 3


@pytest.fixture(autouse=True)
def _x64():
  with jax.enable_x64(True):
    yield


def _random_params(module, *args, seed=0, scale=0.4):
  shapes = jax.eval_shape(lambda *a: module.init(jax.random.key(0), *a), *args)
  rng = np.random.RandomState(seed)
  return jax.tree.map(lambda a: jnp.asarray(scale * rng.standard_normal(a.shape), a.dtype), shapes)


@pytest.fixture(scope='module')
def setup():
  with jax.enable_x64(True):
    rng = np.random.RandomState(0)
    iaf = iaf_lib.IAF(num_steps=2, hidden_sizes=(12, 12))
    eps = jnp.asarray(rng.standard_normal((3, D)))
    mean, log_std = (
      jnp.asarray(rng.standard_normal((3, D))),
      jnp.asarray(0.3 * rng.standard_normal((3, D))),
    )
    h = jnp.asarray(rng.standard_normal((3, C)))
    params = _random_params(iaf, eps, h, seed=1)
    return iaf, params, eps, mean, log_std, h


def test_log_q_is_the_change_of_variables(setup):
  iaf, params, eps, mean, log_std, h = setup

  def sample(eps1, mean1, log_std1, h1):
    z0 = mean1 + jnp.exp(log_std1) * eps1
    return iaf.apply(params, z0, h1)

  @jax.jit
  def run(eps, mean, log_std, h):
    z, log_det = jax.vmap(sample)(eps, mean, log_std, h)
    jac = jax.vmap(jax.jacfwd(lambda e, m, s, c: sample(e, m, s, c)[0]))(eps, mean, log_std, h)
    return z, log_det, iaf_lib.iaf_log_q(eps, log_std, log_det), jac

  _, log_det, log_q, jac = run(eps, mean, log_std, h)
  for i in range(3):
    sign, logdet_total = np.linalg.slogdet(np.asarray(jac[i]))
    assert sign > 0
    np.testing.assert_allclose(logdet_total, np.sum(log_std[i]) + log_det[i], rtol=1e-10)
    expected = np.sum(scipy.stats.norm.logpdf(np.asarray(eps[i]))) - logdet_total
    np.testing.assert_allclose(log_q[i], expected, rtol=1e-10)
  # the flow is active: z_T differs from z_0 beyond a diagonal scaling
  assert np.max(np.abs(np.asarray(jac[0]) - np.diag(np.diag(np.asarray(jac[0]))))) > 1e-2


def test_one_step_is_triangular_in_its_order_with_diagonal_sigma():
  rng = np.random.RandomState(2)
  z, h = jnp.asarray(rng.standard_normal(D)), jnp.asarray(rng.standard_normal(C))
  for reverse in (False, True):
    step = iaf_lib.IAFStep((12,), reverse=reverse)
    params = _random_params(step, z, h, seed=3)
    jac = np.asarray(jax.jacfwd(lambda v, s=step, p=params: s.apply(p, v, h)[0])(z))
    upper = np.triu_indices(D, 1)
    strict = jac.T[upper] if reverse else jac[upper]  # later never feeds earlier
    np.testing.assert_array_equal(strict, 0.0)
    _, log_det = step.apply(params, z, h)
    np.testing.assert_allclose(np.sum(np.log(np.diag(jac))), log_det, rtol=1e-12)
    assert np.all((np.diag(jac) > 0) & (np.diag(jac) < 1))  # sigma in (0, 1)


def test_inverse_round_trip(setup):
  iaf, params, eps, mean, log_std, h = setup
  z0 = mean + jnp.exp(log_std) * eps
  z, log_det = iaf.apply(params, z0, h)
  back, inv_log_det = jax.jit(lambda z, h: iaf.apply(params, z, h, method=iaf.inverse))(z, h)
  np.testing.assert_allclose(back, z0, rtol=0, atol=1e-10)
  np.testing.assert_allclose(log_det + inv_log_det, 0.0, atol=1e-10)


def test_jit_vmap_grad(setup):
  iaf, params, eps, mean, log_std, h = setup

  def per_example(params, eps, h):
    z, log_det = iaf.apply(params, mean[0] + jnp.exp(log_std[0]) * eps, h)
    return iaf_lib.iaf_log_q(eps, log_std[0], log_det) + jnp.sum(z, axis=-1)

  batched = jax.jit(lambda p, e, c: per_example(p, e, c))(params, eps, h)
  vmapped = jax.jit(jax.vmap(per_example, in_axes=(None, 0, 0)))(params, eps, h)
  np.testing.assert_allclose(vmapped, batched, rtol=1e-12)
  grads = jax.jit(jax.grad(lambda p: jnp.sum(per_example(p, eps, h))))(params)
  leaves = jax.tree.leaves(grads)
  assert all(np.all(np.isfinite(g)) for g in leaves)
  assert all(float(jnp.max(jnp.abs(g))) > 0 for g in leaves)


def test_fresh_steps_only_shrink_towards_the_made_mean():
  iaf = iaf_lib.IAF(num_steps=1, hidden_sizes=(8,), forget_bias=2.0)
  z = jnp.ones((2, D))
  params = iaf.init(jax.random.key(0), z)
  out, log_det = iaf.apply(params, z)
  sigma = 1.0 / (1.0 + np.exp(-2.0))
  np.testing.assert_allclose(out, sigma * z, rtol=1e-12)  # zero MADE output: m = 0
  np.testing.assert_allclose(log_det, D * np.log(sigma), rtol=1e-12)


def test_bad_num_steps():
  with pytest.raises(ValueError, match='num_steps'):
    iaf_lib.IAF(num_steps=-1).init(jax.random.key(0), jnp.zeros((1, D)))
