"""configs/: every config starts from configs/common.py and keeps its shipped values.

`configs_snapshot.json` holds every shipped config's `get_config().to_dict()` as it was
before configs/common.py existed (commit b11075d; `diffusion` and `flow_matching`, which
came later, as they were when the family contract test began to require an entry for every
model). A config may have more fields than
the snapshot only where they come from common with the trainer's own default
(`gm_jax.train.defaults.TRAINING`), which the trainer reads for a missing field anyway.
A deliberate change to a shipped config's values updates its docstring's measured
numbers and this snapshot together.
"""

import glob
import importlib
import importlib.util
import json
import os
import re

from absl import flags
import ml_collections
from ml_collections import config_flags
import pytest

from configs import common
from gm_jax.train import defaults

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG_DIR = os.path.join(REPO, 'configs')
NOT_CONFIGS = ('__init__', 'common')
NAMES = sorted(
  os.path.basename(p)[:-3]
  for p in glob.glob(os.path.join(CONFIG_DIR, '*.py'))
  if os.path.basename(p)[:-3] not in NOT_CONFIGS
)
with open(os.path.join(os.path.dirname(__file__), 'configs_snapshot.json')) as f:
  SNAPSHOT = json.load(f)

REQUIRED = dict(model='m', dataset='digits', batch_size=8, num_train_steps=3, learning_rate=0.5)


def _module(name):
  return importlib.import_module(f'configs.{name}')


def _differences(expected, actual, where):
  """Where `actual` differs from the JSON value `expected`, type included (1 != 1.0 != True)."""
  if isinstance(expected, list):
    if not isinstance(actual, tuple) or len(actual) != len(expected):
      return [f'{where}: {actual!r} is not the tuple {tuple(expected)!r}']
    return [
      d
      for i, (e, a) in enumerate(zip(expected, actual))
      for d in _differences(e, a, f'{where}[{i}]')
    ]
  if type(expected) is not type(actual) or expected != actual:
    return [
      f'{where}: {actual!r} ({type(actual).__name__}), shipped {expected!r} '
      f'({type(expected).__name__})'
    ]
  return []


def test_snapshot_names_every_shipped_config():
  assert set(SNAPSHOT) <= set(NAMES), sorted(set(SNAPSHOT) - set(NAMES))
  assert len(SNAPSHOT) == 26


@pytest.mark.parametrize('name', sorted(SNAPSHOT))
def test_shipped_values_are_unchanged(name):
  shipped = SNAPSHOT[name]
  config = _module(name).get_config().to_dict()
  problems = []
  for field, value in shipped.items():
    if field not in config:
      problems.append(f'{field}: missing (shipped {value!r})')
    else:
      problems += _differences(value, config[field], field)
  for field in sorted(set(config) - set(shipped)):
    if field not in defaults.TRAINING:
      problems.append(f'{field}: new field {config[field]!r} is not a trainer default')
    else:
      problems += _differences(defaults.TRAINING[field], config[field], f'{field} (new)')
  assert not problems, f'configs/{name}.py: ' + '; '.join(problems)


@pytest.mark.parametrize('name', NAMES)
def test_every_config_starts_from_common(name):
  config = _module(name).get_config()
  assert isinstance(config, ml_collections.ConfigDict)
  missing = sorted(set(defaults.TRAINING) - set(config))
  assert not missing, f'configs/{name}.py lacks {missing}: start from common.get_config()'
  for field in ('model', 'dataset', 'batch_size', 'num_train_steps', 'learning_rate'):
    assert field in config, field
  # data_dir stays a typed placeholder: --config.data_dir=DIR parses as a str.
  assert config.data_dir is None
  assert config.get_ref('data_dir').get_type() is str


@pytest.mark.parametrize('name', NAMES)
def test_docstring_gives_the_command_and_a_measured_result(name):
  doc = _module(name).__doc__ or ''
  assert f'python -m gm_jax.main --config=configs/{name}.py' in doc, name
  assert re.search(r'^Measured\b', doc, re.M), f'configs/{name}.py: no line starts "Measured"'


@pytest.mark.parametrize('name', NAMES)
def test_loading_by_path_gives_the_same_config(name):
  """gm_jax/demo.py and the benchmarks load configs by file path, not as `configs.x`."""
  spec = importlib.util.spec_from_file_location(
    f'path_config_{name}', os.path.join(CONFIG_DIR, f'{name}.py')
  )
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  assert module.get_config().to_dict() == _module(name).get_config().to_dict()


def _parse(args):
  """The config gm_jax.main gets from `args` (its flag is defined the same way)."""
  argv = ['prog'] + args
  values = flags.FlagValues()
  config_flags.DEFINE_config_file(
    'config', None, 'config', flag_values=values, lock_config=True, sys_argv=argv
  )
  values(argv)
  return values.config


@pytest.mark.parametrize('name', ['vae', 'cvae', 'glow_photos', 'logreg'])
def test_command_line_overrides(name):
  config = _parse(
    [
      f'--config={os.path.join(CONFIG_DIR, name + ".py")}',
      '--config.data_dir=/tmp/tfds',
      '--config.num_train_steps=7',
      '--config.steps_per_loop=4',
      '--config.weight_decay=0.5',
    ]
  )
  assert (config.data_dir, config.num_train_steps) == ('/tmp/tfds', 7)
  assert (config.steps_per_loop, config.weight_decay) == (4, 0.5)
  # Everything else is as get_config() returns it.
  expected = _module(name).get_config().to_dict()
  expected.update(data_dir='/tmp/tfds', num_train_steps=7, steps_per_loop=4, weight_decay=0.5)
  assert config.to_dict() == expected


def test_a_misspelt_or_mistyped_override_is_an_error():
  path = os.path.join(CONFIG_DIR, 'vae.py')
  with pytest.raises(AttributeError, match='Did you mean "num_train_steps"'):
    _parse([f'--config={path}', '--config.num_train_step=7'])
  with pytest.raises(flags.IllegalFlagValueError, match='many'):
    _parse([f'--config={path}', '--config.num_train_steps=many'])


def test_common_is_the_trainer_defaults_plus_what_every_config_chooses():
  config = common.get_config(**REQUIRED).to_dict()
  assert config == {**defaults.TRAINING, **REQUIRED, 'data_dir': None}
  for field, value in defaults.TRAINING.items():
    assert type(config[field]) is type(value), field
  with pytest.raises(TypeError, match='learning_rate'):
    common.get_config(**{k: v for k, v in REQUIRED.items() if k != 'learning_rate'})


def test_likelihood_config_sets_the_shared_schedule_and_its_arguments():
  config = common.likelihood_config(warmup_steps=30, grad_clip_norm=5.0, **REQUIRED)
  changed = {
    k: v
    for k, v in config.to_dict().items()
    if k not in defaults.TRAINING or defaults.TRAINING[k] != v
  }
  assert changed == {
    **REQUIRED,
    'data_dir': None,
    'lr_schedule': 'cosine',
    'warmup_steps': 30,
    'weight_decay': 1e-4,
    'grad_clip_norm': 5.0,
    'eval_every': 100,
    'max_to_keep': 2,
  }
  with pytest.raises(TypeError):  # warmup_steps is an int field
    common.likelihood_config(warmup_steps=0.5, grad_clip_norm=5.0, **REQUIRED)
