"""metrics.jsonl across kills (#40 part 5): a cut last line dropped and said, a resumed
run's records equal an uninterrupted run's, an unfinished checkpoint save named."""

import json
import os

import pytest

from gm_jax import data as gm_data
from gm_jax.data import batch_at_step as _real_batch_at_step
from gm_jax.train import loop
from tests.train.test_loop import _config
from tests.train.test_loop import _toy_family
from tests.train.test_loop import _toy_splits


def _records(workdir):
  """Every line of metrics.jsonl, parsed (a cut line fails here), timing removed."""
  with open(os.path.join(workdir, 'metrics.jsonl')) as f:
    lines = f.read().split('\n')
  assert lines[-1] == ''
  return [{k: v for k, v in json.loads(l).items() if k != 'steps_per_s'} for l in lines[:-1]]


def test_a_resumed_runs_records_equal_an_uninterrupted_runs(tmp_path, monkeypatch, capsys):
  # Checkpoints (every 6) are not logging steps (every 4): the window 4..8 straddled the
  # checkpoint at 6, so a run resumed there logged an average of steps 7-8 alone.
  config = _config(checkpoint_every=6, log_every=4, eval_every=6)
  loop.run(config, str(tmp_path / 'full'), _toy_family(), _toy_splits())

  def killed(arrays, step, **kw):
    if step == 11:
      raise KeyboardInterrupt('simulated kill')
    return _real_batch_at_step(arrays, step, **kw)

  monkeypatch.setattr(gm_data, 'batch_at_step', killed)
  with pytest.raises(KeyboardInterrupt):
    loop.run(config, str(tmp_path / 'killed'), _toy_family(), _toy_splits())
  monkeypatch.setattr(gm_data, 'batch_at_step', _real_batch_at_step)
  loop.run(config, str(tmp_path / 'killed'), _toy_family(), _toy_splits())
  assert 'record(s) after step 6, which this run trains again' in capsys.readouterr().out
  full = _records(tmp_path / 'full')
  assert [r['step'] for r in full if 'loss' in r] == [4, 6, 8, 12]
  assert _records(tmp_path / 'killed') == full


def test_a_cut_last_line_is_dropped_and_said(tmp_path, capsys):
  config = _config(num_train_steps=8, lr_schedule='constant')
  loop.run(config, str(tmp_path), _toy_family(), _toy_splits())
  before = _records(tmp_path)
  with open(tmp_path / 'metrics.jsonl', 'a') as f:
    f.write('{"step": 10, "loss": 0.12')  # a kill mid-write
  loop.run(
    _config(num_train_steps=12, lr_schedule='constant'), str(tmp_path), _toy_family(), _toy_splits()
  )
  assert 'dropped a last line cut by a kill (25 bytes)' in capsys.readouterr().out
  after = _records(tmp_path)
  assert after[: len(before)] == before
  assert [r['step'] for r in after[len(before) :] if 'loss' in r] == [10, 12]


def test_only_an_unfinished_checkpoint_says_it_starts_afresh(tmp_path, capsys):
  partial = tmp_path / 'checkpoints' / '4.orbax-checkpoint-tmp-1234'
  partial.mkdir(parents=True)
  (partial / 'half').write_text('x')
  loop.run(_config(num_train_steps=4), str(tmp_path), _toy_family(), _toy_splits())
  out = capsys.readouterr().out
  assert (
    'the save of step(s) [4] in ' + str(tmp_path) + '/checkpoints never completed '
    '(a killed run); no complete checkpoint: starting afresh.'
  ) in out
