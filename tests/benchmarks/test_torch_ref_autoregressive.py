"""The PyTorch replicas of the autoregressive family are the same models as gm_jax's.

For a small batch of each autoregressive case of `benchmarks/train_step.py`: the same
parameter shapes, the same exact NLL (train=False, dropout off) with the Flax weights
copied in, and a training step that runs and lowers the NLL.

The Flax parameters are random arrays of the shapes `family.init` gives
(`jax.eval_shape`): compiling the real initialiser costs ~9 s of XLA time per model on
this CPU, and non-zero random biases make the weight-copy check stricter.
"""

import pytest

torch = pytest.importorskip('torch')

import jax
import numpy as np

from benchmarks import train_step
from benchmarks.torch_ref import autoregressive as torch_ar
from benchmarks.torch_ref import common
from gm_jax.families import autoregressive as ar_family

CASES = {c.name: c for c in train_step.CASES if c.family == 'autoregressive'}
BATCH = 4


@pytest.fixture(autouse=True)
def one_torch_thread():
  """Small convolutions: one thread is faster, and spares the CPU other tests share."""
  threads = torch.get_num_threads()
  torch.set_num_threads(1)
  yield
  torch.set_num_threads(threads)


def random_params(family, batch, seed=0):
  """A parameter tree shaped like `family.init`'s, N(0, 1/fan_in) kernels, N(0, 0.1^2) biases."""
  shapes = jax.eval_shape(family.init, jax.random.key(0), batch)
  rng = np.random.default_rng(seed)

  def draw(s):
    std = 0.1 if len(s.shape) == 1 else 1.0 / np.sqrt(np.prod(s.shape[:-1]))
    return jax.numpy.asarray(rng.normal(0.0, std, s.shape).astype(np.float32))

  return jax.tree.map(draw, shapes)


def test_cases_cover_both_models():
  assert set(CASES) == {'pixelcnn_digits', 'pixelcnn_mnist', 'char_lm_pydoc', 'char_lm_wide'}


@pytest.mark.parametrize('name', sorted(CASES))
def test_replica_matches_flax(name):
  case = CASES[name]
  config = case.load_config()
  with config.unlocked():
    config.batch_size = BATCH
  batch = train_step.make_batch(case, BATCH)
  family = ar_family.make_family(config, case.info)
  params = random_params(family, batch)

  torch.manual_seed(0)
  step, module = torch_ar.make_step(config, case.info, batch)
  assert common.torch_signature(module) == train_step.flax_signature(params)

  # The same function: exact NLL of the copied weights (dropout off on both sides).
  jax_loss = float(jax.jit(lambda p, b: family.loss(p, b, None, train=False)[0])(params, batch))
  torch_ar.load_flax_params(module, params)
  x = torch_ar.batch_tensor(case.info, batch)
  module.eval()
  with torch.no_grad():
    before = float(module.nll(x))
  assert abs(before - jax_loss) <= 1e-4 * abs(jax_loss), (before, jax_loss)

  # Training steps (dropout on) run, stay finite and lower the NLL of the batch.
  module.train()
  losses = [step() for _ in range(3)]
  assert np.all(np.isfinite(losses)), losses
  module.eval()
  with torch.no_grad():
    after = float(module.nll(x))
  assert np.isfinite(after) and after < before, (before, after, losses)
