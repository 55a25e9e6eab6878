"""gm_jax.bench.cli: exit status and messages of `python -m gm_jax.bench`."""

import os
import sys

import pytest

from gm_jax import bench

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
VAE = os.path.join(REPO, 'configs', 'vae.py')


def test_the_command_line_exits_2_naming_the_bad_key(monkeypatch, capsys):
  monkeypatch.setattr(sys, 'argv', ['bench', f'--config={VAE}', '--config.nope=1'])
  assert bench.run() == 2
  assert "'nope'" in capsys.readouterr().err


def test_a_flag_in_conflict_or_unknown_is_named():
  with pytest.raises(bench.BenchError, match='--all'):
    bench.main([f'--config={VAE}', '--all'])
  with pytest.raises(bench.BenchError, match='--bogus'):
    bench.main([f'--config={VAE}', '--bogus'])
  with pytest.raises(bench.BenchError, match='--config.batch_size=VALUE'):
    bench.main([f'--config={VAE}', '--config.batch_size'])
