"""The generic trainer: exact resume, corrupt checkpoints, NaN guard, config errors.

A tiny linear-regression family keeps these fast; the VAE's own resume test
(tests/families/test_vae.py) runs the real model through the CLI.
"""

import dataclasses
import json
import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from gm_jax import data as gm_data
from gm_jax.data import batch_at_step as _real_batch_at_step
from gm_jax.train import checkpoint as ckpt_lib
from gm_jax.train import loop
from gm_jax.train import run_config
from gm_jax.train.family import Family


def _toy_splits(n=64, nan_at=None):
  rng = np.random.default_rng(0)
  x = rng.normal(size=(n, 3)).astype(np.float32)
  y = (x @ np.array([1.0, -2.0, 0.5], np.float32) + 0.1 * rng.normal(size=n)).astype(np.float32)
  if nan_at is not None:
    x[nan_at] = np.nan
  info = gm_data.DatasetInfo(name='toy', kind='image', shape=(3,), num_levels=2, num_classes=None)
  return gm_data.Splits(
    train={'x': x, 'y': y},
    validation={'x': x[:16], 'y': y[:16]},
    test={'x': x[:16], 'y': y[:16]},
    info=info,
  )


def _toy_family():
  def init(key, batch):
    return {'w': jax.random.normal(key, (3,)) * 0.1, 'b': jnp.zeros(())}

  def loss(params, batch, key, *, train):
    noise = 0.01 * jax.random.normal(key, ()) if train else 0.0  # exercises the step key
    pred = batch['x'] @ params['w'] + params['b'] + noise
    mse = jnp.mean((pred - batch['y']) ** 2)
    return mse, {'mse': mse}

  def evaluate(params, splits, key, config):
    return {'w0': float(params['w'][0])}

  return Family(name='toy', init=init, loss=loss, evaluate=evaluate, validation_metric='mse')


def _config(**overrides):
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
      validation_fraction=0.25,
      progress_bar=False,
    )
  )
  c.update(overrides)
  return c


def _final_params(workdir):
  ck = ckpt_lib.Checkpointer(os.path.join(workdir, 'checkpoints'))
  step = ck.latest_step()
  restored = ck._manager.restore(
    step, args=__import__('orbax.checkpoint').checkpoint.args.StandardRestore()
  )
  return step, jax.tree.map(np.asarray, restored)


def test_outputs_and_eval_json(tmp_path):
  res = loop.run(_config(), str(tmp_path), _toy_family(), _toy_splits())
  with open(tmp_path / 'eval.json') as f:
    on_disk = json.load(f)
  assert on_disk['model'] == 'toy' and on_disk['dataset'] == 'toy'
  assert on_disk['train_steps_per_s'] > 0
  assert on_disk == json.loads(json.dumps(res))
  assert sorted(os.listdir(tmp_path / 'checkpoints')) == ['12', '4', '8']
  lines = [json.loads(l) for l in open(tmp_path / 'metrics.jsonl')]
  train_steps = [l['step'] for l in lines if 'loss' in l]
  assert train_steps == [2, 4, 6, 8, 10, 12]
  assert any('val_mse' in l for l in lines)
  assert any(f.startswith('events.out.tfevents') for f in os.listdir(tmp_path))
  # Training reduced the loss.
  losses = [l['loss'] for l in lines if 'loss' in l]
  assert losses[-1] < losses[0]


