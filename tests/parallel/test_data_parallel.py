"""`none`, `pmap` and `sharding` give the same training, for every trainable family.

JAX fixes its device count when it starts, so the checks run in one subprocess
(this file run as a script) with `--xla_force_host_platform_device_count=4`; it runs
all three modes and prints one JSON object that the tests below read.

What is compared, at the same global batch (8 = 4 devices x 2) and seed:
* every family in `gm_jax.train.registry` that has a `make_family` (VAE, CVAE, NICE,
  RealNVP, Glow; the classifiers train in closed form and have no step), with its
  config's dropout on: 3 steps of `gm_jax.train.loop.make_train_step` under each
  mode; per-step losses and final parameters;
* a tiny regression family through `loop.run` (checkpoints, validation, best-params
  bookkeeping) under each mode;
* a run killed under one mode and resumed from its checkpoint under another.
"""

import json
import os
import subprocess
import sys

import pytest

HERE = os.path.abspath(__file__)
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(HERE)))
NUM_DEVICES = 4
RTOL = 1e-5
MODES = ('none', 'pmap', 'sharding')


@pytest.fixture(scope='module')
def report():
  # Cheaper LLVM code generation halves compile time (most of this test); the three
  # modes are compared with each other under the same flags.
  env = dict(os.environ, JAX_PLATFORMS='cpu', CUDA_VISIBLE_DEVICES='',
             XLA_FLAGS=(f'--xla_force_host_platform_device_count={NUM_DEVICES} '
                        '--xla_backend_optimization_level=0 '
                        '--xla_llvm_disable_expensive_passes=true'),
             TF_CPP_MIN_LOG_LEVEL='2')
  proc = subprocess.run([sys.executable, HERE], cwd=ROOT, env=env, capture_output=True,
                        text=True, timeout=600)
  assert proc.returncode == 0, proc.stderr[-5000:]
  return json.loads(proc.stdout.strip().splitlines()[-1])


def test_worker_saw_four_devices(report):
  assert report['device_count'] == NUM_DEVICES


def test_every_family_is_covered(report):
  assert {'vae', 'cvae'} <= set(report['families'])
  from gm_jax.train import registry
  flows = {m for m, mod in registry.MODELS.items() if mod == 'gm_jax.train.flows'}
  assert flows <= set(report['families'])  # flows are in this build: all of them


@pytest.mark.parametrize('mode', ['pmap', 'sharding'])
def test_family_steps_match_single_device(report, mode):
  for name, fam in report['families'].items():
    assert fam[mode]['loss_rel'] < RTOL, (name, mode, fam[mode])
    assert fam[mode]['param_rel'] < RTOL, (name, mode, fam[mode])
    # Training moved the parameters far more than the modes differ.
    assert fam[mode]['param_change_rel'] > 100 * RTOL, (name, fam[mode])


@pytest.mark.parametrize('mode', ['pmap', 'sharding'])
def test_trainer_runs_match_single_device(report, mode):
  run = report['loop'][mode]
  assert run['param_rel'] < RTOL, run
  assert run['loss_rel'] < RTOL, run
  assert run['checkpoints'] == ['12', '4', '8']


@pytest.mark.parametrize('pair', ['pmap->sharding', 'sharding->none'])
def test_checkpoint_resumes_under_another_mode(report, pair):
  run = report['resume'][pair]
  assert run['resumed_from'] == 4
  assert run['param_rel'] < RTOL, run


def test_batch_that_does_not_split_over_devices_is_refused(report):
  for mode in ('pmap', 'sharding'):
    msg = report['indivisible'][mode]
    assert 'config.batch_size=10' in msg and 'divisible by the number of devices (4)' in msg


# ------------------------------------------------------------------------------------
# The worker: run as a script, in a fresh process with 4 CPU devices.


def _rel(a, b):
  """Worst leaf of `||a - b|| / ||b||` (L2 over each array) over two pytrees."""
  import jax  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  worst = 0.0
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    den = np.linalg.norm(y)
    worst = max(worst, float(np.linalg.norm(x - y) / den if den > 0 else np.linalg.norm(x)))
  return worst


def _max_abs(a, b):
  import jax  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  return max(float(np.max(np.abs(np.asarray(x, np.float64) - np.asarray(y, np.float64))))
             for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True))


