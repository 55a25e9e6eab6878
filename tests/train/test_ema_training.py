"""EMA in the generic trainer (#43 part 1): `config.ema_decay`, `Family.ema_keys`.

The toy linear-regression family of test_loop keeps these fast. The average is checked
against a NumPy recursion over the trained parameters of every step; the loop tests
check what validation, selection, evaluation and eval.json see, and exact resume.
"""

import dataclasses
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from gm_jax import data as gm_data
from gm_jax.data import batch_at_step as _real_batch_at_step
from gm_jax.train import checkpoint as ckpt_lib
from gm_jax.train import loop
from gm_jax.train import step as step_lib
from tests.train.test_loop import _config
from tests.train.test_loop import _toy_family
from tests.train.test_loop import _toy_splits

DECAY = 0.9


def _numpy_ema(trajectory, decay):
  """e_0 = p_0; e_{n+1} = d_n e_n + (1 - d_n) p_{n+1}, d_n = min(decay, (1+n)/(10+n))."""
  e = {k: np.asarray(v, np.float64) for k, v in trajectory[0].items()}
  for n, p in enumerate(trajectory[1:]):
    d = min(decay, (1.0 + n) / (10.0 + n))
    e = {k: d * e[k] + (1.0 - d) * np.asarray(p[k], np.float64) for k in e}
  return e


def _checkpoint(workdir, step=None):
  ck = ckpt_lib.Checkpointer(os.path.join(workdir, 'checkpoints'))
  try:
    return jax.tree.map(np.asarray, ck.read(ck.latest_step() if step is None else step))
  finally:
    ck.close()


def _eval_json(workdir):
  with open(os.path.join(workdir, 'eval.json')) as f:
    res = json.load(f)
  res.pop('train_steps_per_s')
  return res


def test_the_step_averages_on_the_device_as_numpy_does_and_trains_as_without_ema():
  family = _toy_family()
  tx = optax.sgd(0.05)
  key = jax.random.key(0)
  params = family.init(jax.random.key(1), None)
  batches = [gm_data.batch_at_step(_toy_splits().train, s, seed=0, batch_size=8) for s in range(6)]
  # The reference trajectory: the step without EMA, one step a dispatch.
  raw = jax.jit(step_lib.make_train_step(family, tx, key))
  state = {'step': jnp.asarray(0, jnp.int32), 'params': params, 'opt_state': tx.init(params)}
  trajectory = [jax.device_get(params)]
  for b in batches:
    state, _ = raw(state, b)
    trajectory.append(jax.device_get(state['params']))
  # With EMA: three steps per lax.scan dispatch, the average in the carried state.
  multi = jax.jit(
    step_lib.make_multi_step(
      step_lib.make_train_step(family, tx, key, ema_decay=DECAY),
      steps=3,
      view_devices=1,
      resident=False,
    )
  )
  ema_state = {
    'step': jnp.asarray(0, jnp.int32),
    'params': params,
    'opt_state': tx.init(params),
    'ema_params': step_lib.ema_state(family, params),
  }
  for c in (0, 3):
    ema_state, _ = multi(ema_state, step_lib.chunk_layout(batches[c : c + 3], 1))
  for name in ('w', 'b'):  # EMA changes no trained number
    np.testing.assert_array_equal(ema_state['params'][name], trajectory[-1][name])
  want = _numpy_ema(trajectory, DECAY)
  for name in ('w', 'b'):
    np.testing.assert_allclose(ema_state['ema_params'][name], want[name], rtol=1e-6, atol=1e-7)
    assert ema_state['ema_params'][name].dtype == jnp.float32
  # After 6 updates the warm-up (7/16) still rules over DECAY: not just the last params.
  assert not np.allclose(ema_state['ema_params']['w'], trajectory[-1]['w'], rtol=1e-3)