def test_crash_and_resume_is_bit_identical(tmp_path, monkeypatch):
  full = tmp_path / 'full'
  loop.run(_config(), str(full), _toy_family(), _toy_splits())

  crashed = tmp_path / 'crashed'

  def exploding(arrays, step, **kw):
    if step == 7:  # dies between the checkpoints at 4 and 8
      raise KeyboardInterrupt('simulated kill')
    return _real_batch_at_step(arrays, step, **kw)

  monkeypatch.setattr(gm_data, 'batch_at_step', exploding)
  with pytest.raises(KeyboardInterrupt):
    loop.run(_config(), str(crashed), _toy_family(), _toy_splits())
  assert sorted(os.listdir(crashed / 'checkpoints')) == ['4']
  monkeypatch.setattr(gm_data, 'batch_at_step', _real_batch_at_step)
  loop.run(_config(), str(crashed), _toy_family(), _toy_splits())

  step_a, a = _final_params(full)
  step_b, b = _final_params(crashed)
  assert step_a == step_b == 12
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_array_equal(x, y)  # bit-identical, not just close


def test_corrupt_latest_checkpoint_falls_back_without_deleting(tmp_path, capsys):
  # A constant learning rate: training on to 12 steps continues the same run.
  loop.run(
    _config(num_train_steps=8, lr_schedule='constant'), str(tmp_path), _toy_family(), _toy_splits()
  )
  latest = tmp_path / 'checkpoints' / '8'
  # Corrupt every file of the newest checkpoint.
  for root, _, files in os.walk(latest):
    for name in files:
      with open(os.path.join(root, name), 'wb') as f:
        f.write(b'garbage')
  res = loop.run(
    _config(num_train_steps=12, lr_schedule='constant'), str(tmp_path), _toy_family(), _toy_splits()
  )
  out = capsys.readouterr().out
  assert 'unreadable' in out and 'moved to' in out
  moved = os.listdir(tmp_path / 'corrupt_checkpoints')
  assert len(moved) == 1 and moved[0].startswith('8-')
  assert res['train_steps'] == 12
  assert '12' in os.listdir(tmp_path / 'checkpoints')


def test_checkpoint_of_another_config_is_refused_and_kept(tmp_path):
  loop.run(
    _config(num_train_steps=4, lr_schedule='constant'), str(tmp_path), _toy_family(), _toy_splits()
  )
  fam = _toy_family()
  bigger = Family(
    name='toy',
    init=lambda k, b: {'w': jnp.zeros((5,)), 'b': jnp.zeros(())},
    loss=fam.loss,
    evaluate=fam.evaluate,
  )
  with pytest.raises(ckpt_lib.CheckpointError, match='does not match'):
    loop.run(
      _config(num_train_steps=8, lr_schedule='constant'), str(tmp_path), bigger, _toy_splits()
    )
  assert os.listdir(tmp_path / 'checkpoints') == ['4']
  assert not (tmp_path / 'corrupt_checkpoints').exists()


def test_nan_loss_stops_with_step_and_keeps_last_good_checkpoint(tmp_path):
  splits = _toy_splits(nan_at=5)
  # Find the first step whose batch contains example 5.
  bad_step = next(
    s
    for s in range(100)
    if np.isnan(_real_batch_at_step(splits.train, s, batch_size=8, seed=3)['x']).any()
  )
  assert bad_step >= 1
  with pytest.raises(loop.NonFiniteLossError, match=f'at step {bad_step + 1}'):
    loop.run(_config(num_train_steps=40, checkpoint_every=1), str(tmp_path), _toy_family(), splits)
  steps = sorted(int(s) for s in os.listdir(tmp_path / 'checkpoints'))
  assert steps[-1] == bad_step  # the last finite state is on disk
  ck = ckpt_lib.Checkpointer(os.path.join(tmp_path, 'checkpoints'))
  restored = ck._manager.restore(
    steps[-1], args=__import__('orbax.checkpoint').checkpoint.args.StandardRestore()
  )
  assert all(np.isfinite(np.asarray(l)).all() for l in jax.tree.leaves(restored['params']))


@pytest.mark.parametrize(
  'field,value,match',
  [
    ('batch_size', 0, 'config.batch_size'),
    ('learning_rate', -1.0, 'config.learning_rate'),
    ('num_train_steps', -5, 'config.num_train_steps'),
    ('parallel', 'tpu_pods', 'config.parallel'),
    ('validation_fraction', 1.5, 'config.validation_fraction'),
  ],
)
def test_bad_config_values_are_named(tmp_path, field, value, match):
  with pytest.raises(ValueError, match=match):
    loop.run(_config(**{field: value}), str(tmp_path), _toy_family(), _toy_splits())
  assert not (tmp_path / 'checkpoints').exists()


