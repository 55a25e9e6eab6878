"""Config files for the bench, and their `--config.KEY=VALUE` overrides.

Overrides are parsed by ml_collections' config flags, as `gm_jax.main` parses them
(`config_flags`): a value is read by the type of the field it sets (`(8, 8)` for a
tuple, `false` for a bool, `1e-2` for a float), and a key the config lacks or a value
that does not fit its field is a `BenchError` naming the key.
"""

from __future__ import annotations

from collections.abc import Sequence
import glob
import os

from absl import flags
from ml_collections import config_flags


class BenchError(ValueError):
  """A bad command line or config (the message names the flag or field)."""


def load_config(path: str, overrides: Sequence[tuple[str, str]] = ()):
  """`get_config()` of the config file at `path`, with `--config.KEY=VALUE` overrides.

  Raises:
    BenchError: naming the path when it is not a config file, or the key when the
      config has no such field or the value does not fit its type.
  """
  from gm_jax import demo

  if not os.path.isfile(path):
    raise BenchError(f'--config={path}: no such config file')
  try:
    config = demo.load_config(path)
  except AttributeError as e:
    raise BenchError(f'--config={path}: not a config file (no get_config): {e}') from e
  except TypeError as e:
    raise BenchError(
      f'--config={path}: its get_config() cannot be called without '
      f'arguments ({e}); not a model config'
    ) from e
  if 'model' not in config:
    raise BenchError(f'--config={path}: the config has no `model` field')
  return apply_overrides(config, overrides, path) if overrides else config


def apply_overrides(config, overrides: Sequence[tuple[str, str]], path: str = 'the config'):
  """`config` with `--config.KEY=VALUE` overrides applied, parsed by ml_collections.

  Args:
    config: an `ml_collections.ConfigDict` (changed in place and returned).
    overrides: `(KEY, VALUE)` pairs as written after `--config.`; a KEY may be dotted.
    path: the config file, named in the errors.

  Raises:
    BenchError: naming the key when the config has no such field, or the value does
      not fit the field's type.
  """
  for key, _ in overrides:
    _check_key(config, key, path)
  argv = ['gm_jax.bench'] + [f'--config.{key}={value}' for key, value in overrides]
  values = flags.FlagValues()
  config_flags.DEFINE_config_dict(
    'config', config, flag_values=values, lock_config=False, sys_argv=argv
  )
  try:
    values(argv)
  except flags.Error as e:
    raise BenchError(str(e)) from e
  return values['config'].value


def _check_key(config, key: str, path: str) -> None:
  *parents, name = key.split('.')
  node = config
  for part in parents:
    if part not in node:
      raise BenchError(f'--config.{key}: {path} has no field {part!r}')
    node = node[part]
  if name not in node:
    raise BenchError(
      f'--config.{key}: {path} has no field {key!r} (its fields: {", ".join(sorted(node.keys()))})'
    )


def model_configs(configs_dir: str) -> list[str]:
  """The files of `configs_dir` whose `get_config()` is a model config (not `common.py`)."""
  paths = []
  for path in sorted(glob.glob(os.path.join(configs_dir, '*.py'))):
    if os.path.basename(path) in ('__init__.py', 'common.py'):
      continue
    try:
      load_config(path)
    except BenchError:
      continue
    paths.append(path)
  return paths
