"""gm_jax.bench.configs: config files, typed `--config.KEY=VALUE` overrides, errors naming the key.

(Named test_bench_configs.py: tests/test_configs.py exists, and pytest's default import
mode needs unique test file names.)
"""

import os

import pytest

from gm_jax import bench

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
VAE = os.path.join(REPO, 'configs', 'vae.py')


def test_a_bad_config_path_or_key_is_named():
  with pytest.raises(bench.BenchError, match='configs/no_such.py'):
    bench.main(['--config=configs/no_such.py'])
  with pytest.raises(bench.BenchError, match='no_such_field'):
    bench.main([f'--config={VAE}', '--config.no_such_field=1'])
  with pytest.raises(bench.BenchError, match='batch_size'):
    bench.main([f'--config={VAE}', '--config.batch_size=many'])
  with pytest.raises(bench.BenchError, match='common.py'):
    bench.main([f'--config={os.path.join(REPO, "configs", "common.py")}'])


def test_overrides_are_typed_by_the_field():
  config = bench.load_config(
    VAE,
    [
      ('hidden', '(8, 8)'),
      ('compute_dtype', 'bfloat16'),
      ('progress_bar', 'false'),
      ('learning_rate', '1e-2'),
    ],
  )
  assert config.hidden == (8, 8) and config.compute_dtype == 'bfloat16'
  assert config.progress_bar is False and config.learning_rate == 0.01


def test_all_lists_the_model_configs_but_not_common():
  paths = [os.path.basename(p) for p in bench.model_configs(os.path.join(REPO, 'configs'))]
  assert 'vae.py' in paths and 'naive_bayes.py' in paths and 'cyclegan.py' in paths
  assert 'common.py' not in paths and '__init__.py' not in paths
