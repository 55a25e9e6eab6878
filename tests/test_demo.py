"""`make demo`'s driver: trains the listed models and writes the summary table with each
row's seconds and budget."""

import json
import os
import time

import pytest

from gm_jax import demo


def test_demo_writes_summary_rows(tmp_path, tfds_dir, monkeypatch):
  monkeypatch.setattr(
    demo,
    'DEMO_RUNS',
    {
      'vae': (
        'vae.py',
        {
          'budget_s': 0.01,  # over budget: reported, not a failure
          'num_train_steps': 20,
          'iwae_samples': 5,
          'hidden': (32,),
          'latent_dim': 2,
          'eval_every': 10,
          'checkpoint_every': 10,
        },
      ),
      'not_built': ('no_such_config.py', {}),
    },
  )
  out = tmp_path / 'demo'
  assert demo.main(['--out', str(out), '--data_dir', tfds_dir]) == 0
  table = (out / 'summary.md').read_text()
  assert 'benchmarks/results/family_table.md' in table
  rows = [l for l in table.splitlines() if l.startswith('| vae ')]
  assert len(rows) == 1 and '| digits |' in rows[0] and 'iwae-5' in rows[0]
  summary = json.loads((out / 'summary.json').read_text())
  assert summary[0]['model'] == 'vae' and summary[0]['test_bpd'] > 0
  seconds = summary[0]['seconds']
  assert summary[0]['budget_s'] == 0.01 and seconds > 0.01
  assert rows[0].endswith(f'| {seconds:.0f} | 0 |')
  assert f'Over budget: vae ({seconds:.0f} s > 0.01 s).' in table
  assert 'budget_s' not in json.loads((out / 'vae' / 'config.json').read_text())
  assert (out / 'vae' / 'samples.png').exists() and (out / 'vae' / 'loss.png').exists()


def test_summary_table_formats_missing_values():
  table = demo.summary_table(
    [{'model': 'nb', 'dataset': 'digits', 'test_accuracy': 0.81234, 'seconds': 7.6}]
  )
  assert '| nb | digits | - | - | 0.812 | - | - | - | - | - | - | 8 | - |' in table
  assert demo.over_budget([{'model': 'nb', 'seconds': 7.6, 'budget_s': None}]) == []


def test_every_row_has_a_budget_and_the_schedule_fits_the_demo():
  budgets = {m: demo.row_settings(m)[2] for m in demo.DEMO_RUNS}
  missing = sorted(m for m, b in budgets.items() if not (isinstance(b, (int, float)) and b > 0))
  assert not missing, f'DEMO_RUNS rows without a positive budget_s: {missing}'
  dependencies = {m: demo.row_dependencies(m) for m in demo.DEMO_RUNS}
  assert dependencies['vqvae_prior'] == ('vqvae',)
  assert dependencies['reflow'] == ('flow_matching',)
  assert all(d in demo.DEMO_RUNS for deps in dependencies.values() for d in deps)
  order, makespan = demo.plan(budgets, dependencies, jobs=demo.DEMO_JOBS)
  assert sorted(order) == sorted(demo.DEMO_RUNS)
  assert order.index('vqvae') < order.index('vqvae_prior')
  assert order.index('flow_matching') < order.index('reflow')
  # Two lanes can do no better than half the work, nor than the longest row or chain.
  bound = max(
    sum(budgets.values()) / demo.DEMO_JOBS,
    max(budgets.values()),
    budgets['vqvae'] + budgets['vqvae_prior'],
    budgets['flow_matching'] + budgets['reflow'],
  )
  assert bound <= makespan <= demo.DEMO_BUDGET_S, (makespan, budgets)


def test_plan_schedules_by_critical_path_and_waits_for_dependencies():
  # No dependencies: longest first; lanes 3+2 and 3+2.
  assert demo.plan({'x': 2, 'y': 3, 'z': 2, 'w': 3}, {}, jobs=2) == (['y', 'w', 'x', 'z'], 5)
  assert demo.plan({'x': 2, 'y': 3, 'z': 2, 'w': 3}, {}, jobs=1)[1] == 10
  # b (after a) has the longest chain: a starts first, c beside it; b waits for a to end
  # at 4, the free lane of c idling from 1 to 4: 4 + 6.
  order, makespan = demo.plan({'c': 1, 'b': 6, 'a': 4}, {'b': ('a',)}, jobs=2)
  assert order == ['a', 'b', 'c'] and makespan == 10
  # The dependency goes first even when budgets tie at zero; unknown dependencies ignored.
  assert demo.plan({'b': 0, 'a': 0}, {'b': ('a', 'gone')}, jobs=1) == (['a', 'b'], 0)
  with pytest.raises(ValueError, match='jobs'):
    demo.plan({'a': 1}, {}, jobs=0)


def _fake_row(model: str, log_dir: str, seconds: float, fail: bool):
  """A row for `run_rows` in a worker process: logs its start and end times."""
  start = time.time()
  time.sleep(seconds)
  with open(os.path.join(log_dir, model), 'w') as f:
    json.dump({'start': start, 'end': time.time(), 'pid': os.getpid()}, f)
  return None if fail else {'model': model}


@pytest.mark.parametrize('jobs', [1, 2])
def test_run_rows_runs_dependencies_first_and_skips_rows_whose_dependency_failed(tmp_path, jobs):
  tasks = {
    'first': ('first', str(tmp_path), 0.5, False),
    'second': ('second', str(tmp_path), 0.0, False),  # after first
    'beside': ('beside', str(tmp_path), 0.5, False),
    'broken': ('broken', str(tmp_path), 0.0, True),
    'after_broken': ('after_broken', str(tmp_path), 0.0, False),
  }
  dependencies = {'second': ('first',), 'after_broken': ('broken',)}
  results = demo.run_rows(tasks, dependencies, jobs=jobs, runner=_fake_row)
  assert results == {
    'first': {'model': 'first'},
    'second': {'model': 'second'},
    'beside': {'model': 'beside'},
    'broken': None,
    'after_broken': None,
  }
  log = {p.name: json.loads(p.read_text()) for p in tmp_path.iterdir()}
  assert sorted(log) == ['beside', 'broken', 'first', 'second']  # after_broken never ran
  assert log['second']['start'] >= log['first']['end']
  pids = {entry['pid'] for entry in log.values()}
  if jobs == 1:
    assert pids == {os.getpid()}
  else:  # two worker processes; first and beside ran at the same time
    assert len(pids) == 2 and os.getpid() not in pids
    assert log['beside']['start'] < log['first']['end']
    assert log['first']['start'] < log['beside']['end']
