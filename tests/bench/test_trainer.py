"""gm_jax.bench.trainer: the row's contract and its numbers' relations, from a tiny VAE."""

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


def test_the_row_of_a_tiny_vae_has_every_contract_key_with_sane_values(tmp_path, tfds_dir, capsys):
  out = tmp_path / 'rows.jsonl'
  argv = [
    f'--config={VAE}',
    f'--config.data_dir={tfds_dir}',
    '--config.batch_size=8',
    '--config.hidden=(32,)',
    '--config.latent_dim=4',
    '--steps',
    '4',
    '--windows',
    '2',
    '--rounds',
    '2',
    '--min_seconds',
    '0',
    '--out',
    str(out),
  ]
  out.write_text('{"model": "an earlier row"}\n')
  assert bench.main(argv) == 0
  earlier, row = [json.loads(line) for line in out.read_text().splitlines()]  # appended
  assert earlier == {'model': 'an earlier row'}
  printed = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line]
  assert printed == [row]
  assert list(bench.REQUIRED_KEYS) == CONTRACT
  assert set(CONTRACT) <= set(row)
  for key in ('model', 'backend', 'device_kind', 'compute_dtype'):
    assert isinstance(row[key], str) and row[key]
  assert (row['model'], row['backend'], row['compute_dtype']) == ('vae', 'cpu', 'float32')
  assert row['device_count'] == 1 and row['global_batch'] == 8
  for key in (
    'compile_s',
    'step_ms_median',
    'step_ms_p90',
    'steps_per_s',
    'examples_per_s',
    'flops_per_step',
    'achieved_tflops',
    'peak_tflops',
    'mfu',
    'trainer_steps_per_s',
    'trainer_overhead',
  ):
    assert isinstance(row[key], float) and row[key] > 0, key
  assert isinstance(row['peak_memory_bytes'], int) and row['peak_memory_bytes'] > 0
  assert row['peak_memory_source'] == 'compiled.memory_analysis'
  assert row['step_ms_p90'] >= row['step_ms_median']
  assert row['examples_per_s'] == pytest.approx(8 * row['steps_per_s'])
  assert row['achieved_tflops'] == pytest.approx(row['flops_per_step'] * row['steps_per_s'] / 1e12)
  assert row['mfu'] == pytest.approx(row['achieved_tflops'] / row['peak_tflops'])
  assert row['trainer_overhead'] == pytest.approx(row['trainer_steps_per_s'] / row['steps_per_s'])
  # Two rounds of two steps a side; each side's best round is its rate.
  assert row['rounds'] == 2 and row['steps'] == 4 and row['trainer_steps_timed'] == 2
  assert row['steps_per_s'] == max(row['bare_steps_per_s_rounds'])
  assert row['trainer_steps_per_s'] == max(row['trainer_steps_per_s_rounds'])
  # Hand count of the MLP's matmuls (forward 2 m n k, backward twice that): the cost
  # analysis must be at least their 3 x 2 x batch x sum(fan_in x fan_out).
  d = 8 * 8 * 1  # digits 8x8 grey
  layers = [(d, 32), (32, 2 * 4), (4, 32), (32, d * 17)]
  assert row['flops_per_step'] >= 3 * 2 * 8 * sum(a * b for a, b in layers)