def _tiny_config(model):
  """The model's own config (dropout on), shrunk to train in seconds."""
  import importlib  # pylint: disable=g-import-not-at-top
  module = importlib.import_module(f'configs.{model}')
  c = module.get_config()
  shrink = {'hidden': 8, 'latent_dim': 4, 'num_couplings': 2, 'num_hidden_layers': 1,
            'num_scales': 1, 'steps_per_scale': 1, 'num_checkerboard': 1, 'num_channel': 1,
            'num_final': 1}
  for k, v in shrink.items():
    if k in c:
      c[k] = (v,) if isinstance(c[k], (tuple, list)) else v
  c.warmup_steps = 0
  c.num_train_steps = 3
  c.batch_size = 2 * NUM_DEVICES
  return c


def _family_equivalence(model, splits):
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  from gm_jax import data as gm_data  # pylint: disable=g-import-not-at-top
  from gm_jax import parallel  # pylint: disable=g-import-not-at-top
  from gm_jax.train import loop, optim, registry  # pylint: disable=g-import-not-at-top
  import importlib  # pylint: disable=g-import-not-at-top

  config = _tiny_config(model)
  family = importlib.import_module(registry.MODELS[model]).make_family(config, splits.info)
  init_key, train_key = jax.random.split(jax.random.key(0))
  tx = optim.make_optimizer(config)
  batches = [gm_data.batch_at_step(splits.train, s, batch_size=config.batch_size, seed=0)
             for s in range(config.num_train_steps)]
  params0 = jax.tree.map(np.asarray, family.init(init_key, batches[0]))
  out = {}
  for mode in MODES:
    dp = parallel.make(mode, loop.make_train_step(family, tx, train_key))
    state = dp.put_state({'step': np.int32(0), 'params': params0,
                          'opt_state': tx.init(jax.tree.map(jnp.asarray, params0))})
    losses = []
    for batch in batches:
      state, metrics = dp.step(state, dp.put_batch(batch))
      losses.append({k: float(v) for k, v in metrics.items()})  # loss, grad_norm, ...
    out[mode] = {'losses': losses,
                 'params': jax.tree.map(np.asarray, dp.get_state(state['params']))}
  ref = out['none']
  change = _rel(ref['params'], params0)  # how far 3 steps moved the parameters
  result = {}
  for mode in ('pmap', 'sharding'):
    result[mode] = {
        'loss_rel': max(abs(a[k] - b[k]) / abs(b[k]) for a, b in zip(out[mode]['losses'],
                                                                    ref['losses']) for k in b),
        'param_rel': _rel(out[mode]['params'], ref['params']),
        'param_max_abs': _max_abs(out[mode]['params'], ref['params']),
        'param_change_rel': change,
    }
  result['losses_none'] = [m['loss'] for m in ref['losses']]
  return result


def _toy():
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  from gm_jax import data as gm_data  # pylint: disable=g-import-not-at-top
  from gm_jax.train.family import Family  # pylint: disable=g-import-not-at-top

  rng = np.random.default_rng(0)
  x = rng.normal(size=(64, 3)).astype(np.float32)
  y = (x @ np.array([1.0, -2.0, 0.5], np.float32) + 0.1 * rng.normal(size=64)).astype(
      np.float32)
  info = gm_data.DatasetInfo(name='toy', kind='image', shape=(3,), num_levels=2,
                             num_classes=None)
  splits = gm_data.Splits(train={'x': x, 'y': y}, validation={'x': x[:16], 'y': y[:16]},
                          test={'x': x[:16], 'y': y[:16]}, info=info)

  def loss(params, batch, key, *, train):
    noise = 0.1 * jax.random.normal(key, batch['y'].shape) if train else 0.0
    mse = jnp.mean((batch['x'] @ params['w'] + params['b'] + noise - batch['y']) ** 2)
    return mse, {'mse': mse}

  family = Family(
      name='toy', init=lambda k, b: {'w': jax.random.normal(k, (3,)) * 0.1,
                                     'b': jnp.zeros(())},
      loss=loss, evaluate=lambda p, s, k, c: {'w0': float(p['w'][0])},
      validation_metric='mse')
  return family, splits


def _toy_config(**kw):
  import ml_collections  # pylint: disable=g-import-not-at-top
  c = ml_collections.ConfigDict(dict(
      model='toy', dataset='toy', data_dir=None, batch_size=8, num_train_steps=12,
      learning_rate=0.05, lr_schedule='cosine', warmup_steps=2, seed=3, checkpoint_every=4,
      log_every=2, eval_every=4, parallel='none', max_to_keep=10, progress_bar=False))
  c.update(kw)
  return c


