"""Flow layers against the bijector contract and brute-force Jacobians.

Every layer is checked with randomly perturbed parameters (the zero/identity
initialisation would make most checks vacuous), and each check also asserts
that the perturbation made the layer non-trivial.
"""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gm_jax.nn import flows as fl

IMAGE = (2, 4, 4, 2)


def _key(seed):
  # 'rbg' keys: XLA:CPU compiles threefry random bits very slowly (seconds per
  # shape), which would dominate these small tests.
  return jax.random.key(seed, impl='rbg')


_jit = jax.jit  # compiled fast by the suite's XLA flags (tests/conftest.py)


def _init(layer, x, key):
  return _jit(lambda k, x: layer.init(k, x, method=layer.forward_and_log_det))(key, x)


def _perturb(params, seed, scale):
  """Adds N(0, scale^2) noise to every parameter (NumPy: nothing to compile)."""
  rng = np.random.RandomState(seed)
  return jax.tree.map(
    lambda a: a + jnp.asarray(scale * rng.standard_normal(a.shape), a.dtype), params
  )


def _input(shape, kind, seed):
  rng = np.random.RandomState(seed)
  if kind == 'unit':  # inside (0, 1), away from the edges, for Logit
    return jnp.asarray(rng.uniform(0.05, 0.95, shape), jnp.float32)
  return jnp.asarray(1.5 * rng.standard_normal(shape) + 0.3, jnp.float32)


def _checker_keep(parity):
  return lambda shape: np.broadcast_to(fl.checkerboard(shape[1], shape[2], parity) > 0, shape)


def _channel_keep(parity):
  def keep(shape):
    c, k = shape[-1], shape[-1] // 2
    mask = np.zeros(shape, bool)
    if parity == 0:
      mask[..., :k] = True
    else:
      mask[..., c - k :] = True
    return mask

  return keep


