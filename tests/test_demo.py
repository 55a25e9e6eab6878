"""`make demo`'s driver: trains the listed models and writes the summary table with each
row's seconds and budget."""

import json

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


def test_every_row_has_a_budget_and_the_budgets_fit_the_demo():
  budgets = {m: demo.row_settings(m)[2] for m in demo.DEMO_RUNS}
  missing = sorted(m for m, b in budgets.items() if not (isinstance(b, (int, float)) and b > 0))
  assert not missing, f'DEMO_RUNS rows without a positive budget_s: {missing}'
  assert sum(budgets.values()) <= demo.DEMO_BUDGET_S, budgets
