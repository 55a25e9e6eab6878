"""`none`, `pmap` and `sharding` give the same training, for every trainable family.

JAX fixes its device count when it starts, so the checks run in subprocesses (this
file run as a script) with `--xla_force_host_platform_device_count=4`; each runs all
three modes and prints one JSON object that the tests below read. The work is split in
two parts (`PART_B`), one subprocess and one xdist group each, so that under `make
test`'s two pytest workers neither waits ~2 min on one report.

At the same global batch (8 = 4 devices x 2) and seed:
* the VAE (its config's dropout on): 3 full train steps
  (`gm_jax.train.loop.make_train_step`) under each mode; metrics of every step and
  the final parameters;
* every family in `gm_jax.families` but the classifiers (which train in closed
  form and have no step) and the second stages built from another run
  (`NEEDS_ANOTHER_RUN`): VAE, CVAE, HVAE, NICE, RealNVP, Glow, MAF, NSF, PixelCNN,
  char LM (on random text), VDM, flow matching, EDM, consistency. One batch through
  the loss as the train step evaluates it (`mean_over_groups`; the VAE also with
  2-example groups) under each mode; forward
  only, so that the larger families' compile time stays affordable. Families with
  their own `train_update` (DCGAN, CycleGAN: D and G optimisers, batch norm, image
  pools; VQ-VAE: the EMA codebook and dead-code restarts over the gathered batch) take
  2 real steps under each mode instead, their losses among the compared metrics;
* a tiny regression family through `loop.run` (checkpoints, validation, best-params
  bookkeeping), killed under one mode and resumed from its checkpoint under another,
  against an uninterrupted single-device run.
"""

import fcntl
import json
import os
import subprocess
import sys

import pytest

from tests import multidevice

HERE = os.path.abspath(__file__)
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(HERE)))
NUM_DEVICES = 4
RTOL = 1e-5
MODES = ('none', 'pmap', 'sharding')

# Part 'b' of the worker: these families and the loop checks; part 'a': the VAE's train
# steps and the other families. Chosen so that the parts take about the same time: of
# the one worker's run that they replace (169 CPU-s cold on the loaded 2-core machine;
# 114 s in a fresh-clone `make test`), CycleGAN took 18 %, VQ-VAE 12 %, HVAE 11 %,
# DCGAN 8 %, the VAE's steps 7 %, the loop checks 6 %, the others 1-4 % each.
PART_B = ('consistency', 'cyclegan', 'edm', 'vqvae')


def _part(model: str) -> str:
  return 'b' if model in PART_B else 'a'


def _group(part: str):
  """One xdist group per part: under `--dist loadgroup` a part's tests, and so its
  report's subprocess, run on one pytest worker."""
  return pytest.mark.xdist_group(f'data_parallel_{part}')


# Every family is held to RTOL. CycleGAN runs on 16x16 images: on 8x8 ones its two
# down-samplings leave 2x2 bottleneck maps, whose instance norm makes the float32
# gradients so ill-conditioned that the batch reduction's summation order alone (none
# vs sharding: the same program) moved the state by 3.5e-5 after 2 steps (3.1e-6 at
# 16x16).


@_group('a')
def test_module_is_one_xdist_group(request):
  """Under `-n 2 --dist loadgroup` (`make test`) each part's tests run on one worker.

  pytest-xdist tags a grouped test by appending `@<group>` to its node id; with
  pytest 9.2 that tag is silently lost (`Node.nodeid` became `str(self._id)`), the
  tests of a part spread over both workers and one of them waits on the report's lock
  for as long as the other computes it (~1 min of the suite). setup.cfg pins
  pytest < 9.2 for that reason; this fails if an upgrade breaks the grouping again.
  """
  if not getattr(request.config, 'workerinput', None) or not request.config.getoption(
    'loadgroup', False
  ):
    pytest.skip('only meaningful under pytest-xdist with --dist loadgroup')
  assert request.node.nodeid.endswith('@data_parallel_a'), (
    f'{request.node.nodeid!r} carries no xdist_group tag: --dist loadgroup is not '
    'grouping (pytest/pytest-xdist versions; see setup.cfg)'
  )


# Second stages built from another run's workdir (their `prepare` hook loads a teacher or
# first stage): their losses go through the same generic data-parallel wrapper, and
# tests/families/test_contract.py trains them end to end; here they would need those
# runs made first, inside the 4-device worker.
NEEDS_ANOTHER_RUN = ('reflow', 'vqvae_prior')