# name -> (factory, input shape, input kind, volume preserving?, kept-half mask)
LAYERS = {
  'logit': (lambda: fl.Logit(0.05), IMAGE, 'unit', False, None),
  'additive_coupling_even': (
    lambda: fl.AdditiveCoupling(16, 2, 0),
    (2, 8),
    'normal',
    True,
    lambda s: np.tile([True, False], (s[0], s[1] // 2)),
  ),
  'rescale': (fl.Rescale, (2, 8), 'normal', False, None),
  'affine_checkerboard_0': (
    lambda: fl.AffineCoupling('checkerboard', 0, 8),
    IMAGE,
    'normal',
    False,
    _checker_keep(0),
  ),
  'affine_channel_0': (
    lambda: fl.AffineCoupling('channel', 0, 8),
    IMAGE,
    'normal',
    False,
    _channel_keep(0),
  ),
  'affine_channel_1_sigmoid': (
    lambda: fl.AffineCoupling('channel', 1, 8, scale='sigmoid'),
    IMAGE,
    'normal',
    False,
    _channel_keep(1),
  ),
  'affine_checkerboard_1_resnet': (
    lambda: fl.AffineCoupling('checkerboard', 1, 8, num_blocks=2),
    IMAGE,
    'normal',
    False,
    _checker_keep(1),
  ),
  'additive_coupling_odd': (
    lambda: fl.AdditiveCoupling(16, 2, 1),
    (2, 8),
    'normal',
    True,
    lambda s: np.tile([False, True], (s[0], s[1] // 2)),
  ),
  'affine_channel_1_odd_c': (
    lambda: fl.AffineCoupling('channel', 1, 8),
    (2, 2, 2, 3),
    'normal',
    False,
    _channel_keep(1),
  ),
  'squeeze': (fl.Squeeze, IMAGE, 'normal', True, None),
  'unsqueeze': (fl.Unsqueeze, (2, 2, 2, 8), 'normal', True, None),
  'actnorm': (fl.ActNorm, IMAGE, 'normal', False, None),
  'conv1x1': (lambda: fl.Invertible1x1Conv(seed=3), (2, 4, 4, 3), 'normal', False, None),
  'factor_out': (
    lambda: fl.FactorOut(fl.AffineCoupling('channel', 0, 8)),
    (2, 2, 2, 4),
    'normal',
    False,
    lambda s: np.broadcast_to(np.arange(4) < 3, s),
  ),
  'chain': (
    lambda: fl.Chain(
      (
        fl.ActNorm(),
        fl.Squeeze(),
        fl.Invertible1x1Conv(1),
        fl.AffineCoupling('channel', 0, 8),
        fl.Unsqueeze(),
      )
    ),
    IMAGE,
    'normal',
    False,
    None,
  ),
}


def _jacobian(f, x):
  """Brute-force Jacobian of `x -> f(x)[0]`, as `[B, D, B, D]`."""
  flat = lambda v: f(v.reshape(x.shape))[0].reshape(-1)
  jac = jax.jacfwd(flat)(x.reshape(-1))
  return jac.reshape(x.shape[0], -1, x.shape[0], jac.shape[-1] // x.shape[0])


def _block_log_dets(jac):
  """Per-example slogdet of the diagonal blocks, and the largest cross-example entry."""
  jac = np.asarray(jac, np.float64)
  b = jac.shape[0]
  assert jac.shape[1] == jac.shape[3], 'a bijection keeps the dimension'
  log_dets, cross = [], 0.0
  for i in range(b):
    sign, logabs = np.linalg.slogdet(jac[i, :, i, :])
    assert sign != 0
    log_dets.append(logabs)
    for j in range(b):
      if j != i:
        cross = max(cross, float(np.max(np.abs(jac[i, :, j, :]))))
  return np.array(log_dets), cross


@pytest.mark.parametrize('name', sorted(LAYERS))
def test_bijector_contract(name):
  """Round trips both ways, log-dets against brute-force Jacobians of the
  forward (at x) and inverse (at a random z) maps, and their cancellation."""
  factory, shape, kind, volume_preserving, keep = LAYERS[name]
  layer = factory()
  x = _input(shape, kind, 0)
  params = _perturb(_init(layer, x, _key(1)), 2, 0.3)
  fwd = lambda x: layer.apply(params, x, method=layer.forward_and_log_det)
  inv = lambda z: layer.apply(params, z, method=layer.inverse_and_log_det)

  @_jit
  def check(x, z2):
    z, log_det = fwd(x)
    x_back, inv_log_det = inv(z)
    x2, inv_log_det2 = inv(z2)
    z2_back, _ = fwd(x2)
    return dict(
      z=z,
      log_det=log_det,
      x_back=x_back,
      inv_log_det=inv_log_det,
      z2_back=z2_back,
      inv_log_det2=inv_log_det2,
      jac=_jacobian(fwd, x),
      inv_jac=_jacobian(inv, z2),
    )

  z_shape = jax.eval_shape(fwd, x)[0].shape
  z2 = _input(z_shape, 'normal', 7) * (2.0 if name == 'logit' else 1.0)
  out = check(x, z2)
  chex.assert_shape(out['log_det'], (x.shape[0],))
  # round trips, to 1e-4
  chex.assert_equal_shape([x, out['x_back']])
  np.testing.assert_allclose(out['x_back'], x, atol=1e-4, rtol=1e-4)
  np.testing.assert_allclose(out['z2_back'], z2, atol=1e-4, rtol=1e-4)
  # forward log-det == slogdet of the Jacobian, examples independent
  expected, cross = _block_log_dets(out['jac'])
  np.testing.assert_allclose(out['log_det'], expected, atol=2e-4, rtol=1e-4)
  assert cross == 0.0, 'examples must not influence each other'
  # inverse log-det == slogdet of the inverse's Jacobian, and cancels the forward one
  expected_inv, _ = _block_log_dets(out['inv_jac'])
  np.testing.assert_allclose(out['inv_log_det2'], expected_inv, atol=2e-4, rtol=1e-4)
  np.testing.assert_allclose(out['log_det'] + out['inv_log_det'], 0.0, atol=1e-4)
  if volume_preserving:
    np.testing.assert_array_equal(out['log_det'], 0.0)
  else:  # the perturbed layer really changes volume, so the checks have teeth
    assert float(np.min(np.abs(out['log_det']))) > 1e-2
  if keep is not None:  # couplings pass the conditioning half through untouched
    mask = keep(x.shape)
    np.testing.assert_array_equal(np.asarray(out['z'])[mask], np.asarray(x)[mask])
    assert float(np.min(np.abs(out['z'] - x)[~mask])) > 0.0


@pytest.mark.parametrize(
  'layer',
  [fl.AffineCoupling('checkerboard', 0, 8), fl.AffineCoupling('channel', 1, 8), fl.Rescale()],
)
def test_fresh_layers_start_as_identity(layer):
  x = _input(IMAGE, 'normal', 0)
  z, log_det = _jit(lambda k, x: layer.apply(layer.init(k, x), x))(_key(1), x)
  np.testing.assert_allclose(z, x, atol=1e-6)
  np.testing.assert_allclose(log_det, 0.0, atol=1e-6)


def test_actnorm_data_dependent_init_whitens_the_init_batch():
  x = 3.0 * _input((16, 4, 4, 3), 'normal', 0) + jnp.array([1.0, -2.0, 5.0])
  layer = fl.ActNorm()
  params = _init(layer, x, _key(1))
  z, log_det = layer.apply(params, x, method=layer.forward_and_log_det)
  np.testing.assert_allclose(jnp.mean(z, (0, 1, 2)), 0.0, atol=1e-5)
  np.testing.assert_allclose(jnp.std(z, (0, 1, 2)), 1.0, atol=1e-4)
  expected = -16 * jnp.sum(jnp.log(jnp.std(x, (0, 1, 2))))
  np.testing.assert_allclose(log_det, expected, rtol=1e-4)
  # the state lives in `params` only: no mutable collections
  assert set(params) == {'params'}
  # applying to another batch does not re-initialise
  z2, _ = layer.apply(params, x + 1.0, method=layer.forward_and_log_det)
  np.testing.assert_allclose(
    jnp.mean(z2 - z, (0, 1, 2)), jnp.exp(params['params']['log_scale']), rtol=1e-4
  )


def test_conv1x1_starts_as_a_rotation_and_its_log_det_is_that_of_w():
  layer = fl.Invertible1x1Conv(seed=5)
  x = _input((2, 4, 4, 4), 'normal', 0)
  params = _init(layer, x, _key(1))
  _, log_det = layer.apply(params, x, method=layer.forward_and_log_det)
  np.testing.assert_allclose(log_det, 0.0, atol=1e-5)  # |det| of a rotation is 1
  params = _perturb(params, 2, 0.3)
  z, log_det = layer.apply(params, x, method=layer.forward_and_log_det)
  # recover W column by column from the action on one-hot pixels
  w = layer.apply(params, jnp.eye(4).reshape(4, 1, 1, 4), method=layer.forward_and_log_det)[0]
  w = w.reshape(4, 4).T
  np.testing.assert_allclose(z, jnp.einsum('ij,bhwj->bhwi', w, x), atol=1e-5)
  np.testing.assert_allclose(log_det, 16 * jnp.linalg.slogdet(w)[1], rtol=1e-4)
  # the same seed gives the same constants P, sign(s); a different one differs
  # (eager: these initialisers draw no random numbers, so there is little to compile)
  p2 = layer.init(_key(9), x)
  p3 = fl.Invertible1x1Conv(seed=6).init(_key(1), x)
  chex.assert_trees_all_close(p2, layer.init(_key(1), x))
  assert not np.allclose(p3['params']['lower'], p2['params']['lower'])


def test_squeeze_moves_2x2_blocks_into_channels():
  x = jnp.arange(2 * 4 * 4 * 1, dtype=jnp.float32).reshape(2, 4, 4, 1)
  y, _ = fl.Squeeze().apply({}, x, method=fl.Squeeze().forward_and_log_det)
  chex.assert_shape(y, (2, 2, 2, 4))
  np.testing.assert_array_equal(
    y[0, 0, 0], [x[0, 0, 0, 0], x[0, 0, 1, 0], x[0, 1, 0, 0], x[0, 1, 1, 0]]
  )
  np.testing.assert_array_equal(
    y[1, 1, 0], [x[1, 2, 0, 0], x[1, 2, 1, 0], x[1, 3, 0, 0], x[1, 3, 1, 0]]
  )


def test_logit_log_det_formula():
  x = jnp.array([[0.0, 0.5, 1.0]])
  z, log_det = fl.Logit(0.1).apply({}, x, method=fl.Logit(0.1).forward_and_log_det)
  p = 0.1 + 0.8 * np.array([0.0, 0.5, 1.0])
  np.testing.assert_allclose(z[0], np.log(p / (1 - p)), rtol=1e-5)
  np.testing.assert_allclose(log_det[0], np.sum(np.log(0.8 / (p * (1 - p)))), rtol=1e-5)


def test_dropout_only_in_training_and_inverse_is_deterministic():
  layer = fl.AffineCoupling('channel', 0, 8, dropout_rate=0.5)
  x = _input(IMAGE, 'normal', 0)
  params = _perturb(_init(layer, x, _key(1)), 2, 0.3)

  @_jit
  def run(params, x, key):
    z_eval, _ = layer.apply(params, x, method=layer.forward_and_log_det)
    z_train, _ = layer.apply(
      params, x, train=True, rngs={'dropout': key}, method=layer.forward_and_log_det
    )
    x_back, _ = layer.apply(params, z_eval, method=layer.inverse_and_log_det)
    return z_eval, z_train, x_back

  z_eval, z_train, x_back = run(params, x, _key(3))
  assert not np.allclose(z_eval, z_train)
  np.testing.assert_allclose(x_back, x, atol=1e-5)


@pytest.mark.parametrize('mask', ['checkerboard', 'channel'])
def test_sigmoid_scale_never_amplifies(mask):
  """Glow's `sigmoid(raw + 2)` scale: every per-pixel log-scale is < 0, even with
  large parameters and inputs, so |z_b - t| < |x_b|; with 'tanh' the same
  parameters amplify."""
  x = 20.0 * _input(IMAGE, 'normal', 7)
  sig = fl.AffineCoupling(mask, 0, 8, scale='sigmoid')
  tanh = fl.AffineCoupling(mask, 0, 8)
  params = _perturb(_init(sig, x, _key(2)), 8, 3.0)
  log_det_sig = _jit(lambda p, x: sig.apply(p, x, method=sig.forward_and_log_det))(params, x)[1]
  assert np.all(np.asarray(log_det_sig) < 0)
  # A network that asks for a large scale (raw = +5 on every s channel): 'tanh'
  # amplifies (log-det > 0), 'sigmoid' stays just below 1.
  init = _init(sig, x, _key(2))
  out = init['params']['net']['Conv_2']
  c_s = out['bias'].shape[0] // 2
  asks = {
    'params': {
      'net': dict(init['params']['net'], Conv_2=dict(out, bias=out['bias'].at[:c_s].set(5.0)))
    }
  }
  log_det_tanh = _jit(lambda p, x: tanh.apply(p, x, method=tanh.forward_and_log_det))(asks, x)[1]
  log_det_asks = _jit(lambda p, x: sig.apply(p, x, method=sig.forward_and_log_det))(asks, x)[1]
  assert np.all(np.asarray(log_det_tanh) > 0) and np.all(np.asarray(log_det_asks) < 0)
  # at initialisation (raw = 0) the scale is sigmoid(2) on the transformed half
  _, log_det0 = _jit(lambda p, x: sig.apply(p, x, method=sig.forward_and_log_det))(init, x)
  n_changed = x[0].size // 2
  np.testing.assert_allclose(log_det0, n_changed * np.log(1 / (1 + np.exp(-2.0))), rtol=1e-5)


def test_residual_blocks_start_as_identity_and_keep_plain_names():
  """`num_blocks=0` has the three-convolution names (old checkpoints load); at
  initialisation each residual block is the identity, so the deeper network computes
  what the plain one does with the shared weights."""
  x = _input(IMAGE, 'normal', 4)
  plain, deep = fl.ConvNet(8, 3), fl.ConvNet(8, 3, num_blocks=2)
  p_plain = _jit(plain.init)(_key(0), x)
  p_deep = _jit(deep.init)(_key(0), x)
  assert set(p_plain['params']) == {'Conv_0', 'Conv_1', 'Conv_2'}
  assert set(p_deep['params']) == {
    'Conv_0',
    'Conv_1',
    'Conv_2',
    'block0_conv3x3',
    'block0_conv1x1',
    'block1_conv3x3',
    'block1_conv1x1',
  }
  # Give the zero-initialised output layer weights, then share the plain layers.
  p_deep = {'params': dict(p_deep['params'])}
  p_deep['params']['Conv_2'] = _perturb(p_deep['params']['Conv_2'], 5, 0.3)
  shared = {'params': {k: p_deep['params'][k] for k in ('Conv_0', 'Conv_1', 'Conv_2')}}
  out_plain = _jit(plain.apply)(shared, x)
  np.testing.assert_allclose(_jit(deep.apply)(p_deep, x), out_plain, atol=1e-6)
  assert np.abs(np.asarray(out_plain)).max() > 1e-2
  # Once the blocks' last layers are non-zero, the blocks change the output.
  p_moved = {'params': dict(p_deep['params'])}
  p_moved['params']['block1_conv1x1'] = _perturb(p_moved['params']['block1_conv1x1'], 6, 0.3)
  assert not np.allclose(_jit(deep.apply)(p_moved, x), out_plain, atol=1e-3)


@pytest.mark.parametrize(
  'make, shape',
  [
    (fl.Squeeze, (1, 3, 4, 1)),
    (lambda: fl.AffineCoupling('diagonal'), (1, 4, 4, 2)),
    (lambda: fl.AffineCoupling('channel'), (1, 4, 4, 1)),
    (lambda: fl.AffineCoupling('channel', num_blocks=-1), (1, 4, 4, 2)),
    (lambda: fl.AffineCoupling('channel', scale='exp'), (1, 4, 4, 2)),
    (fl.AdditiveCoupling, (1, 5)),
  ],
)
def test_bad_inputs_raise_named_errors(make, shape):
  layer = make()
  with pytest.raises(ValueError):
    layer.init(_key(0), jnp.zeros(shape), method=layer.forward_and_log_det)
