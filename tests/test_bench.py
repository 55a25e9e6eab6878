"""gm_jax.bench: the row's contract, FLOPs against a hand count, the peak table, errors."""

import json
import os
import sys

import jax
import jax.numpy as jnp
import pytest

from gm_jax import bench

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VAE = os.path.join(REPO, 'configs', 'vae.py')

# The contract of issue #29 section 3, spelled out again: a renamed key fails here.
CONTRACT = ['model', 'backend', 'device_kind', 'device_count', 'global_batch',
            'compute_dtype', 'compile_s', 'step_ms_median', 'step_ms_p90', 'steps_per_s',
            'examples_per_s', 'flops_per_step', 'achieved_tflops', 'peak_tflops', 'mfu',
            'peak_memory_bytes', 'trainer_steps_per_s', 'trainer_overhead']


def test_the_row_of_a_tiny_vae_has_every_contract_key_with_sane_values(
    tmp_path, tfds_dir, capsys):
  out = tmp_path / 'rows.jsonl'
  argv = [f'--config={VAE}', f'--config.data_dir={tfds_dir}', '--config.batch_size=8',
          '--config.hidden=(32,)', '--config.latent_dim=4', '--steps', '4', '--windows', '2',
          '--rounds', '2', '--min_seconds', '0', '--out', str(out)]
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
  for key in ('compile_s', 'step_ms_median', 'step_ms_p90', 'steps_per_s', 'examples_per_s',
              'flops_per_step', 'achieved_tflops', 'peak_tflops', 'mfu',
              'trainer_steps_per_s', 'trainer_overhead'):
    assert isinstance(row[key], float) and row[key] > 0, key
  assert isinstance(row['peak_memory_bytes'], int) and row['peak_memory_bytes'] > 0
  assert row['peak_memory_source'] == 'compiled.memory_analysis'
  assert row['step_ms_p90'] >= row['step_ms_median']
  assert row['examples_per_s'] == pytest.approx(8 * row['steps_per_s'])
  assert row['achieved_tflops'] == pytest.approx(
      row['flops_per_step'] * row['steps_per_s'] / 1e12)
  assert row['mfu'] == pytest.approx(row['achieved_tflops'] / row['peak_tflops'])
  assert row['trainer_overhead'] == pytest.approx(
      row['trainer_steps_per_s'] / row['steps_per_s'])
  # Two rounds of two steps a side; each side's best round is its rate.
  assert row['rounds'] == 2 and row['steps'] == 4 and row['trainer_steps_timed'] == 2
  assert row['steps_per_s'] == max(row['bare_steps_per_s_rounds'])
  assert row['trainer_steps_per_s'] == max(row['trainer_steps_per_s_rounds'])
  # Hand count of the MLP's matmuls (forward 2 m n k, backward twice that): the cost
  # analysis must be at least their 3 x 2 x batch x sum(fan_in x fan_out).
  d = 8 * 8 * 1  # digits 8x8 grey
  layers = [(d, 32), (32, 2 * 4), (4, 32), (32, d * 17)]
  assert row['flops_per_step'] >= 3 * 2 * 8 * sum(a * b for a, b in layers)


@pytest.mark.parametrize('m,k,n', [(64, 32, 16), (128, 256, 8)])
def test_flops_of_a_matmul_are_two_m_n_k(m, k, n):
  compiled = jax.jit(jnp.matmul).lower(jnp.ones((m, k)), jnp.ones((k, n))).compile()
  assert bench.compiled_flops(compiled) == 2 * m * n * k
  assert bench.compiled_memory_bytes(compiled) >= 4 * (m * k + k * n + m * n)


def test_the_matmul_ceiling_is_a_positive_rate():
  assert bench.measure_matmul_tflops(size=256, repeats=1) > 0


@pytest.mark.parametrize('kind,dtype,expected', [
    ('NVIDIA H100 80GB HBM3', 'bfloat16', 989.4),
    ('NVIDIA H100 80GB HBM3', 'tf32', 494.7),
    ('NVIDIA H100 PCIe', 'bfloat16', 756.0),
    ('NVIDIA H200', 'float32', 67.0),
    ('NVIDIA A100-SXM4-80GB', 'tf32', 156.0),
    ('NVIDIA A100 80GB PCIe', 'float16', 312.0),
    ('NVIDIA L4', 'bfloat16', 121.0),
    ('TPU v4', 'bfloat16', 275.0),
    ('TPU v5 lite', 'bfloat16', 197.0),
    ('TPU v5p', 'bfloat16', 459.0),
    ('TPU v6 lite', 'bfloat16', 918.0),
    ('TPU v5 lite', 'tf32', 197.0),  # no TF32 on a TPU: its float32 (default precision)
    ('NVIDIA L40S', 'bfloat16', None),  # not an L4
    ('cpu', 'float32', None),
])
def test_peak_table_lookup_by_device_kind(kind, dtype, expected):
  assert bench.peak_tflops_for(kind, dtype) == expected


