"""NICE, RealNVP and Glow against the bijector contract and independent checks.

Parameters are randomly perturbed away from the (near-identity) initialisation
before every check; brute-force Jacobians use `jax.jacfwd`, and the density of
a tiny NICE is integrated numerically.
"""

import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gm_jax import losses
from gm_jax.models import flows as flows_lib

DIGITS = (2, 8, 8, 1)


def _key(seed):
  # 'rbg' keys: XLA:CPU compiles threefry random bits very slowly.
  return jax.random.key(seed, impl='rbg')


def _perturb(params, seed, scale):
  rng = np.random.RandomState(seed)
  return jax.tree.map(
    lambda a: a + jnp.asarray(scale * rng.standard_normal(a.shape), a.dtype), params
  )


def _images(shape, seed, lo=0.02, hi=0.98):
  return jnp.asarray(np.random.RandomState(seed).uniform(lo, hi, shape), jnp.float32)


# Compile fast rather than run fast: these programs run once. Numerics are
_jit = jax.jit  # compiled fast by the suite's XLA flags (tests/conftest.py)


def _init(model, x, seed=1):
  return _jit(lambda k, x: model.init(k, x, method=model.forward_and_log_det))(_key(seed), x)


def _random_params(model, x, seed, scale):
  """Parameters of `model`'s structure drawn i.i.d. N(0, scale^2) with NumPy.

  Stronger than perturbing the initialisation (nothing starts as identity) and
  compiles nothing. Any values are valid: the LU 1x1 convolution is invertible
  for every (L, U, log_s), and the coupling scales are soft-clamped.
  """
  shapes = jax.eval_shape(
    lambda k, x: model.init(k, x, method=model.forward_and_log_det), _key(0), x
  )
  rng = np.random.RandomState(seed)
  return jax.tree.map(lambda a: jnp.asarray(scale * rng.standard_normal(a.shape), a.dtype), shapes)


