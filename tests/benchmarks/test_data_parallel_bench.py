"""benchmarks/data_parallel.py: one tiny run with two read-back settings and a --set."""

import json
import sys

import pytest

from benchmarks import data_parallel


def _run(monkeypatch, capsys, *argv):
  monkeypatch.setattr(sys, 'argv', ['data_parallel.py', *argv])
  data_parallel.main()
  return [json.loads(line) for line in capsys.readouterr().out.splitlines() if line]


def test_each_in_flight_setting_is_timed_and_compared(monkeypatch, capsys):
  lines = _run(
    monkeypatch,
    capsys,
    '--model',
    'vae',
    '--architecture',
    'mlp',
    '--dataset',
    'digits',
    '--per_device_batch',
    '8',
    '--steps',
    '3',
    '--warmup',
    '1',
    '--repeats',
    '1',
    '--modes',
    'none',
    '--in_flight',
    '0,2',
    '--set',
    'latent_dim=3',
    '--set',
    'hidden=(16,)',
  )
  rows, (ratio,) = lines[:-1], lines[-1:]
  assert [r['in_flight'] for r in rows] == [0, 2]
  assert all(r['mode'] == 'none' and r['steps_per_s'] > 0 for r in rows)
  assert rows[0]['set'] == ['latent_dim=3', 'hidden=(16,)']
  expected = rows[1]['examples_per_s'] / rows[0]['examples_per_s']
  assert ratio['in_flight_2_over_0']['none'] == pytest.approx(expected, rel=1e-3)


def test_a_negative_in_flight_and_a_set_without_value_are_refused(monkeypatch, capsys):
  with pytest.raises(SystemExit, match='--in_flight'):
    _run(monkeypatch, capsys, '--modes', 'none', '--in_flight', '-1', '--steps', '1')
  with pytest.raises(SystemExit, match='FIELD=VALUE'):
    _run(monkeypatch, capsys, '--modes', 'none', '--set', 'latent_dim', '--steps', '1')
