"""gm_jax/main.py: the command line's own logic (training runs are in tests/train/)."""

from absl import app
import ml_collections
import pytest

from gm_jax import main


def test_init_from_flag_sets_the_config_field_even_when_locked():
  config = ml_collections.ConfigDict(dict(model='vae', learning_rate=1e-3))
  config.lock()
  assert main.with_init_from(config, None) is config and 'init_from' not in config
  main.with_init_from(config, '/runs/first')
  assert config.init_from == '/runs/first'
  with pytest.raises(app.UsageError, match='--init_from is empty'):
    main.with_init_from(config, '')


def test_allow_resume_changes_flag_sets_the_config_field_even_when_locked():
  config = ml_collections.ConfigDict(dict(model='vae', learning_rate=1e-3))
  config.lock()
  assert main.with_allow_resume_changes(config, None) is config
  assert 'allow_resume_changes' not in config
  assert main.with_allow_resume_changes(config, True).allow_resume_changes is True
  assert main.with_allow_resume_changes(config, False).allow_resume_changes is False


def _cli(tmp_path, *args, verbose=False):
  import os
  import subprocess
  import sys

  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  env = dict(os.environ, PYTHONPATH=root, JAX_PLATFORMS='cpu')
  env.pop('GM_JAX_VERBOSE', None)
  if verbose:
    env['GM_JAX_VERBOSE'] = '1'
  return subprocess.run(
    [
      sys.executable,
      '-m',
      'gm_jax.main',
      '--config=configs/vae.py',
      f'--workdir={tmp_path}',
      *args,
    ],
    cwd=root,
    env=env,
    capture_output=True,
    text=True,
    timeout=300,
  )


def test_an_unknown_config_field_is_two_lines_with_the_nearest_names(tmp_path):
  out = _cli(tmp_path, '--config.num_trian_steps=3')
  assert out.returncode == main.USER_ERROR_EXIT_CODE, out.stderr
  assert out.stderr.strip().splitlines() == [
    'error: unknown config field --config.num_trian_steps: the config has no '
    "'num_trian_steps'; nearest: num_train_steps, iaf_steps, max_train_seconds",
    '(the traceback: --verbose or GM_JAX_VERBOSE=1)',
  ]
  assert 'Traceback' in _cli(tmp_path, '--config.num_trian_steps=3', verbose=True).stderr


def test_unknown_nested_field_names_its_parent():
  message = main.unknown_config_field(
    ['--config=configs/vae.py', '--config.lr_schedule=x', '--config.model.depth=2']
  )
  assert message is not None and message.startswith(
    "unknown config field --config.model.depth: config.model has no 'depth'"
  )


def test_a_config_error_is_two_lines_and_exit_code_2(tmp_path):
  out = _cli(tmp_path, '--config.batch_size=0', '--config.num_train_steps=1')
  assert out.returncode == 2
  assert out.stderr.strip().splitlines() == [
    'error: config.batch_size must be a positive integer, got 0',
    '(the traceback: --verbose or GM_JAX_VERBOSE=1)',
  ], out.stderr
