"""MAF and neural spline flows on digit-shaped images, in float64.

With random (non-initial) parameters: `log_abs_det` equals `slogdet` of `jacfwd` of the
forward map (1e-8 relative), the inverse (sampling: `D` passes for the autoregressive
flows) round-trips to 1e-8, and `log_prob` is the change of variables.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gm_jax import losses
from gm_jax.models import flows as flows_lib

DIGITS = (2, 8, 8, 1)

# Every layer kind of the defaults (Logit, ActNorm, MADE steps, permutations both
# ways, squeeze, 1x1 convolutions, spline couplings, factor-out), small enough to
# compile quickly.
SMALL = {
  'maf_reverse': flows_lib.MAF(num_layers=2, hidden=64, num_hidden_layers=1, permutation='reverse'),
  'maf_random': flows_lib.MAF(
    num_layers=2, hidden=64, num_hidden_layers=2, permutation='random', actnorm=False
  ),
  'nsf_coupling': flows_lib.NSF(steps_per_scale=1, hidden=8, num_bins=4),
  'nsf_autoregressive': flows_lib.NSF(
    layer='autoregressive', num_layers=2, hidden=64, num_hidden_layers=1, num_bins=4
  ),
}


@pytest.fixture(autouse=True)
def _x64():
  with jax.enable_x64(True):
    yield


def _random_params(model, x, seed, scale):
  shapes = jax.eval_shape(
    lambda k, x: model.init(k, x, method=model.forward_and_log_det), jax.random.key(0), x
  )
  rng = np.random.RandomState(seed)
  return jax.tree.map(lambda a: jnp.asarray(scale * rng.standard_normal(a.shape), a.dtype), shapes)


@pytest.mark.parametrize('name', ['maf', 'nsf'])
def test_defaults_construct_for_digits(name):
  model = flows_lib.MODELS[name]()
  x = jnp.zeros(DIGITS, jnp.float32)
  params = jax.eval_shape(
    lambda k: model.init(k, x, method=model.forward_and_log_det), jax.random.key(0)
  )
  z, log_det = jax.eval_shape(lambda p: model.apply(p, x, method=model.forward_and_log_det), params)
  assert z.shape == DIGITS and log_det.shape == (2,)
  assert z.dtype == jnp.float32


@pytest.mark.parametrize('name', sorted(SMALL))
def test_log_det_and_round_trip_with_random_parameters(name):
  model = SMALL[name]
  rng = np.random.RandomState(0)
  x = jnp.asarray(rng.uniform(0.02, 0.98, DIGITS))
  params = _random_params(model, x, 1, 0.05)
  fwd = lambda v: model.apply(params, v, method=model.forward_and_log_det)
  inv = lambda v: model.apply(params, v, method=model.inverse_and_log_det)

  @jax.jit
  def check(x, z2):
    z, log_det = fwd(x)
    x_back, inv_log_det = inv(z)
    flat = lambda v: fwd(v.reshape(x.shape))[0].reshape(-1)
    return dict(
      z=z,
      log_det=log_det,
      x_back=x_back,
      inv_log_det=inv_log_det,
      z2_back=fwd(inv(z2)[0])[0],
      jac=jax.jacfwd(flat)(x.reshape(-1)),
      log_prob=model.apply(params, x, method=model.log_prob),
    )

  z2 = jnp.asarray(0.8 * rng.standard_normal(DIGITS))
  out = check(x, z2)
  np.testing.assert_allclose(out['x_back'], x, rtol=0, atol=1e-8)
  np.testing.assert_allclose(out['z2_back'], z2, rtol=0, atol=1e-8)
  np.testing.assert_allclose(out['log_det'] + out['inv_log_det'], 0.0, atol=1e-8)
  jac = np.asarray(out['jac']).reshape(2, 64, 2, 64)
  for i in range(2):
    block = jac[i, :, i, :]
    sign, expected = np.linalg.slogdet(block)
    assert sign != 0
    np.testing.assert_allclose(out['log_det'][i], expected, rtol=1e-8)
    np.testing.assert_array_equal(jac[i, :, 1 - i, :], 0.0)
    assert np.max(np.abs(block - np.diag(np.diag(block)))) > 1e-2  # networks are active
  np.testing.assert_allclose(
    out['log_prob'], -losses.flow_nll(out['z'], out['log_det']), rtol=1e-12
  )


def test_maf_density_is_one_pass_and_sampling_inverts_it():
  """The MAF latent of one pixel changes when an earlier pixel changes, never a later one
  (autoregressive in the flattened order, one MADE; no permutation, no ActNorm)."""
  model = flows_lib.MAF(num_layers=1, hidden=64, num_hidden_layers=1, actnorm=False)
  x = jnp.asarray(np.random.RandomState(2).uniform(0.1, 0.9, (1, 8, 8, 1)))
  params = _random_params(model, x, 3, 0.1)
  flat = lambda v: model.apply(params, v.reshape(x.shape), method=model.forward_and_log_det)[
    0
  ].reshape(-1)
  jac = np.asarray(jax.jit(jax.jacfwd(flat))(x.reshape(-1)))
  np.testing.assert_array_equal(jac[np.triu_indices(64, 1)], 0.0)
  assert np.mean(jac[np.tril_indices(64, -1)] != 0) > 0.9


def test_nll_under_jit_vmap_and_grad():
  model = SMALL['nsf_coupling']
  x = jnp.asarray(np.random.RandomState(4).uniform(0.02, 0.98, DIGITS), jnp.float32)
  with jax.enable_x64(False):
    params = jax.jit(lambda k, x: model.init(k, x, method=model.forward_and_log_det))(
      jax.random.key(0), x
    )
    # perturbed: the zero-initialised last convolutions would stop the other gradients
    rng = np.random.RandomState(5)
    params = jax.tree.map(
      lambda a: a + jnp.asarray(0.02 * rng.standard_normal(a.shape), a.dtype), params
    )

    def per_example(params, x):
      z, log_det = model.apply(params, x, method=model.forward_and_log_det)
      return flows_lib.discrete_nll(z, log_det, num_levels=17)

    @jax.jit
    def run(params, x):
      grads = jax.grad(lambda p: jnp.mean(per_example(p, x)))(params)
      return per_example(params, x), jax.vmap(lambda v: per_example(params, v[None])[0])(x), grads

    bound, vmapped, grads = run(params, x)
  np.testing.assert_allclose(vmapped, bound, rtol=1e-5)
  assert bound.dtype == jnp.float32 and np.all(np.isfinite(bound))
  assert bound.mean() / (64 * math.log(2)) < 10
  leaves = jax.tree.leaves(grads)
  assert all(bool(jnp.all(jnp.isfinite(g))) for g in leaves)
  assert sum(float(jnp.max(jnp.abs(g))) > 0 for g in leaves) == len(leaves)


@pytest.mark.parametrize(
  'model, shape, match',
  [
    (flows_lib.NSF(layer='conv'), DIGITS, 'layer'),
    (flows_lib.NSF(), (1, 6, 8, 1), 'divisible by 4'),
    (flows_lib.NSF(num_bins=1), DIGITS, 'num_bins'),
    (flows_lib.MAF(permutation='sorted'), DIGITS, 'permutation'),
    (flows_lib.MAF(), (1, 64), r'\[B, H, W, C\]'),
  ],
)
def test_bad_settings_raise_named_errors(model, shape, match):
  with pytest.raises(ValueError, match=match):  # raised while tracing: no op need run
    jax.eval_shape(
      lambda x: model.init(jax.random.key(0), x, method=model.forward_and_log_det),
      jax.ShapeDtypeStruct(shape, jnp.float32),
    )
