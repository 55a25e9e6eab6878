"""The bfloat16 compute policy: bf16 matmuls, float32 parameters, float32 loss reductions."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import special

from gm_jax import losses
from gm_jax.nn import precision


class _Net(nn.Module):
  @nn.compact
  def __call__(self, x):
    h = nn.gelu(nn.Dense(32)(x.astype(jnp.float32)))
    h = nn.LayerNorm()(h)
    h = nn.Conv(4, (3,), dtype=jnp.float32)(h[..., None])  # an explicit dtype is kept
    return nn.Dense(10)(h.reshape(h.shape[0], -1))


def _dot_dtypes(fn, *args):
  jaxpr = jax.make_jaxpr(fn)(*args)
  found = []

  def walk(jx):
    for eqn in jx.eqns:
      if eqn.primitive.name in ('dot_general', 'conv_general_dilated'):
        found.append(
          (eqn.primitive.name, str(eqn.invars[0].aval.dtype), str(eqn.invars[1].aval.dtype))
        )
      for sub in jax.core.jaxprs_in_params(eqn.params):
        walk(sub)

  walk(jaxpr.jaxpr)
  return found


def test_bf16_policy_runs_open_dtype_layers_in_bf16_and_keeps_float32_params():
  net = _Net()
  x = jnp.ones((4, 6), jnp.uint8)
  params = net.init(jax.random.key(0), x)

  def loss(p):
    return losses.categorical_log_prob(net.apply(p, x), jnp.zeros((4,), jnp.int32)).mean()

  def loss_bf16(p):
    with precision.compute_dtype('bfloat16'):
      return loss(p)

  assert _dot_dtypes(loss, params) == [
    ('dot_general', 'float32', 'float32'),
    ('conv_general_dilated', 'float32', 'float32'),
    ('dot_general', 'float32', 'float32'),
  ]
  assert _dot_dtypes(loss_bf16, params) == [
    ('dot_general', 'bfloat16', 'bfloat16'),
    ('conv_general_dilated', 'float32', 'float32'),
    ('dot_general', 'bfloat16', 'bfloat16'),
  ]
  value, grads = jax.value_and_grad(loss_bf16)(params)
  assert value.dtype == jnp.float32  # the log-likelihood is reduced in float32
  assert all(g.dtype == jnp.float32 for g in jax.tree.leaves(grads))
  np.testing.assert_allclose(value, loss(params), rtol=2e-2)
  # The policy ends with the context: the module definition is unchanged.
  assert _dot_dtypes(loss, params)[0] == ('dot_general', 'float32', 'float32')


def test_losses_widen_bf16_inputs_to_float32():
  logits = jax.random.normal(jax.random.key(1), (3, 784, 17)).astype(jnp.bfloat16)
  x = jax.random.randint(jax.random.key(2), (3, 784), 0, 17)
  got = losses.categorical_log_prob(logits, x)
  assert got.dtype == jnp.float32
  l64 = np.asarray(logits, np.float64)  # the same bf16 values, exactly
  want = (
    np.take_along_axis(l64, np.asarray(x)[..., None], -1)[..., 0] - special.logsumexp(l64, axis=-1)
  ).sum(-1)
  np.testing.assert_allclose(got, want, rtol=1e-5)  # float32 accuracy, not bf16's 1e-2
  kl = losses.gaussian_kl(logits[:, :, 0], logits[:, :, 1])
  assert kl.dtype == jnp.float32


def test_unknown_compute_dtype_is_named():
  with pytest.raises(ValueError, match='config.compute_dtype'):
    with precision.compute_dtype('float16'):
      pass