def test_validation_selection_and_evaluation_use_the_average_and_resume_exactly(
  tmp_path, monkeypatch
):
  config = _config(ema_decay=DECAY)
  full = loop.run(config, str(tmp_path / 'full'), _toy_family(), _toy_splits())
  assert full['ema_decay'] == DECAY and full['evaluated_weights'] == 'ema'
  end = _checkpoint(tmp_path / 'full')
  # Selection kept the average of the best step (checkpoints at 4, 8, 12 = validations).
  at_best = _checkpoint(tmp_path / 'full', full['best_step'])
  for name in ('w', 'b'):
    np.testing.assert_array_equal(end['best_params'][name], at_best['ema_params'][name])
  assert full['w0'] == pytest.approx(float(end['best_params']['w'][0]), abs=0)
  # The validation metric logged at the best step is the average's.
  x, y = _toy_splits().validation['x'], _toy_splits().validation['y']
  p = at_best['ema_params']
  mse = float(np.mean((x @ p['w'] + p['b'] - y) ** 2))
  assert full['best_val_mse'] == pytest.approx(mse, rel=1e-5)

  # Killed between the checkpoints at 4 and 8, resumed: the same eval.json and state.
  def killed(arrays, step, **kw):
    if step == 7:
      raise KeyboardInterrupt('simulated kill')
    return _real_batch_at_step(arrays, step, **kw)

  monkeypatch.setattr(gm_data, 'batch_at_step', killed)
  with pytest.raises(KeyboardInterrupt):
    loop.run(config, str(tmp_path / 'resumed'), _toy_family(), _toy_splits())
  monkeypatch.setattr(gm_data, 'batch_at_step', _real_batch_at_step)
  loop.run(config, str(tmp_path / 'resumed'), _toy_family(), _toy_splits())
  a, b = _eval_json(tmp_path / 'full'), _eval_json(tmp_path / 'resumed')
  assert a == b
  resumed = _checkpoint(tmp_path / 'resumed')
  assert jax.tree.structure(resumed) == jax.tree.structure(end)
  for x_, y_ in zip(jax.tree.leaves(end), jax.tree.leaves(resumed)):
    np.testing.assert_array_equal(x_, y_)  # bit-identical, the average included


def test_ema_off_adds_no_state_and_evaluates_the_trained_weights(tmp_path):
  res = loop.run(_config(), str(tmp_path), _toy_family(), _toy_splits())
  assert res['ema_decay'] == 0.0 and res['evaluated_weights'] == 'raw'
  assert sorted(_checkpoint(tmp_path)) == [
    'best_metric',
    'best_params',
    'best_step',
    'opt_state',
    'params',
    'step',
  ]


def test_ema_keys_average_only_those_entries(tmp_path):
  # As a GAN: no validation (the last weights are evaluated), only 'w' averaged.
  def evaluate(params, splits, key, config):
    return {'w0': float(params['w'][0]), 'b': float(params['b'])}

  family = dataclasses.replace(
    _toy_family(), validation_metric=None, ema_keys=('w',), evaluate=evaluate
  )
  res = loop.run(_config(ema_decay=DECAY), str(tmp_path), family, _toy_splits())
  end = _checkpoint(tmp_path)
  assert sorted(end['ema_params']) == ['w']
  assert res['w0'] == float(end['ema_params']['w'][0]) != float(end['params']['w'][0])
  assert res['b'] == float(end['params']['b'])
  assert res['evaluated_weights'] == 'ema'
  with pytest.raises(ValueError, match=r"Family.ema_keys of 'toy' names \['g'\]"):
    step_lib.ema_state(dataclasses.replace(family, ema_keys=('g',)), end['params'])


@pytest.mark.parametrize('value', [1.0, -0.1, 1.5, True, 'high'])
def test_a_decay_outside_0_1_is_named(tmp_path, value):
  with pytest.raises(ValueError, match=r'config\.ema_decay must be a number in \[0, 1\)'):
    loop.run(_config(ema_decay=value), str(tmp_path), _toy_family(), _toy_splits())
  assert not (tmp_path / 'checkpoints').exists()


def test_ema_switched_on_or_off_on_resume_starts_or_drops_the_average(tmp_path, capsys):
  # A constant learning rate: training on continues the same run (allow_resume_changes
  # lets ema_decay change).
  def config(steps, decay):
    return _config(
      num_train_steps=steps, lr_schedule='constant', ema_decay=decay, allow_resume_changes=True
    )

  loop.run(config(8, 0.0), str(tmp_path), _toy_family(), _toy_splits())
  assert 'ema_params' not in _checkpoint(tmp_path)
  res = loop.run(config(12, DECAY), str(tmp_path), _toy_family(), _toy_splits())
  out = capsys.readouterr().out
  assert 'checkpoint 8 resumed with config.ema_decay=0.9: the average starts at' in out
  end = _checkpoint(tmp_path)
  assert res['evaluated_weights'] == 'ema' and res['train_steps'] == 12
  # Four updates (warm-up counts 8..11) from the parameters of step 8: neither those nor
  # the last ones.
  at_8 = _checkpoint(tmp_path, 8)['params']['w']
  ema, last = end['ema_params']['w'], end['params']['w']
  assert not np.allclose(ema, last) and not np.allclose(ema, at_8)
  loop.run(config(16, 0.0), str(tmp_path), _toy_family(), _toy_splits())
  assert 'its EMA parameters are dropped' in capsys.readouterr().out
  assert 'ema_params' not in _checkpoint(tmp_path)