def test_batch_larger_than_data_is_an_error(tmp_path):
  with pytest.raises(ValueError, match='batch_size=128'):
    loop.run(_config(batch_size=128), str(tmp_path), _toy_family(), _toy_splits())


def test_missing_field_is_named(tmp_path):
  c = _config()
  del c['seed']
  with pytest.raises(ValueError, match='seed'):
    loop.run(c, str(tmp_path), _toy_family(), _toy_splits())


def test_a_loss_with_a_step_keyword_receives_the_step_being_taken():
  family = _toy_family()
  plain = family.loss

  def loss(params, batch, key, *, train, step=None):
    value, metrics = plain(params, batch, key, train=train)
    return value, dict(metrics, step_seen=jnp.asarray(step, jnp.float32))

  tx = optax.sgd(0.01)
  step_fn = jax.jit(
    loop.make_train_step(
      dataclasses.replace(family, loss=loss, loss_takes_step=True), tx, jax.random.key(0)
    )
  )
  params = family.init(jax.random.key(1), None)
  state = {'step': jnp.asarray(0, jnp.int32), 'params': params, 'opt_state': tx.init(params)}
  batch = {k: v[:8] for k, v in _toy_splits().train.items()}
  seen = []
  for _ in range(3):
    state, metrics = step_fn(state, batch)
    seen.append(float(metrics['step_seen']))
  assert seen == [0.0, 1.0, 2.0]


def test_time_budget_stops_checkpoints_evaluates_and_resumes(tmp_path, capsys):
  # A budget smaller than one step: the first step is the last of this invocation.
  res = loop.run(_config(max_train_seconds=1e-9), str(tmp_path), _toy_family(), _toy_splits())
  assert res['train_steps'] == 1 and res['planned_train_steps'] == 12
  assert res['stopped_by'] == 'max_train_seconds' and res['best_step'] == 1
  assert sorted(os.listdir(tmp_path / 'checkpoints')) == ['1']
  lines = [json.loads(l) for l in open(tmp_path / 'metrics.jsonl')]
  assert [l['step'] for l in lines] == [1, 1]  # the step's training log and its validation
  assert 'max_train_seconds=1e-09 spent at step 1 of 12' in capsys.readouterr().out
  # Without the budget the same command resumes at step 1 and finishes the schedule.
  res = loop.run(_config(), str(tmp_path), _toy_family(), _toy_splits())
  assert res['train_steps'] == 12 and 'stopped_by' not in res
  assert 'Resuming toy' in capsys.readouterr().out


def test_negative_time_budget_is_named(tmp_path):
  with pytest.raises(ValueError, match='config.max_train_seconds'):
    loop.run(_config(max_train_seconds=-1.0), str(tmp_path), _toy_family(), _toy_splits())


def test_all_zero_gradients_are_reported(tmp_path, capsys):
  family = _toy_family()
  plain = family.loss

  def frozen(params, batch, key, *, train):  # as if every update were skipped
    return plain(jax.lax.stop_gradient(params), batch, key, train=train)

  why = 'A gradient-skipping threshold below the norms of this data does this.'
  loop.run(
    _config(),
    str(tmp_path),
    dataclasses.replace(family, loss=frozen, messages={'zero_gradient': why}),
    _toy_splits(),
  )
  out = capsys.readouterr().out
  # The family's own note follows the trainer's warning.
  assert out.count('zero gradient (grad_norm 0)') == 1 and why in out


def test_no_zero_gradient_report_when_learning(tmp_path, capsys):
  loop.run(_config(), str(tmp_path), _toy_family(), _toy_splits())
  assert 'zero gradient' not in capsys.readouterr().out


