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
