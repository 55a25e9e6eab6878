"""benchmarks/family_table.py: its arithmetic on known inputs, and one tiny real run."""

import json
import os

import numpy as np
import pytest

from benchmarks import family_table as ft

ROW = ft.Row('flow', 'realnvp', 'realnvp.py', 'exact', 2.74, 10)


def _write_metrics(workdir, records):
  os.makedirs(workdir, exist_ok=True)
  with open(os.path.join(workdir, 'metrics.jsonl'), 'w') as f:
    for r in records:
      f.write(json.dumps(r) + '\n')


def test_time_to_target_is_first_validation_step_below_target_over_speed(tmp_path):
  _write_metrics(
    str(tmp_path),
    [
      {'step': 50, 'loss': 1.0},
      {'step': 100, 'val_bpd': 3.1},
      {'step': 200, 'val_bpd': 2.70},
      {'step': 300, 'val_bpd': 2.80},
      {'step': 400, 'val_bpd': 2.2},
    ],
  )
  result = {'best_val_bpd': 2.2, 'train_steps_per_s': 8.0}
  assert ft.time_to_target(str(tmp_path), ROW, result) == pytest.approx(200 / 8.0)
  assert (
    ft.time_to_target(str(tmp_path), ft.Row('x', 'realnvp', 'realnvp.py', 'exact', 1.0, 1), result)
    is None
  )  # never reached
  assert ft.time_to_target(str(tmp_path), ROW, dict(result, diverged=True)) is None


def test_summary_statistics_match_numpy():
  runs = [
    {
      'test_bpd': v,
      'samples_per_s': s,
      'train_steps': 10,
      'time_to_target_s': t,
      'linear_probe_accuracy': 0.5,
      'latent_dims': 64,
    }
    for v, s, t in [(2.0, 100.0, 5.0), (2.2, 300.0, None), (2.7, 200.0, 7.0)]
  ]
  runs.append({'diverged': True, 'train_steps': 10, 'time_to_target_s': None})
  s = ft.summarize(ROW, runs, 12.5)
  assert s['mean'] == pytest.approx(np.mean([2.0, 2.2, 2.7]))
  assert s['std'] == pytest.approx(np.std([2.0, 2.2, 2.7], ddof=1))
  assert s['diverged'] == 1 and s['seeds'] == 4
  assert s['samples_per_s_8x8'] == pytest.approx(200.0)
  assert s['time_to_target_s'] == pytest.approx(6.0) and s['reached_target'] == '2/3'
  assert '2.300 ± 0.361 bits/dim' in ft.to_markdown(
    [s], {'machine': 'm', 'jax': 'j', 'seeds': [0], 'budget': 'b', 'wall_min': 1.0}
  )


# RealNVP of 3 couplings instead of the config's 16 (its compilation was most of the
# test: 17.7 CPU-s cold in the suite).
TINY_REALNVP = ('num_scales=1', 'num_checkerboard=1', 'num_channel=1', 'num_final=1', 'hidden=8')


@pytest.mark.slow
def test_tiny_run_writes_table_and_json(tmp_path, tfds_dir):
  out = str(tmp_path / 'table')
  settings = [arg for s in TINY_REALNVP for arg in ('--set', s)]
  ft.main(
    [
      '--rows',
      'realnvp',
      '--seeds',
      '0',
      '--steps',
      '4',
      '--workdir',
      str(tmp_path / 'runs'),
      '--out',
      out,
      '--data_dir',
      tfds_dir,
      *settings,
    ]
  )
  data = json.load(open(out + '.json'))
  (row,) = data['rows']
  assert row['model'] == 'realnvp' and row['seeds'] == 1 and row['diverged'] == 0
  (workdir,) = os.listdir(tmp_path / 'runs')
  assert workdir.startswith('steps4-set')  # not the shipped configs' workdirs
  run_config = json.load(open(tmp_path / 'runs' / workdir / 'realnvp' / 'seed0' / 'config.json'))
  assert (run_config['num_scales'], run_config['hidden']) == (1, 8)
  assert row['measured']['settings']['num_scales'] == 1  # the row says it is not the config's
  assert row['latent_dims'] == 64 and 0.0 <= row['linear_probe_accuracy'] <= 1.0
  assert row['samples_per_s_28x28'] > 0 and row['mean'] > 0
  (run,) = data['runs']['realnvp']
  assert row['mean'] == pytest.approx(run['test_bpd']) and row['std'] == 0.0
  assert 0 < run['test_bpd'] < 10 and run['train_steps'] == 4
  assert '| flow (RealNVP) | 4 |' in open(out + '.md').read()