def _families():
  from gm_jax import families

  return sorted(
    m
    for m in families.model_names()
    if families.module_for(m).__name__ != 'gm_jax.families.classifiers'
    and m not in NEEDS_ANOTHER_RUN
  )


def _shared_report(part, tmp_path_factory):
  """Part `part`'s report, computed once per test session.

  Under pytest-xdist the workers share it through a file in the session's temporary
  folder: the first to need it computes it under a lock while the other waits (it is
  ~1 min of compilation, and the two cores are better spent on one copy).
  """
  if os.environ.get('PYTEST_XDIST_WORKER') is None:
    return _run_worker(part)
  shared = tmp_path_factory.getbasetemp().parent / f'data_parallel_report_{part}.json'
  with open(str(shared) + '.lock', 'w') as lock:
    fcntl.flock(lock, fcntl.LOCK_EX)
    if shared.exists():
      return json.loads(shared.read_text())
    result = _run_worker(part)
    shared.write_text(json.dumps(result))
    return result


@pytest.fixture(scope='session')
def report_a(tmp_path_factory):
  return _shared_report('a', tmp_path_factory)


@pytest.fixture(scope='session')
def report_b(tmp_path_factory):
  return _shared_report('b', tmp_path_factory)


def _run_worker(part):
  # The suite's fast-compile flags (compile time is most of this test); the three modes
  # are compared with each other under the same flags.
  proc = subprocess.run(
    [sys.executable, HERE, part],
    cwd=ROOT,
    env=multidevice.env(NUM_DEVICES),
    capture_output=True,
    text=True,
    timeout=900,
  )
  assert proc.returncode == 0, proc.stderr[-5000:]
  return json.loads(proc.stdout.strip().splitlines()[-1])


@_group('a')
def test_worker_saw_four_devices(report_a):
  assert report_a['device_count'] == NUM_DEVICES


@_group('a')
@pytest.mark.parametrize('mode', ['pmap', 'sharding'])
def test_vae_train_steps_match_single_device(report_a, mode):
  vae = report_a['vae']
  assert vae[mode]['metric_rel'] < RTOL, vae  # loss, grad_norm, elbo_bpd, ... per step
  assert vae[mode]['param_rel'] < RTOL, vae
  assert vae['param_change_rel'] > 100 * RTOL, vae  # training moved the parameters


@pytest.mark.parametrize('model', [pytest.param(m, marks=_group(_part(m))) for m in _families()])
@pytest.mark.parametrize('mode', ['pmap', 'sharding'])
def test_family_loss_matches_single_device(request, model, mode):
  report = request.getfixturevalue(f'report_{_part(model)}')
  assert report['device_count'] == NUM_DEVICES
  assert set(report['families']) == {m for m in _families() if _part(m) == _part(model)}
  compared = {n: r for n, r in report['families'][model].items() if n.startswith(mode)}
  assert compared, report['families'][model]
  for name, rel in compared.items():
    assert rel < RTOL, (name, report['families'][model])


@_group('b')
@pytest.mark.parametrize('pair', ['pmap->sharding', 'sharding->pmap'])
def test_checkpoint_resumes_under_another_mode(report_b, pair):
  run = report_b['resume'][pair]
  assert run['checkpoints'] == ['12', '4', '8'], run
  assert run['resumed_from'] == 4, run
  assert run['param_rel'] < RTOL, run  # against an uninterrupted `none` run


@_group('b')
def test_batch_that_does_not_split_over_devices_is_refused(report_b):
  for mode in ('pmap', 'sharding'):
    msg = report_b['errors'][mode]
    assert 'config.batch_size=10' in msg and 'divisible by the number of devices (4)' in msg
  assert 'config.loss_group_size=3 must divide the per-device batch' in report_b['errors']['group']


# ------------------------------------------------------------------------------------
# The worker: run as a script, in a fresh process with 4 CPU devices.


def _rel(a, b):
  """`||a - b|| / ||b||` (L2) over all the leaves of two pytrees together."""
  import jax
  import numpy as np

  diff = sum(
    float(np.sum((np.asarray(x, np.float64) - np.asarray(y, np.float64)) ** 2))
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True)
  )
  norm = sum(float(np.sum(np.asarray(y, np.float64) ** 2)) for y in jax.tree.leaves(b))
  return (diff / norm) ** 0.5


_CONFIG_OF = {'consistency': 'consistency_training'}


def _leaf_rel(a, b):
  """The worst leaf's `||a - b|| / ||b||`."""
  import jax

  return max(_rel(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True))


