"""gm_jax.bench.table: the Markdown table of the last row of each config."""

import json
import os

import pytest

from gm_jax import bench

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
VAE = os.path.join(REPO, 'configs', 'vae.py')

# The contract of issue #29 section 3, spelled out again: a renamed key fails here.
CONTRACT = [
  'model',
  'backend',
  'device_kind',
  'device_count',
  'global_batch',
  'compute_dtype',
  'compile_s',
  'step_ms_median',
  'step_ms_p90',
  'steps_per_s',
  'examples_per_s',
  'flops_per_step',
  'achieved_tflops',
  'peak_tflops',
  'mfu',
  'peak_memory_bytes',
  'trainer_steps_per_s',
  'trainer_overhead',
]


def test_table_prints_the_last_row_of_each_config(tmp_path, capsys):
  row = dict.fromkeys(CONTRACT, 1.0)
  row.update(
    model='vae',
    config='configs/vae.py',
    global_batch=64,
    compute_dtype='float32',
    steps_per_loop=1,
    device_kind='cpu',
    flops_per_step=4.68e8,
    load_avg_1m=2.0,
  )
  path = tmp_path / 'rows.jsonl'
  path.write_text(
    json.dumps(dict(row, trainer_overhead=0.5))
    + '\n'
    + json.dumps(dict(row, trainer_overhead=0.93))
    + '\n'
    + json.dumps(dict(row, config='configs/glow.py', model='glow'))
    + '\n'
  )
  assert bench.main(['--table', str(path)]) == 0
  lines = capsys.readouterr().out.splitlines()
  assert len(lines) == 4  # header, rule, vae (its newer row), glow
  assert lines[2] == ('| vae.py | 64 | 1 | 1 | 1.0 | 1.0 | 0.93 | 0.468 | 1.000 | 1.00 | 2.0 |')
  assert lines[3].startswith('| glow.py |')
  path.write_text('not json\n')
  with pytest.raises(bench.BenchError, match='not JSONL'):
    bench.main(['--table', str(path)])
  with pytest.raises(bench.BenchError, match='takes no other argument'):
    bench.main(['--table', str(path), '--all'])