def test_diffusion_row_has_bits_fid_and_each_sampler_speed():
  row = ft.Row('diffusion (VDM)', 'diffusion', 'diffusion.py', 'bound', 2.20, 10)
  runs = [
    {
      'test_bpd': b,
      'fid': f,
      'fid_floor': 6.0,
      'class_coverage': c,
      'bound': 'elbo',
      'sampler': 'ddim-50',
      'samples_per_s': s,
      'samples_per_s_ddpm_1000': d,
      'train_steps': 10,
      'time_to_target_s': None,
    }
    for b, f, c, s, d in [(2.0, 7.0, 10, 16.0, 1.0), (2.1, 9.0, 4, 18.0, 0.8)]
  ]
  s = ft.summarize(row, runs, None)
  assert s['mean'] == pytest.approx(2.05) and s['fid'][0] == pytest.approx(8.0)
  assert s['fid'][1] == pytest.approx(np.std([7.0, 9.0], ddof=1))
  assert s['collapsed'] == 1 and s['class_coverage'] == pytest.approx(7.0)
  assert s['samples_per_s_by_sampler'] == pytest.approx({'ddim-50': 17.0, 'ddpm-1000': 0.9})
  s['seed_list'] = [0]
  md = ft.to_markdown(
    [s], {'machine': 'm', 'jax': 'j', 'seeds': [0, 1, 2], 'budget': 'b', 'wall_min': 1.0}
  )
  assert '2.050 ± 0.071 bits/dim; FID 8.00 ± 1.41 (floor 6.00, coverage 7.0/10) (seeds [0])' in md
  assert 'DDIM-50 17; DDPM-1000 0.9' in md and 'bound (elbo): 2.050 bits/dim' in md


def test_merge_keeps_other_rows_and_replaces_the_same_model(tmp_path):
  path = str(tmp_path / 't.json')
  old_rows = [
    {'model': 'vae', 'mean': 2.0},
    {'model': 'dcgan', 'mean': 9.0},
    {'model': 'diffusion', 'mean': 3.0},
  ]
  with open(path, 'w') as f:
    json.dump({'meta': {'seeds': [0, 1, 2]}, 'rows': old_rows, 'runs': {'vae': [1]}}, f)
  meta, rows, runs = ft.merge_rows(
    path,
    [{'model': 'diffusion', 'mean': 1.9, 'seed_list': [0]}, {'model': 'pixelcnn', 'mean': 1.8}],
    {'diffusion': [2]},
  )
  assert meta == {'seeds': [0, 1, 2]}
  assert [(r['model'], r['mean']) for r in rows] == [
    ('pixelcnn', 1.8),
    ('vae', 2.0),
    ('dcgan', 9.0),
    ('diffusion', 1.9),
  ]
  assert rows[1]['seed_list'] == [0, 1, 2] and runs == {'vae': [1], 'diffusion': [2]}


def test_set_parses_literals_and_names_an_unknown_field():
  assert ft.parse_setting('hidden=8') == ('hidden', 8)
  assert ft.parse_setting('channel_mults=(1, 2)') == ('channel_mults', (1, 2))
  assert ft.parse_setting('sampler=heun') == ('sampler', 'heun')
  with pytest.raises(Exception, match='expected KEY=VALUE'):
    ft.parse_setting('hidden')
  config = ft.load_config(os.path.join(ft.ROOT, 'configs', 'realnvp.py'))
  with config.unlocked():
    ft.apply_settings(config, (('hidden', 8), ('num_scales', 1)))
    assert (config.hidden, config.num_scales) == (8, 1)
    with pytest.raises(ValueError, match="--set hiden: configs/realnvp.py has no field 'hiden'"):
      ft.apply_settings(config, (('hiden', 8),))
