"""`make demo`'s driver: trains the listed models and writes the summary table."""

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
  assert (out / 'vae' / 'samples.png').exists() and (out / 'vae' / 'loss.png').exists()


def test_summary_table_formats_missing_values():
  table = demo.summary_table([{'model': 'nb', 'dataset': 'digits', 'test_accuracy': 0.81234}])
  assert '| nb | digits | - | - | 0.812 | - | - | - | - |' in table
