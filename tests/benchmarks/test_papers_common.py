"""benchmarks/papers/_common.py: the budget cell says what was trained, not what was planned."""

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..', '..', 'benchmarks', 'papers'))
import _common  # pylint: disable=g-import-not-at-top,wrong-import-position


def _record(steps, planned):
  return dict(label='VAE', paper='86.76 nats', ours='89.82 nats (iwae-5000)', protocol='p',
              steps=steps, planned_steps=planned, batch_size=500, wall_s=120.0,
              device='NVIDIA H100 80GB HBM3', command='python x.py',
              eval={'train_steps_per_s': 200.0})


def test_budget_of_a_run_stopped_by_its_time_budget():
  table = _common.markdown('t', [_record(138_023, 150_000)])
  assert ('138,023 steps (stopped by config.max_train_seconds; schedule planned over '
          '150,000) x 500, 200 steps/s = 11.5 min of training steps') in table


def test_budget_of_a_finished_run():
  table = _common.markdown('t', [_record(100_000, 100_000)])
  assert '| 100,000 steps x 500, 200 steps/s = 8.3 min of training steps;' in table
  assert 'stopped' not in table