def _jacobian(f, x):
  flat = lambda v: f(v.reshape(x.shape))[0].reshape(-1)
  jac = jax.jacfwd(flat)(x.reshape(-1))
  return jac.reshape(x.shape[0], -1, x.shape[0], jac.shape[-1] // x.shape[0])


# Full architectures (multi-scale, factor-out, split prior, both parities) at a
# depth that compiles quickly; the default depths only repeat these blocks.
SHALLOW = {
  'nice': flows_lib.NICE(),
  'realnvp': flows_lib.RealNVP(num_checkerboard=2, num_channel=2, num_final=2),
  'glow': flows_lib.Glow(steps_per_scale=2),
  'glow_sigmoid_resnet': flows_lib.Glow(steps_per_scale=1, num_blocks=1, coupling_scale='sigmoid'),
}


@pytest.mark.parametrize('name', sorted(flows_lib.MODELS))
def test_default_models_construct_and_keep_the_shape(name):
  model = flows_lib.MODELS[name]()
  x = jnp.zeros(DIGITS)
  params = jax.eval_shape(lambda k: model.init(k, x, method=model.forward_and_log_det), _key(0))
  z, log_det = jax.eval_shape(lambda p: model.apply(p, x, method=model.forward_and_log_det), params)
  assert z.shape == DIGITS and log_det.shape == (2,)


@pytest.mark.parametrize('name', ['realnvp', 'glow'])
def test_num_blocks_reaches_every_coupling_network(name):
  """`num_blocks` puts residual blocks into every coupling network of the model
  (Glow's split prior included); 0 leaves none."""
  x = jnp.zeros(DIGITS)

  def nets(model):
    params = jax.eval_shape(lambda k: model.init(k, x, method=model.forward_and_log_det), _key(0))
    found = []

    def visit(tree, path):
      for k, v in tree.items():
        if k == 'net':
          found.append((path, sorted(n for n in v if n.startswith('block'))))
        elif isinstance(v, dict):
          visit(v, path + (k,))

    visit(params['params'], ())
    return found

  plain = nets(flows_lib.MODELS[name](num_blocks=0))
  deep = nets(flows_lib.MODELS[name](num_blocks=2))
  assert len(plain) == len(deep) >= 8
  assert all(blocks == [] for _, blocks in plain)
  expected = ['block0_conv1x1', 'block0_conv3x3', 'block1_conv1x1', 'block1_conv3x3']
  assert all(blocks == expected for _, blocks in deep)
  if name == 'glow':
    assert any('split_prior' in '/'.join(path) for path, _ in deep)


@pytest.mark.parametrize('name', sorted(SHALLOW))
def test_model_contract(name):
  """Model on digit-shaped input with random parameters: round trips,
  log-det == slogdet(jacfwd), inverse log-det cancels, log_prob == -flow_nll."""
  model = SHALLOW[name]
  x = _images(DIGITS, 0)
  params = _random_params(model, x, 2, 0.03)
  fwd = lambda x: model.apply(params, x, method=model.forward_and_log_det)
  inv = lambda z: model.apply(params, z, method=model.inverse_and_log_det)
  z2 = jnp.asarray(np.random.RandomState(3).standard_normal(DIGITS), jnp.float32)

  @_jit
  def check(x, z2):
    z, log_det = fwd(x)
    x_back, inv_log_det = inv(z)
    z2_back, _ = fwd(inv(z2)[0])
    return dict(
      z=z,
      log_det=log_det,
      x_back=x_back,
      inv_log_det=inv_log_det,
      z2_back=z2_back,
      jac=_jacobian(fwd, x),
      log_prob=model.apply(params, x, method=model.log_prob),
    )

  out = check(x, z2)
  chex.assert_shape([out['z'], out['x_back']], DIGITS)
  chex.assert_shape([out['log_det'], out['log_prob']], (2,))
  np.testing.assert_allclose(out['x_back'], x, atol=1e-4)
  np.testing.assert_allclose(out['z2_back'], z2, atol=1e-4)
  jac = np.asarray(out['jac'], np.float64)
  for i in range(2):
    block = jac[i, :, i, :]
    sign, expected = np.linalg.slogdet(block)
    assert sign != 0
    np.testing.assert_allclose(out['log_det'][i], expected, rtol=1e-4, atol=1e-3)
    np.testing.assert_array_equal(jac[i, :, 1 - i, :], 0.0)
    # the networks are active: pixels depend on other pixels
    assert np.max(np.abs(block - np.diag(np.diag(block)))) > 1e-2
  np.testing.assert_allclose(out['log_det'] + out['inv_log_det'], 0.0, atol=1e-3)
  np.testing.assert_allclose(out['log_prob'], -losses.flow_nll(out['z'], out['log_det']), atol=1e-4)


def test_density_integrates_to_one():
  """exp(log_prob) of a random 2-pixel NICE integrates to 1 over the Logit's
  domain: an end-to-end check of every log-det, Logit included.

  The domain `(lo, hi)` maps onto the real line, so the integral is done in
  `t` with `x = lo + (hi - lo) sigmoid(t)` (the test's own substitution) by the
  midpoint rule on a wide grid, which covers the tails.
  """
  a = 0.1
  model = flows_lib.NICE(num_couplings=3, hidden=16, num_hidden_layers=1, logit_alpha=a)
  x = _images((1, 1, 2, 1), 0)
  params = _random_params(model, x, 2, 0.5)
  lo, hi = -a / (1 - 2 * a), (1 - a) / (1 - 2 * a)
  n, t_max = 500, 12.0  # float32 resolves p = a + (1 - 2a) x down to ~1e-8
  t = -t_max + (np.arange(n) + 0.5) * (2 * t_max / n)
  sig = 1.0 / (1.0 + np.exp(-t))
  grid = lo + (hi - lo) * sig
  dx_dt = (hi - lo) * sig * (1.0 - sig)
  u, v = np.meshgrid(grid, grid, indexing='ij')
  weight = np.outer(dx_dt, dx_dt) * (2 * t_max / n) ** 2
  xs = jnp.asarray(np.stack([u, v], -1).reshape(-1, 1, 2, 1), jnp.float32)
  log_p = np.asarray(
    _jit(lambda x: model.apply(params, x, method=model.log_prob))(xs), np.float64
  ).reshape(n, n)
  mass = float(np.sum(np.exp(log_p) * weight))
  np.testing.assert_allclose(mass, 1.0, atol=2e-3)
  # the mass on [0, 1]^2, which the bits/dim bound uses, is a sub-density
  inside = (u >= 0) & (u <= 1) & (v >= 0) & (v <= 1)
  assert 0.5 < float(np.sum(np.exp(log_p) * weight * inside)) < 1.0


@pytest.fixture(scope='module')
def small_glow():
  """A one-step-per-scale Glow initialised from data (ActNorm) and perturbed."""
  model = flows_lib.Glow(steps_per_scale=1, hidden=8)
  x = _images(DIGITS, 0)
  return model, _perturb(_init(model, x), 2, 0.02), x


def test_flow_nll_under_jit_vmap_and_grad(small_glow):
  model, params, x = small_glow

  def per_example(params, x):
    z, log_det = model.apply(params, x, method=model.forward_and_log_det)
    return flows_lib.discrete_nll(z, log_det, num_levels=17), losses.flow_nll(z, log_det)

  @_jit
  def run(params, x):
    bound, nll = per_example(params, x)
    one = lambda x1: per_example(params, x1[None])[0][0]
    grads = jax.grad(lambda p: jnp.mean(per_example(p, x)[0]))(params)
    return bound, nll, jax.vmap(one)(x), grads

  bound, nll, vmapped, grads = run(params, x)
  chex.assert_shape(bound, (2,))
  np.testing.assert_allclose(vmapped, bound, rtol=1e-5)
  # discrete bound = continuous NLL + D log(levels), the log bin volume
  np.testing.assert_allclose(bound, nll + 64 * math.log(17), rtol=1e-6)
  leaves = jax.tree.leaves(grads)
  assert all(bool(jnp.all(jnp.isfinite(g))) for g in leaves)
  assert sum(float(jnp.max(jnp.abs(g))) > 0 for g in leaves) == len(leaves)


def test_sample_temperature_interpolate_and_quantisation(small_glow):
  model, params, x = small_glow

  @_jit
  def run(key, x):
    shape = (3, 8, 8, 1)
    s0 = flows_lib.sample(model, params, key, shape=shape, temperature=0.0)
    s_hot = flows_lib.sample(model, params, key, shape=shape, temperature=1.0)
    s_cold = flows_lib.sample(model, params, key, shape=shape, temperature=0.5)
    fwd = lambda v: model.apply(params, v, method=model.forward_and_log_det)[0]
    path = flows_lib.interpolate(model, params, x[0], x[1], num_steps=5)
    return dict(
      s0=s0,
      s_hot=s_hot,
      z_hot=fwd(s_hot),
      z_cold=fwd(s_cold),
      path=path,
      z=fwd(x),
      z_mid=fwd(path[2:3]),
    )

  out = run(_key(3), x)
  # temperature 0 gives f^{-1}(0) for every sample; T scales the latent
  np.testing.assert_allclose(out['s0'], jnp.broadcast_to(out['s0'][:1], (3, 8, 8, 1)), atol=1e-6)
  np.testing.assert_allclose(out['z_cold'], 0.5 * out['z_hot'], atol=1e-4)
  assert float(jnp.std(out['z_hot'])) > 0.5
  assert -0.1 < float(jnp.min(out['s_hot'])) and float(jnp.max(out['s_hot'])) < 1.1
  # interpolation: endpoints are the two images, the middle decodes the mid latent
  chex.assert_shape(out['path'], (5, 8, 8, 1))
  np.testing.assert_allclose(out['path'][0], x[0], atol=1e-4)
  np.testing.assert_allclose(out['path'][-1], x[1], atol=1e-4)
  np.testing.assert_allclose(out['z_mid'][0], 0.5 * (out['z'][0] + out['z'][1]), atol=1e-4)


def test_dequantize_quantize():
  k = jnp.asarray(np.random.RandomState(0).randint(0, 17, (4, 8, 8, 1)), jnp.uint8)
  xc = flows_lib.dequantize(_key(5), k, num_levels=17)
  assert xc.dtype == jnp.float32 and float(xc.min()) >= 0 and float(xc.max()) < 1
  np.testing.assert_array_equal(flows_lib.quantize(xc, num_levels=17), k)
  # the noise fills the bin: fractional parts are spread over [0, 1)
  frac = np.asarray(xc * 17 - k)
  assert frac.min() < 0.05 and frac.max() > 0.95
  np.testing.assert_array_equal(
    flows_lib.quantize(jnp.array([-0.1, 1.0, 1.2]), num_levels=17), [0, 16, 16]
  )


@pytest.mark.parametrize(
  'make, shape',
  [
    (flows_lib.Glow, (1, 6, 8, 1)),
    (flows_lib.RealNVP, (1, 8, 5, 1)),
    (flows_lib.NICE, (1, 8, 8)),
  ],
)
def test_bad_shapes_raise(make, shape):
  model = make()
  with pytest.raises(ValueError, match='divisible|B, H, W, C'):
    model.init(_key(0), jnp.zeros(shape), method=model.forward_and_log_det)
