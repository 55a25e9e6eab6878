"""gm_jax.train.step: which multi-step dispatches XLA:CPU gets unrolled."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from gm_jax.train import step as step_lib


def _conv(x, w):
  return jax.lax.conv_general_dilated(
    x, w, (1, 1), 'SAME', dimension_numbers=('NHWC', 'HWIO', 'NHWC')
  )


def test_convolutions_are_found_in_gradients_and_sub_computations():
  x, w = jnp.ones((1, 8, 8, 3)), jnp.ones((3, 3, 3, 4))
  assert step_lib._has_convolution(_conv, x, w)
  # Under grad, rematerialisation and a cond branch (sub-jaxprs of the equations).
  grad = jax.grad(
    lambda w: jax.lax.cond(True, lambda: jax.checkpoint(_conv)(x, w).sum(), lambda: 0.0)
  )
  assert step_lib._has_convolution(grad, w)
  assert not step_lib._has_convolution(lambda x: jnp.tanh(x.reshape(-1, 3)) @ jnp.ones((3, 2)), x)


def _toy_step(model):
  def step_fn(state, batch, *, axis_name=None):
    del axis_name
    loss, g = jax.value_and_grad(lambda p: jnp.mean(model.apply(p, batch['x']) ** 2))(
      state['params']
    )
    params = jax.tree.map(lambda p, g: p - 0.1 * g, state['params'], g)
    return {'params': params}, {'loss': loss}

  return step_fn


def test_dense_steps_stay_rolled_and_conv_steps_are_unrolled_on_cpu():
  dense, conv = nn.Dense(3), nn.Conv(3, (3, 3))
  chunk = {'x': np.random.default_rng(0).normal(size=(4 * 2, 4, 4, 3)).astype(np.float32)}
  for model, unrolled in ((dense, False), (conv, True)):
    params = model.init(jax.random.key(0), chunk['x'][:2])
    multi = step_lib.make_multi_step(
      _toy_step(model), steps=4, view_devices=1, resident=False
    )  # 4 steps of batch 2
    hlo = jax.jit(multi).lower({'params': params}, chunk).as_text()
    # A rolled scan lowers to one while loop; an unrolled one to none.
    assert ('while' in hlo) != (unrolled and jax.default_backend() == 'cpu'), model