def _max_abs(a, b):
  import jax
  import numpy as np

  return max(
    float(np.max(np.abs(np.asarray(x, np.float64) - np.asarray(y, np.float64))))
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True)
  )


def _tiny_config(model):
  """The model's own config (dropout on), shrunk to train in seconds."""
  import importlib

  # configs/consistency.py distils a trained EDM run: consistency trains without one here
  module = importlib.import_module(f'configs.{_CONFIG_OF.get(model, model)}')
  c = module.get_config()
  shrink = {
    'hidden': (8,),
    'latent_dim': 4,
    'num_couplings': 2,
    'num_hidden_layers': 1,
    'num_scales': 1,
    'steps_per_scale': 1,
    'num_checkerboard': 1,
    'num_channel': 1,
    'num_final': 1,
    'channels': 8,
    'latent_channels': 2,
    'groups_per_scale': (1,),
    'normalization': 'none',
    'num_layers': 1,
    'dilations': (1, 2),
    'generator_features': (8, 8),
    'discriminator_features': (8, 8),
    'generator_filters': 4,
    'discriminator_filters': 4,
    # CycleGAN's PatchGAN: one strided layer (config: 2); measured, its 3 modes' loss and
    # 2 steps in the 4-device worker 35.2 -> 27.2 CPU-s cold, rel. errors unchanged (4e-6).
    'discriminator_layers': 1,
    'num_residual_blocks': 1,
    'pool_size': 4,
    'channel_mults': (1,),
  }
  for k, v in shrink.items():
    if k in c:
      c[k] = v if isinstance(c[k], (tuple, list)) else (v[0] if isinstance(v, tuple) else v)
  c.warmup_steps = 0
  c.num_train_steps = 3
  c.batch_size = 2 * NUM_DEVICES
  from gm_jax import families

  return families.complete(c)


def _family(model, info):
  from gm_jax import families

  config = _tiny_config(model)
  return config, families.module_for(model).make_family(config, info)


def _vae_steps(splits):
  """3 full train steps of the VAE (dropout on) under each mode."""
  import jax
  import jax.numpy as jnp
  import numpy as np

  from gm_jax import data as gm_data
  from gm_jax import parallel
  from gm_jax.train import loop
  from gm_jax.train import optim

  config, family = _family('vae', splits.info)
  init_key, train_key = jax.random.split(jax.random.key(0))
  tx = optim.make_optimizer(config)
  batches = [
    gm_data.batch_at_step(splits.train, s, batch_size=config.batch_size, seed=0)
    for s in range(config.num_train_steps)
  ]
  params0 = jax.tree.map(np.asarray, family.init(init_key, batches[0]))
  out = {}
  for mode in MODES:
    dp = parallel.make(mode, loop.make_train_step(family, tx, train_key))
    state = dp.put_state(
      {
        'step': np.int32(0),
        'params': params0,
        'opt_state': tx.init(jax.tree.map(jnp.asarray, params0)),
      }
    )
    metrics = []
    for batch in batches:
      state, m = dp.step(state, dp.put_batch(batch))
      metrics.append({k: float(v) for k, v in m.items()})  # loss, grad_norm, kl, ...
    out[mode] = {
      'metrics': metrics,
      'params': jax.tree.map(np.asarray, dp.get_state(state['params'])),
    }
  ref = out['none']
  result = {
    'losses_none': [m['loss'] for m in ref['metrics']],
    'param_change_rel': _rel(ref['params'], params0),
  }
  for mode in ('pmap', 'sharding'):
    result[mode] = {
      'metric_rel': max(
        abs(a[k] - b[k]) / max(abs(b[k]), 1e-3)
        for a, b in zip(out[mode]['metrics'], ref['metrics'])
        for k in b
      ),
      'param_rel': _rel(out[mode]['params'], ref['params']),
      'param_leaf_rel': _leaf_rel(out[mode]['params'], ref['params']),
      'param_max_abs': _max_abs(out[mode]['params'], ref['params']),
    }
  return result