def test_init_from_starts_from_the_source_runs_selected_params(tmp_path, capsys):
  source = tmp_path / 'first'
  loop.run(_config(), str(source), _toy_family(), _toy_splits())
  _, saved = _final_params(source)
  # Zero steps: the evaluated parameters are exactly the loaded ones (not a fresh init).
  res = loop.run(
    _config(num_train_steps=0, init_from=str(source), seed=7),
    str(tmp_path / 'zero'),
    _toy_family(),
    _toy_splits(),
  )
  assert res['w0'] == pytest.approx(float(saved['best_params']['w'][0]), abs=0)
  assert res['init_from'] == str(source) and res['init_from_step'] == 12
  fresh = loop.run(
    _config(num_train_steps=0, seed=7), str(tmp_path / 'fresh'), _toy_family(), _toy_splits()
  )
  assert fresh['w0'] != res['w0'] and 'init_from' not in fresh
  # A second cycle trains on from there with a fresh optimiser state and schedule.
  second = tmp_path / 'second'
  loop.run(
    _config(init_from=str(source / 'checkpoints')), str(second), _toy_family(), _toy_splits()
  )
  out = capsys.readouterr().out
  assert 'its checkpoint 12' in out and 'KL warm-up' not in out
  with open(second / 'eval.json') as f:
    assert json.load(f)['init_from'] == str(source)  # the workdir, however it was named
  _, after = _final_params(second)
  assert int(after['init_from_step']) == 12
  counts = [
    int(v)
    for p, v in jax.tree_util.tree_flatten_with_path(after['opt_state'])[0]
    if 'count' in jax.tree_util.keystr(p)
  ]
  assert counts and set(counts) == {12}  # this run's own 12 steps, not 24
  # Its own checkpoints take precedence on re-running: it resumes, loading nothing.
  again = loop.run(_config(init_from=str(source)), str(second), _toy_family(), _toy_splits())
  assert 'its checkpoint' not in capsys.readouterr().out
  assert again['init_from_step'] == 12 and again['train_steps'] == 12
  assert sorted(os.listdir(source / 'checkpoints')) == ['12', '4', '8']  # source untouched
  # The family's own note (e.g. a warm-up that restarts) follows the trainer's message.
  note = 'The warm-up restarts with the step count.'
  loop.run(
    _config(num_train_steps=0, init_from=str(source)),
    str(tmp_path / 'warm'),
    dataclasses.replace(_toy_family(), messages={'init_from': note}),
    _toy_splits(),
  )
  assert f'start afresh. {note}' in capsys.readouterr().out


@pytest.mark.parametrize('ema_decay', [0.0, 0.5])
def test_without_validation_the_saved_best_params_are_the_evaluated_ones(tmp_path, ema_decay):
  # A family without a validation metric (consistency, GANs): a later run that loads this
  # one (init_from, a teacher) gets the weights it evaluated, not the initial ones.
  family = dataclasses.replace(_toy_family(), validation_metric=None)
  config = _config(num_train_steps=8, ema_decay=ema_decay)
  res = loop.run(config, str(tmp_path), family, _toy_splits())
  _, saved = _final_params(tmp_path)
  evaluated = saved['ema_params'] if ema_decay else saved['params']
  np.testing.assert_array_equal(saved['best_params']['w'], evaluated['w'])
  assert int(saved['best_step']) == 8 and res['best_step'] == 8
  assert res['w0'] == float(evaluated['w'][0])
  step, loaded = ckpt_lib.load_params(str(tmp_path), family.init(jax.random.key(0), None))
  assert step == 8
  np.testing.assert_array_equal(loaded['w'], evaluated['w'])


