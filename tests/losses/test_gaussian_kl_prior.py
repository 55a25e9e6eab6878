"""`gaussian_kl` with a non-standard diagonal Gaussian prior, against the closed form."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import integrate
from scipy import stats

from gm_jax import losses


def _closed_form(m1, lv1, m2, lv2):
  """float64 KL(N(m1, e^lv1) || N(m2, e^lv2)) summed over all but axis 0."""
  v1, v2 = np.exp(lv1), np.exp(lv2)
  kl = 0.5 * (np.log(v2 / v1) + (v1 + (m1 - m2) ** 2) / v2 - 1.0)
  return kl.reshape(kl.shape[0], -1).sum(1)


_kl = jax.jit(lambda m, lv, pm, plv: losses.gaussian_kl(m, lv, prior_mean=pm, prior_log_var=plv))


def test_matches_closed_form_with_broadcast_prior():
  rng = np.random.default_rng(0)
  m1, lv1 = rng.normal(size=(5, 3, 4)), rng.normal(size=(5, 3, 4))
  m2, lv2 = rng.normal(size=(5, 3, 4)), rng.normal(size=(4,))  # shared prior variances
  out = _kl(*[jnp.asarray(a, jnp.float32) for a in (m1, lv1, m2, lv2)])
  assert out.shape == (5,)
  np.testing.assert_allclose(
    out, _closed_form(m1, lv1, m2, np.broadcast_to(lv2, m2.shape)), rtol=1e-5
  )


@pytest.mark.parametrize(
  'm1, lv1, m2, lv2', [(0.3, -1.0, -0.5, 0.7), (2.0, 0.5, 1.0, -1.5), (-1.0, 0.0, 0.0, 0.0)]
)
def test_matches_numerical_integration(m1, lv1, m2, lv2):
  q = stats.norm(m1, np.exp(0.5 * lv1))
  p = stats.norm(m2, np.exp(0.5 * lv2))
  expected, _ = integrate.quad(
    lambda z: q.pdf(z) * (q.logpdf(z) - p.logpdf(z)), -30, 30, points=[m1, m2], limit=200
  )
  out = _kl(*[jnp.array([v], jnp.float32) for v in (m1, lv1, m2, lv2)])
  np.testing.assert_allclose(out, [expected], rtol=1e-5, atol=1e-7)


def test_default_prior_is_the_old_call_exactly():
  rng = np.random.default_rng(1)
  m, lv = (jnp.asarray(rng.normal(size=(3, 6)), jnp.float32) for _ in range(2))
  zeros = jnp.zeros_like(m)
  old = jax.jit(losses.gaussian_kl)(m, lv)
  np.testing.assert_array_equal(
    jax.jit(lambda a, b: losses.gaussian_kl(a, b, prior_mean=None, prior_log_var=None))(m, lv), old
  )
  np.testing.assert_allclose(_kl(m, lv, zeros, zeros), old, rtol=1e-6)
  with pytest.raises(TypeError):
    losses.gaussian_kl(m, lv, zeros)  # the prior is keyword-only


def test_zero_at_prior_accurate_near_it_and_finite_grads():
  rng = np.random.default_rng(2)
  m, lv = (jnp.asarray(rng.normal(size=(2, 5)), jnp.float32) for _ in range(2))
  np.testing.assert_array_equal(_kl(m, lv, m, lv), np.zeros(2))
  # A posterior 1e-3 away in log-variance: KL ~ d^2 / 4 per dim ~ 2.5e-7, which the
  # naive exp(d) - 1 - d would lose to float32 cancellation.
  near = lv + 1e-3
  out = _kl(m, near, m, lv)
  m64, lv64, near64 = (np.asarray(a, np.float64) for a in (m, lv, near))
  np.testing.assert_allclose(out, _closed_form(m64, near64, m64, lv64), rtol=1e-3)
  extreme = [
    jnp.array([[-30.0, 30.0]]),
    jnp.array([[-40.0, 40.0]]),
    jnp.array([[30.0, -30.0]]),
    jnp.array([[40.0, -40.0]]),
  ]
  value, grads = jax.jit(jax.value_and_grad(lambda *a: jnp.sum(_kl(*a)), argnums=(0, 1, 2, 3)))(
    *extreme
  )
  assert np.isfinite(value) and all(np.all(np.isfinite(g)) for g in grads)


def test_vmap_and_grad_match_closed_form():
  rng = np.random.default_rng(3)
  args = [jnp.asarray(rng.normal(size=(4, 2, 3)), jnp.float32) for _ in range(4)]
  vmapped = jax.jit(jax.vmap(_kl))(*args)
  looped = np.stack([_kl(*[a[i] for a in args]) for i in range(4)])
  np.testing.assert_allclose(vmapped, looped, rtol=1e-6)
  m1, lv1, m2, lv2 = (np.asarray(a[0], np.float64) for a in args)
  g = jax.jit(jax.grad(lambda *a: jnp.sum(_kl(*a)), argnums=(0, 1, 2, 3)))(*[a[0] for a in args])
  # d/dm1 = (m1 - m2) / v2, d/dlv1 = 0.5 (v1 / v2 - 1), d/dlv2 = 0.5 (1 - (v1 + dm^2) / v2).
  v1, v2 = np.exp(lv1), np.exp(lv2)
  np.testing.assert_allclose(g[0], (m1 - m2) / v2, rtol=1e-5)
  np.testing.assert_allclose(g[1], 0.5 * (v1 / v2 - 1), rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(g[2], -(m1 - m2) / v2, rtol=1e-5)
  np.testing.assert_allclose(g[3], 0.5 * (1 - (v1 + (m1 - m2) ** 2) / v2), rtol=1e-5, atol=1e-6)


def test_shape_errors_name_the_arguments():
  with pytest.raises(ValueError, match='prior_mean'):
    losses.gaussian_kl(jnp.zeros((2, 3)), jnp.zeros((2, 3)), prior_mean=jnp.zeros((4,)))