def _family_losses(model, splits):
  """One batch through the family's loss (train=True) under each mode, no update.

  The same `mean_over_groups` the train step uses, wrapped by the same
  `DataParallel`s; forward only, which keeps the compile time of the larger
  families (HVAE, Glow) affordable. The VAE also runs with 2-example groups. A family
  with its own `train_update` takes 2 steps of it instead (`_own_update_steps`).
  """
  import jax
  import numpy as np

  from gm_jax import data as gm_data
  from gm_jax import parallel

  config, family = _family(model, splits.info)
  batch = gm_data.batch_at_step(splits.train, 0, batch_size=config.batch_size, seed=0)
  params = jax.tree.map(np.asarray, family.init(jax.random.key(0), batch))
  if family.train_update is not None:
    # GANs, VQ-VAE: their own step, whose metrics hold the losses; the forward pass alone
    # compiled the networks 3 more times (CycleGAN: 5.5 of its 25 CPU-s, cold).
    return _own_update_steps(config, family, splits, params)
  key = jax.random.key(1)
  result = {}
  for group in (1, 2) if model == 'vae' else (1,):

    def step(state, batch, *, axis_name=None, group=group):
      offset = parallel.shard_offset(parallel.batch_size_of(batch), axis_name)
      loss, metrics = parallel.mean_over_groups(
        family.loss, state['params'], batch, key, group_size=group, offset=offset
      )
      metrics = dict(metrics, loss=loss)
      if axis_name is not None:
        metrics = jax.lax.pmean(metrics, axis_name)
      return state, metrics

    out = {}
    for mode in MODES:
      dp = parallel.make(mode, step)
      _, m = dp.step(dp.put_state({'params': params}), dp.put_batch(batch))
      out[mode] = {k: float(v) for k, v in m.items()}
    for mode in ('pmap', 'sharding'):
      result[f'{mode}/group{group}'] = max(
        abs(out[mode][k] - out['none'][k]) / max(abs(out['none'][k]), 1e-3) for k in out['none']
      )
  return result


def _own_update_steps(config, family, splits, params0):
  """2 steps of a family's `train_update` (GAN: D and G updates, image pool) per mode."""
  import jax
  import numpy as np

  from gm_jax import data as gm_data
  from gm_jax import parallel
  from gm_jax.train import loop
  from gm_jax.train import optim

  step_fn = loop.make_train_step(family, optim.make_optimizer(config), jax.random.key(2))
  opt0 = jax.tree.map(np.asarray, family.train_update.init(params0))
  out = {}
  for mode in MODES:
    dp = parallel.make(mode, step_fn)
    state = dp.put_state({'step': np.int32(0), 'params': params0, 'opt_state': opt0})
    metrics = []
    for s in range(2):
      batch = gm_data.batch_at_step(splits.train, s, batch_size=config.batch_size, seed=0)
      state, m = dp.step(state, dp.put_batch(batch))
      metrics.append({k: float(v) for k, v in m.items()})
    out[mode] = (metrics, jax.tree.map(np.asarray, dp.get_state(state)))
  result = {}
  for mode in ('pmap', 'sharding'):
    result[f'{mode}/update_metrics'] = max(
      abs(a[k] - b[k]) / max(abs(b[k]), 1e-3)
      for a, b in zip(out[mode][0], out['none'][0])
      for k in b
    )
    # Parameters, batch statistics, both optimisers' states and any image pool.
    result[f'{mode}/update_state'] = _rel(out[mode][1], out['none'][1])
  return result


def _toy():
  import jax
  import jax.numpy as jnp
  import numpy as np

  from gm_jax import data as gm_data
  from gm_jax.train.family import Family

  rng = np.random.default_rng(0)
  x = rng.normal(size=(64, 3)).astype(np.float32)
  y = (x @ np.array([1.0, -2.0, 0.5], np.float32) + 0.1 * rng.normal(size=64)).astype(np.float32)
  info = gm_data.DatasetInfo(name='toy', kind='image', shape=(3,), num_levels=2, num_classes=None)
  splits = gm_data.Splits(
    train={'x': x, 'y': y},
    validation={'x': x[:16], 'y': y[:16]},
    test={'x': x[:16], 'y': y[:16]},
    info=info,
  )

  def loss(params, batch, key, *, train):
    noise = 0.1 * jax.random.normal(key, batch['y'].shape) if train else 0.0
    mse = jnp.mean((batch['x'] @ params['w'] + params['b'] + noise - batch['y']) ** 2)
    return mse, {'mse': mse}

  family = Family(
    name='toy',
    init=lambda k, b: {'w': jax.random.normal(k, (3,)) * 0.1, 'b': jnp.zeros(())},
    loss=loss,
    evaluate=lambda p, s, k, c: {'w0': float(p['w'][0])},
    validation_metric='mse',
  )
  return family, splits