def _final(workdir):
  import jax  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  import orbax.checkpoint as ocp  # pylint: disable=g-import-not-at-top
  with ocp.CheckpointManager(os.path.join(workdir, 'checkpoints')) as mngr:
    restored = mngr.restore(mngr.latest_step(), args=ocp.args.StandardRestore())
  return jax.tree.map(np.asarray, restored)


def _losses(workdir):
  with open(os.path.join(workdir, 'metrics.jsonl')) as f:
    return [r['loss'] for r in map(json.loads, f) if 'loss' in r]


def _loop_checks(tmp):
  from gm_jax import data as gm_data  # pylint: disable=g-import-not-at-top
  from gm_jax.train import loop  # pylint: disable=g-import-not-at-top

  family, splits = _toy()
  runs = {}
  for mode in MODES:
    wd = os.path.join(tmp, f'loop_{mode}')
    loop.run(_toy_config(parallel=mode), wd, family, splits)
    runs[mode] = wd
  ref_params, ref_losses = _final(runs['none']), _losses(runs['none'])
  loop_out = {}
  for mode in ('pmap', 'sharding'):
    loop_out[mode] = {
        'param_rel': _rel(_final(runs[mode])['params'], ref_params['params']),
        'loss_rel': max(abs(a - b) / abs(b) for a, b in zip(_losses(runs[mode]), ref_losses)),
        'checkpoints': sorted(os.listdir(os.path.join(runs[mode], 'checkpoints')))}

  resume_out = {}
  real = gm_data.batch_at_step
  for pair in ('pmap->sharding', 'sharding->none'):
    first, second = pair.split('->')
    wd = os.path.join(tmp, f'resume_{first}_{second}')

    def exploding(arrays, step, **kw):
      if step == 7:  # dies between the checkpoints at 4 and 8
        raise KeyboardInterrupt('simulated kill')
      return real(arrays, step, **kw)

    gm_data.batch_at_step = exploding
    try:
      loop.run(_toy_config(parallel=first), wd, family, splits)
    except KeyboardInterrupt:
      pass
    finally:
      gm_data.batch_at_step = real
    resumed_from = max(int(s) for s in os.listdir(os.path.join(wd, 'checkpoints')))
    loop.run(_toy_config(parallel=second), wd, family, splits)
    resume_out[pair] = {'resumed_from': resumed_from,
                        'param_rel': _rel(_final(wd)['params'], ref_params['params'])}

  indivisible = {}
  for mode in ('pmap', 'sharding'):
    try:
      loop.run(_toy_config(parallel=mode, batch_size=10), os.path.join(tmp, 'bad'), family,
               splits)
      indivisible[mode] = ''
    except ValueError as e:
      indivisible[mode] = str(e)
  return loop_out, resume_out, indivisible


def _worker():
  import contextlib  # pylint: disable=g-import-not-at-top
  import io  # pylint: disable=g-import-not-at-top
  import tempfile  # pylint: disable=g-import-not-at-top
  sys.path.insert(0, ROOT)
  import jax  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  from gm_jax import data as gm_data  # pylint: disable=g-import-not-at-top
  from gm_jax.train import registry  # pylint: disable=g-import-not-at-top

  rng = np.random.default_rng(0)
  info = gm_data.get_info('digits')
  n = 64
  images = rng.integers(0, info.num_levels, (n,) + info.shape).astype(np.uint8)
  labels = rng.integers(0, info.num_classes, n).astype(np.int32)
  arrays = {'image': images, 'label': labels}
  splits = gm_data.Splits(train=arrays, validation=arrays, test=arrays, info=info)

  families = {}
  for model, module in sorted(registry.MODELS.items()):
    if module == 'gm_jax.train.classifiers':
      continue  # closed-form / own loop: no train step to parallelise
    try:
      mod = __import__(module, fromlist=['make_family'])
    except ImportError:
      continue
    if hasattr(mod, 'make_family'):
      families[model] = _family_equivalence(model, splits)
  with tempfile.TemporaryDirectory() as tmp, contextlib.redirect_stdout(io.StringIO()):
    loop_out, resume_out, indivisible = _loop_checks(tmp)
  print(json.dumps({'device_count': jax.device_count(), 'families': families,
                    'loop': loop_out, 'resume': resume_out, 'indivisible': indivisible}))


if __name__ == '__main__':
  _worker()