def test_init_from_errors_name_the_problem(tmp_path):
  with pytest.raises(ckpt_lib.CheckpointError, match='no checkpoints folder'):
    loop.run(
      _config(init_from=str(tmp_path / 'nowhere')),
      str(tmp_path / 'a'),
      _toy_family(),
      _toy_splits(),
    )
  (tmp_path / 'empty' / 'checkpoints').mkdir(parents=True)
  with pytest.raises(ckpt_lib.CheckpointError, match='holds no checkpoint'):
    loop.run(
      _config(init_from=str(tmp_path / 'empty')), str(tmp_path / 'b'), _toy_family(), _toy_splits()
    )
  loop.run(_config(num_train_steps=4), str(tmp_path / 'src'), _toy_family(), _toy_splits())
  fam = _toy_family()
  wider = Family(
    name='toy',
    init=lambda k, b: {'w': jnp.zeros((5,)), 'b': jnp.zeros(())},
    loss=fam.loss,
    evaluate=fam.evaluate,
    validation_metric='mse',
  )
  with pytest.raises(ckpt_lib.CheckpointMismatchError, match=r"\['w'\] has shape \(3,\)"):
    loop.run(_config(init_from=str(tmp_path / 'src')), str(tmp_path / 'c'), wider, _toy_splits())
  renamed = Family(
    name='toy',
    init=lambda k, b: {'v': jnp.zeros((3,)), 'b': jnp.zeros(())},
    loss=fam.loss,
    evaluate=fam.evaluate,
    validation_metric='mse',
  )
  with pytest.raises(ckpt_lib.CheckpointMismatchError, match=r"missing \[\"\['v'\]\"\]"):
    loop.run(_config(init_from=str(tmp_path / 'src')), str(tmp_path / 'd'), renamed, _toy_splits())


def _stop_after_one_step(tmp_path, **overrides):
  """A run of `_config(**overrides)` stopped (by its time budget) after one step."""
  loop.run(
    _config(max_train_seconds=1e-9, **overrides), str(tmp_path), _toy_family(), _toy_splits()
  )
  assert sorted(os.listdir(tmp_path / 'checkpoints')) == ['1']


def test_resuming_under_a_config_that_changes_training_names_each_change(tmp_path):
  _stop_after_one_step(tmp_path)
  saved = (tmp_path / 'config.json').read_text()
  assert json.loads(saved)['num_train_steps'] == 12
  with pytest.raises(run_config.ResumeConfigError) as error:
    loop.run(
      _config(num_train_steps=20, learning_rate=0.1, beta=2.0),
      str(tmp_path),
      _toy_family(),
      _toy_splits(),
    )
  message = str(error.value)
  assert 'num_train_steps: 12 -> 20 (the learning-rate schedule is stretched' in message
  assert 'learning_rate: 0.05 -> 0.1' in message and 'beta: (absent) -> 2.0' in message
  assert f'--init_from={tmp_path}' in message and 'allow_resume_changes' in message
  # Nothing saved was touched, and the unchanged command still resumes.
  assert sorted(os.listdir(tmp_path / 'checkpoints')) == ['1']
  assert (tmp_path / 'config.json').read_text() == saved
  # Where, how often and how long it runs may change (no budget, other intervals).
  res = loop.run(
    _config(log_every=3, checkpoint_every=6, eval_every=6, max_to_keep=2, data_dir='/elsewhere'),
    str(tmp_path),
    _toy_family(),
    _toy_splits(),
  )
  assert res['train_steps'] == 12 and res['best_step'] in (6, 12)


def test_a_longer_constant_learning_rate_run_resumes(tmp_path):
  _stop_after_one_step(tmp_path, lr_schedule='constant')
  res = loop.run(
    _config(lr_schedule='constant', num_train_steps=16), str(tmp_path), _toy_family(), _toy_splits()
  )
  assert res['train_steps'] == 16


