"""The PyTorch flow replicas (benchmarks/torch_ref/flows.py) are the gm_jax flows.

For each flow case of benchmarks/train_step.py, on a batch of 4: the replica has the
same parameter shapes, its training step gives finite, changing losses, and with the
Flax parameters copied in (random, so that every coupling, ActNorm and 1x1 conv acts)
its loss on the dequantised batch equals `family.loss(..., train=False)`.
"""

import pytest

torch = pytest.importorskip('torch')

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks import train_step
from benchmarks.torch_ref import common
from benchmarks.torch_ref import flows as torch_flows
from gm_jax.families import flows as flows_family
from gm_jax.models import flows as flows_lib

CASES = [c for c in train_step.CASES if c.family == 'flows']
BATCH = 4


def _random_params(shapes, seed):
  """Random Flax params of the given shapes: kernels ~ 1/sqrt(fan_in), the rest ~ 0.1."""
  rng = np.random.default_rng(seed)

  def draw(path, s):
    name = jax.tree_util.keystr(path)
    if 'kernel' in name:
      fan_in = int(np.prod(s.shape[:-1]))
      return rng.standard_normal(s.shape).astype(np.float32) / np.sqrt(fan_in)
    return 0.1 * rng.standard_normal(s.shape).astype(np.float32)

  return jax.tree_util.tree_map_with_path(draw, shapes)


@pytest.mark.parametrize('case', CASES, ids=lambda c: c.name)
def test_replica_matches_flax(case):
  config = case.load_config()
  info = case.info
  batch = train_step.make_batch(case, BATCH)
  family = flows_family.make_family(config, info)
  # Shapes only (no compilation): the signature and the tree to fill.
  shapes = jax.eval_shape(family.init, jax.random.key(0), batch)
  torch.manual_seed(0)
  step, module = torch_flows.make_step(config, info, batch)
  assert common.torch_signature(module) == train_step.flax_signature(shapes)

  losses = [step() for _ in range(3)]
  assert np.all(np.isfinite(losses)), losses
  assert losses[-1] != losses[0], losses

  # Weight copy: the same dequantisation noise as family.loss draws from `key`.
  params = _random_params(shapes, seed=1)
  key = jax.random.key(7)
  jax_loss = float(
    jax.jit(lambda p, b, k: family.loss(p, b, k, train=False)[0])(params, batch, key)
  )
  noise_key, _ = jax.random.split(key)
  x = np.asarray(
    flows_lib.dequantize(noise_key, jnp.asarray(batch['image']), num_levels=info.num_levels)
  )
  torch_flows.load_flax_params(module, params)
  module.eval()
  with torch.no_grad():
    torch_loss = float(module.nll(torch.from_numpy(x.transpose(0, 3, 1, 2).copy())).mean())
  assert np.isfinite(jax_loss)
  np.testing.assert_allclose(torch_loss, jax_loss, rtol=1e-4)