def test_the_peak_column_follows_compute_dtype_and_matmul_precision():
  assert bench.peak_dtype('bfloat16') == 'bfloat16'
  assert bench.peak_dtype('float32') == 'tf32'
  assert bench.peak_dtype('float32', 'highest') == 'float32'


def test_a_bad_config_path_or_key_is_named():
  with pytest.raises(bench.BenchError, match='configs/no_such.py'):
    bench.main(['--config=configs/no_such.py'])
  with pytest.raises(bench.BenchError, match='no_such_field'):
    bench.main([f'--config={VAE}', '--config.no_such_field=1'])
  with pytest.raises(bench.BenchError, match='batch_size'):
    bench.main([f'--config={VAE}', '--config.batch_size=many'])
  with pytest.raises(bench.BenchError, match='common.py'):
    bench.main([f'--config={os.path.join(REPO, "configs", "common.py")}'])
  with pytest.raises(bench.BenchError, match='--all'):
    bench.main([f'--config={VAE}', '--all'])
  with pytest.raises(bench.BenchError, match='--bogus'):
    bench.main([f'--config={VAE}', '--bogus'])


def test_the_command_line_exits_2_naming_the_bad_key(monkeypatch, capsys):
  monkeypatch.setattr(sys, 'argv', ['bench', f'--config={VAE}', '--config.nope=1'])
  assert bench.run() == 2
  assert "'nope'" in capsys.readouterr().err


def test_overrides_are_typed_by_the_field():
  config = bench.load_config(VAE, [('hidden', '(8, 8)'), ('compute_dtype', 'bfloat16'),
                                   ('progress_bar', 'false'), ('learning_rate', '1e-2')])
  assert config.hidden == (8, 8) and config.compute_dtype == 'bfloat16'
  assert config.progress_bar is False and config.learning_rate == 0.01


def test_all_lists_the_model_configs_but_not_common():
  paths = [os.path.basename(p) for p in bench.model_configs(os.path.join(REPO, 'configs'))]
  assert 'vae.py' in paths and 'naive_bayes.py' in paths and 'cyclegan.py' in paths
  assert 'common.py' not in paths and '__init__.py' not in paths


def test_flops_per_step_of_a_multi_step_dispatch_are_a_one_step_dispatchs(tmp_path, tfds_dir):
  # The MLP's two steps stay a rolled scan (no convolution), whose body XLA's cost
  # analysis counts once: the count comes from a one-step dispatch instead.
  overrides = [('data_dir', tfds_dir), ('batch_size', '8'), ('hidden', '(32,)'),
               ('latent_dim', '4')]
  config = bench.load_config(VAE, overrides + [('steps_per_loop', '2')])
  config, _, k = bench._bench_settings(config, 4)
  config, family, splits = bench.build(config, str(tmp_path / 'build'))
  two = bench.compile_dispatch(config, family, splits, str(tmp_path / 'two'))[3]
  flops, how = bench.flops_per_step(two, config, family, splits, str(tmp_path / 'a'))
  assert k == 2 and 'one-step' in how
  single = bench.load_config(VAE, overrides)
  single = bench._bench_settings(single, 4)[0]
  single, family, splits = bench.build(single, str(tmp_path / 'build1'))
  one = bench.compile_dispatch(single, family, splits, str(tmp_path / 'one'))[3]
  assert bench.flops_per_step(one, single, family, splits, str(tmp_path / 'b')) == (
      flops, 'cost_analysis of the dispatch')
  assert bench.compiled_flops(two) < 1.5 * flops  # the scan's body, counted once


def test_table_prints_the_last_row_of_each_config(tmp_path, capsys):
  row = {k: 1.0 for k in CONTRACT}
  row.update(model='vae', config='configs/vae.py', global_batch=64, compute_dtype='float32',
             steps_per_loop=1, device_kind='cpu', flops_per_step=4.68e8, load_avg_1m=2.0)
  path = tmp_path / 'rows.jsonl'
  path.write_text(json.dumps(dict(row, trainer_overhead=0.5)) + '\n'
                  + json.dumps(dict(row, trainer_overhead=0.93)) + '\n'
                  + json.dumps(dict(row, config='configs/glow.py', model='glow')) + '\n')
  assert bench.main(['--table', str(path)]) == 0
  lines = capsys.readouterr().out.splitlines()
  assert len(lines) == 4  # header, rule, vae (its newer row), glow
  assert lines[2] == ('| vae.py | 64 | 1 | 1 | 1.0 | 1.0 | 0.93 | 0.468 | 1.000 | 1.00 '
                      '| 2.0 |')
  assert lines[3].startswith('| glow.py |')
  path.write_text('not json\n')
  with pytest.raises(bench.BenchError, match='not JSONL'):
    bench.main(['--table', str(path)])
  with pytest.raises(bench.BenchError, match='takes no other argument'):
    bench.main(['--table', str(path), '--all'])