def test_allow_resume_changes_resumes_and_records_the_new_config(tmp_path, capsys):
  _stop_after_one_step(tmp_path)
  res = loop.run(
    _config(num_train_steps=8, allow_resume_changes=True),
    str(tmp_path),
    _toy_family(),
    _toy_splits(),
  )
  assert res['train_steps'] == 8
  assert 'WARNING: toy: resuming' in capsys.readouterr().out
  assert json.loads((tmp_path / 'config.json').read_text())['num_train_steps'] == 8
  # From now on the new config is the one the checkpoints continue under.
  assert (
    loop.run(_config(num_train_steps=8), str(tmp_path), _toy_family(), _toy_splits())['train_steps']
    == 8
  )


def test_a_workdir_without_its_config_resumes_unchecked_and_a_corrupt_one_is_named(tmp_path):
  _stop_after_one_step(tmp_path)
  (tmp_path / 'config.json').write_text('{"num_train_steps": 1')
  with pytest.raises(run_config.ResumeConfigError, match='config.json cannot be read'):
    loop.run(_config(), str(tmp_path), _toy_family(), _toy_splits())
  os.remove(tmp_path / 'config.json')  # as in a workdir written before config.json existed
  res = loop.run(_config(num_train_steps=6), str(tmp_path), _toy_family(), _toy_splits())
  assert res['train_steps'] == 6
  assert not (tmp_path / 'config.json').exists()  # a resumed run does not guess its origin


def test_config_changes_compare_json_values_and_one_init_from_source():
  saved = run_config._plain(_config(dilations=(1, 2), init_from='/runs/a/checkpoints'))
  assert run_config.changes(saved, _config(dilations=[1, 2], init_from='/runs/a/')) == []
  assert run_config.changes(saved, _config(dilations=(1, 4), init_from='/runs/a')) == [
    'dilations: [1, 2] -> [1, 4]'
  ]
  # Under a constant schedule the step count may change; under cosine it may not.
  constant = run_config._plain(_config(lr_schedule='constant'))
  assert run_config.changes(constant, _config(lr_schedule='constant', num_train_steps=99)) == []
  assert run_config.changes(constant, _config(num_train_steps=99)) == [
    "lr_schedule: 'constant' -> 'cosine'",
    'num_train_steps: 12 -> 99 (the learning-rate schedule is stretched over num_train_steps)',
  ]


def _cyclegan_schedule(config):
  from gm_jax.families import cyclegan
  from gm_jax.train import defaults

  return cyclegan.learning_rate_schedule(defaults.complete(config, cyclegan.DEFAULTS))


@pytest.mark.parametrize(
  'model,fields,schedule,may_change',
  [
    ('toy', dict(lr_schedule='constant', warmup_steps=3), None, True),  # warm-up only
    ('toy', dict(lr_schedule='cosine'), None, False),
    ('dcgan', dict(lr_schedule='constant'), None, True),
    # CycleGAN decays linearly from decay_start_fraction (default 0.5) of the run, with no
    # lr_schedule field: the family's own schedule (Family.schedule) is the one compared.
    ('cyclegan', {}, _cyclegan_schedule, False),
    ('cyclegan', dict(decay_start_fraction=1.0), _cyclegan_schedule, True),
  ],
)
def test_num_train_steps_may_change_where_the_familys_schedule_does_not(
  model, fields, schedule, may_change
):
  saved = dict(model=model, learning_rate=2e-4, num_train_steps=100, **fields)
  for steps in (50, 200):
    found = run_config.changes(
      saved, ml_collections.ConfigDict(dict(saved, num_train_steps=steps)), schedule=schedule
    )
    assert found == (
      []
      if may_change
      else [
        f'num_train_steps: 100 -> {steps} (the learning-rate schedule is '
        'stretched over num_train_steps)'
      ]
    )


