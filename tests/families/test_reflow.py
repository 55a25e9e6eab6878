"""Reflow's setup: the teacher check, the (noise, sample) pairs against the teacher's ODE
solved by hand, their npz cache, and the straight-path loss against NumPy. The teacher is
test_contract's tiny flow_matching run (tests/families/conftest.py), also the teacher of
test_contract's reflow case. Training, resuming and evaluating run in
tests/families/test_contract.py."""

import json
import os
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gm_jax import families
from gm_jax.families import _fewstep
from gm_jax.families import reflow as reflow_family
from gm_jax.models import diffusion as dm
from tests.families import test_contract


@pytest.fixture(scope='module')
def teacher(flow_matching_teacher, tmp_path_factory):
  """A copy of the shared tiny flow_matching workdir (3 steps) without the pair caches
  other tests' reflow runs wrote into it."""
  workdir = str(tmp_path_factory.mktemp('fm_teacher') / 'run')
  shutil.copytree(flow_matching_teacher, workdir, ignore=shutil.ignore_patterns('reflow_pairs_*'))
  return workdir


def _reflow(data_dir, teacher, **overrides):
  config = test_contract._tiny('reflow', data_dir)
  config.update(teacher_workdir=teacher, teacher_sampler='euler', teacher_steps=2, **overrides)
  return config


def test_teacher_must_be_a_flow_matching_workdir(data_dir, tmp_path):
  with pytest.raises(ValueError, match=r'config\.teacher_workdir.*not a directory'):
    families.setup(_reflow(data_dir, str(tmp_path / 'missing')))
  with open(tmp_path / 'config.json', 'w') as f:
    json.dump({'model': 'vae', 'dataset': 'digits'}, f)
  with pytest.raises(ValueError, match=r"config\.teacher_workdir=.* is a 'vae' run"):
    families.setup(_reflow(data_dir, str(tmp_path)))


# One worker under `-n 2 --dist loadgroup` with test_contract's flow_matching run.
@pytest.mark.xdist_group('flow_runs')
def test_pairs_are_the_teachers_ode_and_are_cached(data_dir, teacher):
  config, family, splits = families.setup(_reflow(data_dir, teacher, num_pairs=16, val_pairs=8))
  x0, x1 = splits.train['noise'], splits.train['sample']
  assert x0.shape == x1.shape == (16, 8, 8, 1) and splits.validation['noise'].shape[0] == 8
  cached = [n for n in os.listdir(teacher) if n.startswith('reflow_pairs_')]
  assert len(cached) == 1 and cached[0].endswith('_euler2_n24_seed0.npz'), cached
  with np.load(os.path.join(teacher, cached[0]), allow_pickle=False) as saved:
    np.testing.assert_array_equal(saved['sample'][:16], x1)
  # Euler with two steps of 1/2, by hand through the teacher's network
  teacher_cfg = _fewstep.teacher_config(config, model='flow_matching', needed_by='reflow')
  model = reflow_family.diffusion_family.build_model(teacher_cfg, splits.info)
  _, params = _fewstep.teacher_params(model, config, splits.info)
  v = lambda z, t: np.asarray(model.apply(params, jnp.asarray(z), jnp.full((len(z),), t)))
  mid = x0 + 0.5 * v(x0, 0.0)
  np.testing.assert_allclose(x1, mid + 0.5 * v(mid, 0.5), rtol=1e-4, atol=1e-5)
  # a second setup reads the cache (same arrays, file untouched)
  mtime = os.path.getmtime(os.path.join(teacher, cached[0]))
  _, _, again = families.setup(_reflow(data_dir, teacher, num_pairs=16, val_pairs=8))
  np.testing.assert_array_equal(again.train['sample'], x1)
  assert os.path.getmtime(os.path.join(teacher, cached[0])) == mtime
  # the student starts as the teacher; its loss is the straight-path regression
  batch = {k: a[:4] for k, a in splits.train.items()}
  student = family.init(jax.random.key(0), batch)
  for a, b in zip(jax.tree.leaves(student), jax.tree.leaves(params)):
    np.testing.assert_array_equal(a, b)
  key = jax.random.key(5)
  value, metrics = family.loss(student, batch, key, train=False)
  times = np.asarray(dm.low_discrepancy_times(jax.random.split(key)[0], 4))
  t = times[:, None, None, None]
  xt = (1 - t) * batch['noise'] + t * batch['sample']
  pred = np.asarray(model.apply(params, jnp.asarray(xt), jnp.asarray(times)), np.float64)
  want = np.mean(np.sum((pred - (batch['sample'] - batch['noise'])) ** 2, axis=(1, 2, 3)))
  np.testing.assert_allclose(value, want, rtol=1e-4)
  np.testing.assert_allclose(metrics['reflow_loss_per_dim'], want / 64, rtol=1e-4)


def test_demo_points_reflow_at_the_demo_flow_matching_run(tmp_path, monkeypatch):
  from gm_jax import demo

  seen = {}

  def fake_train(config, workdir):
    seen.update(teacher=config.teacher_workdir, workdir=workdir)
    return {'model': config.model}

  monkeypatch.setattr(demo, 'DEMO_RUNS', {'reflow': demo.DEMO_RUNS['reflow']})
  monkeypatch.setattr(families, 'train_and_evaluate', fake_train)
  assert demo.main(['--out', str(tmp_path)]) == 0
  assert seen == {
    'teacher': os.path.join(str(tmp_path), 'flow_matching'),
    'workdir': os.path.join(str(tmp_path), 'reflow'),
  }