def _toy_config(**kw):
  import ml_collections

  c = ml_collections.ConfigDict(
    dict(
      model='toy',
      dataset='toy',
      data_dir=None,
      batch_size=8,
      num_train_steps=12,
      learning_rate=0.05,
      lr_schedule='cosine',
      warmup_steps=2,
      seed=3,
      checkpoint_every=4,
      log_every=2,
      eval_every=4,
      parallel='none',
      max_to_keep=10,
      progress_bar=False,
    )
  )
  c.update(kw)
  return c


def _final(workdir):
  import jax
  import numpy as np
  import orbax.checkpoint as ocp

  with ocp.CheckpointManager(os.path.join(workdir, 'checkpoints')) as mngr:
    restored = mngr.restore(mngr.latest_step(), args=ocp.args.StandardRestore())
  return jax.tree.map(np.asarray, restored)


def _loop_checks(tmp):
  from gm_jax import data as gm_data
  from gm_jax.train import loop

  family, splits = _toy()
  reference = os.path.join(tmp, 'none')
  loop.run(_toy_config(parallel='none'), reference, family, splits)
  ref_params = _final(reference)['params']

  resume = {}
  real = gm_data.batch_at_step
  for pair in ('pmap->sharding', 'sharding->pmap'):
    first, second = pair.split('->')
    wd = os.path.join(tmp, f'{first}_{second}')

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
    resume[pair] = {
      'resumed_from': resumed_from,
      'checkpoints': sorted(os.listdir(os.path.join(wd, 'checkpoints'))),
      'param_rel': _rel(_final(wd)['params'], ref_params),
    }

  errors = {}
  for name, overrides in (
    ('pmap', dict(parallel='pmap', batch_size=10)),
    ('sharding', dict(parallel='sharding', batch_size=10)),
    ('group', dict(parallel='pmap', loss_group_size=3)),
  ):
    try:
      loop.run(_toy_config(**overrides), os.path.join(tmp, 'bad'), family, splits)
      errors[name] = ''
    except ValueError as e:
      errors[name] = str(e)
  return resume, errors


def _splits_for(model, image_splits):
  """The digits-shaped splits, or random text of the model's dataset (e.g. char_lm)."""
  import numpy as np

  from gm_jax import data as gm_data

  info = gm_data.get_info(_tiny_config(model).dataset)
  if model == 'cyclegan':  # unpaired rows of two "domains" of random 16x16 images
    import dataclasses

    info = dataclasses.replace(image_splits.info, shape=(16, 16, 1))
    images = np.random.default_rng(0).integers(0, info.num_levels, (64, 16, 16, 1))
    rows = {'image_a': images.astype(np.uint8), 'image_b': images[::-1].astype(np.uint8)}
    return gm_data.Splits(train=rows, validation=rows, test=rows, info=info)
  if info.kind != 'text':
    return image_splits
  rng = np.random.default_rng(0)
  arrays = {
    'tokens': rng.integers(0, info.num_levels, (64,) + info.shape).astype(np.int32),
    'label': rng.integers(0, info.num_classes, 64).astype(np.int32),
  }
  return gm_data.Splits(train=arrays, validation=arrays, test=arrays, info=info)


def _worker(part):
  import contextlib
  import io
  import tempfile
  import time

  import jax
  import numpy as np

  from gm_jax import data as gm_data

  # Digits-shaped random data: no tfds preparation needed.
  rng = np.random.default_rng(0)
  info = gm_data.get_info('digits')
  n = 64
  arrays = {
    'image': rng.integers(0, info.num_levels, (n,) + info.shape).astype(np.uint8),
    'label': rng.integers(0, info.num_classes, n).astype(np.int32),
  }
  splits = gm_data.Splits(train=arrays, validation=arrays, test=arrays, info=info)

  seconds = {}  # CPU seconds of this process per item (the load of the machine aside)
  report = {'device_count': jax.device_count(), 'part': part, 'families': {}}
  if part == 'a':
    t = time.process_time()
    report['vae'] = _vae_steps(splits)
    seconds['vae'] = time.process_time() - t
  for model in _families():
    if _part(model) == part:
      t = time.process_time()
      report['families'][model] = _family_losses(model, _splits_for(model, splits))
      seconds[model] = time.process_time() - t
  if part == 'b':
    t = time.process_time()
    with tempfile.TemporaryDirectory() as tmp, contextlib.redirect_stdout(io.StringIO()):
      report['resume'], report['errors'] = _loop_checks(tmp)
    seconds['loop'] = time.process_time() - t
  report['seconds'] = seconds
  print(json.dumps(report))


if __name__ == '__main__':
  _worker(sys.argv[1])