def test_a_shared_setting_spelled_at_its_default_is_no_change():
  saved = run_config._plain(_config())
  assert run_config.changes(saved, _config(weight_decay=0.0, adam_b1=0.9)) == []
  assert run_config.changes(saved, _config(weight_decay=1e-4)) == [
    'weight_decay: (absent) -> 0.0001'
  ]
  # A family's evaluation-only setting may change when the family says so.
  assert run_config.changes(saved, _config(iwae_samples=10)) == ['iwae_samples: (absent) -> 10']
  assert (
    run_config.changes(saved, _config(iwae_samples=10), may_change=frozenset({'iwae_samples'}))
    == []
  )


@pytest.mark.parametrize('k', [2, 4])
def test_steps_per_loop_gives_the_same_parameters_bit_for_bit(tmp_path, k):
  loop.run(_config(log_every=4), str(tmp_path / 'one'), _toy_family(), _toy_splits())
  loop.run(
    _config(log_every=4, steps_per_loop=k), str(tmp_path / 'many'), _toy_family(), _toy_splits()
  )
  _, a = _final_params(tmp_path / 'one')
  _, b = _final_params(tmp_path / 'many')
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_array_equal(x, y)
  one = [json.loads(l) for l in open(tmp_path / 'one' / 'metrics.jsonl')]
  many = [json.loads(l) for l in open(tmp_path / 'many' / 'metrics.jsonl')]
  drop = lambda r: {key: v for key, v in r.items() if key != 'steps_per_s'}
  assert [drop(r) for r in one] == [drop(r) for r in many]


def test_host_batches_give_the_same_parameters_as_device_resident_data(tmp_path):
  loop.run(_config(steps_per_loop=2), str(tmp_path / 'device'), _toy_family(), _toy_splits())
  loop.run(
    _config(steps_per_loop=2, device_data_max_bytes=0),
    str(tmp_path / 'host'),
    _toy_family(),
    _toy_splits(),
  )
  _, a = _final_params(tmp_path / 'device')
  _, b = _final_params(tmp_path / 'host')
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_array_equal(x, y)


def test_steps_per_loop_must_divide_the_intervals(tmp_path):
  with pytest.raises(
    ValueError, match='config.log_every=2 must be a multiple of config.steps_per_loop=4'
  ):
    loop.run(_config(steps_per_loop=4), str(tmp_path), _toy_family(), _toy_splits())
  assert not (tmp_path / 'checkpoints').exists()


def test_nan_inside_a_multi_step_dispatch_names_the_first_bad_step(tmp_path):
  splits = _toy_splits(nan_at=5)
  bad_step = next(
    s
    for s in range(100)
    if np.isnan(_real_batch_at_step(splits.train, s, batch_size=8, seed=3)['x']).any()
  )
  with pytest.raises(loop.NonFiniteLossError, match=f'at step {bad_step + 1};'):
    loop.run(
      _config(num_train_steps=40, steps_per_loop=4, log_every=4, checkpoint_every=4),
      str(tmp_path),
      _toy_family(),
      splits,
    )
  steps = sorted(int(s) for s in os.listdir(tmp_path / 'checkpoints'))
  # Nothing trained through the bad step is saved: the newest checkpoint precedes it.
  assert steps[-1] <= bad_step and steps[-1] > bad_step - 4


def test_loop_and_run_config_name_no_family():
  """The trainer's own modules name no model and no family's setting (the `Family` says)."""
  import io
  import tokenize

  from gm_jax import families

  family_words = set(families.model_names()) | {
    families.module_for(m).__name__.rsplit('.', 1)[1] for m in families.model_names()
  }
  family_words |= {'kl_warmup_steps', 'grad_skip_norm', 'free_bits', 'gan_loss', 'pool_size'}
  root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  for name in ('loop.py', 'run_config.py', 'step.py'):
    with open(os.path.join(root, 'gm_jax', 'train', name)) as f:
      tokens = list(tokenize.generate_tokens(io.StringIO(f.read()).readline))
    used = {t.string for t in tokens if t.type == tokenize.NAME}
    used |= {t.string.strip('\'"') for t in tokens if t.type == tokenize.STRING}
    assert not used & family_words, (name, sorted(used & family_words))
