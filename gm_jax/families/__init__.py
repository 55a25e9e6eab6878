"""Model families: one module each, found by listing this package and the entry points.

    config, family, splits = families.setup(config)
    results = families.train_and_evaluate(config, workdir)  # setup + gm_jax.train.loop.run

A family module (docs/families.md) exposes

    MODELS: tuple[str, ...]            # the `config.model` names it trains
    DEFAULTS: dict[str, Any]           # every family-specific setting -> its default
    DEFAULTS_DOC: dict[str, str]       # the same keys -> a one-line meaning
    check_config(config, info) -> None # a ValueError naming the bad field
    make_family(config, info, **prepared) -> gm_jax.train.family.Family

and, where it needs its training data before it is built, two optional hooks:

    load_splits(config) -> gm_data.Splits
        Default: `gm_jax.train.input_pipeline.load_splits(config)` (`config.dataset`
        under the input settings). E.g. CycleGAN's two domains.
    prepare(config, splits) -> (config, splits, prepared: dict)
        Default: `(config, splits, {})`. Turns the loaded splits into the ones the family
        trains on, may adjust the config (naive Bayes' full-batch step), and returns the
        keyword arguments `make_family` needs from the data (a VAE decoder's initial bias
        from the training marginals, the grey levels before binarisation).

In-tree families are the public modules of this package (private `_helpers` are not);
families from other packages declare their module under the entry-point group
`gm_jax.families` (`[gm_jax.families] my_family = my_package.my_family`). Every model
name belongs to exactly one module.
"""

from __future__ import annotations

from collections.abc import Mapping
import functools
import importlib
import importlib.metadata
import pkgutil
import types
from typing import Any

ENTRY_POINT_GROUP = 'gm_jax.families'
CONTRACT = ('MODELS', 'DEFAULTS', 'DEFAULTS_DOC', 'check_config', 'make_family')


def _check_module(module: types.ModuleType, origin: str) -> None:
  missing = [name for name in CONTRACT if not hasattr(module, name)]
  if missing:
    raise ValueError(
      f'family module {module.__name__} ({origin}) lacks {", ".join(missing)} '
      f'(a family module exposes {", ".join(CONTRACT)}; docs/families.md)'
    )


def _in_tree_modules() -> list[tuple[types.ModuleType, str]]:
  out = []
  for info in pkgutil.iter_modules(__path__):
    if info.name.startswith('_') or info.ispkg:
      continue
    name = f'{__name__}.{info.name}'
    out.append((importlib.import_module(name), 'gm_jax/families'))
  return out


def _entry_point_modules() -> list[tuple[types.ModuleType, str]]:
  out = []
  for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
    dist = getattr(ep, 'dist', None)
    origin = f'entry point {ep.name} = {ep.value} in group {ENTRY_POINT_GROUP}' + (
      f' of {dist.name}' if dist is not None else ''
    )
    try:
      module = ep.load()
    except Exception as e:  # any failure to import is the entry point's, named here
      raise ImportError(f'family {origin} failed to import: {type(e).__name__}: {e}') from e
    if not isinstance(module, types.ModuleType):
      raise ValueError(f'family {origin} names {module!r}, not a module')
    out.append((module, origin))
  return out


@functools.cache
def _registry() -> Mapping[str, types.ModuleType]:
  """model name -> family module, in-tree modules first, then the entry points."""
  table: dict[str, types.ModuleType] = {}
  origins: dict[str, str] = {}
  for module, origin in _in_tree_modules() + _entry_point_modules():
    _check_module(module, origin)
    for model in module.MODELS:
      if model in table and table[model] is not module:
        raise ValueError(
          f'config.model {model!r} is claimed by two families: '
          f'{table[model].__name__} ({origins[model]}) and {module.__name__} '
          f'({origin})'
        )
      table[model], origins[model] = module, origin
  return types.MappingProxyType(table)


def clear_cache() -> None:
  """Forgets the modules found (after installing a family package in this process)."""
  _registry.cache_clear()


def model_names() -> tuple[str, ...]:
  """Every registered `config.model`, sorted."""
  return tuple(sorted(_registry()))


def module_for(model: str) -> types.ModuleType:
  """The family module that trains `model`; a ValueError names it and the known models."""
  table = _registry()
  if model not in table:
    raise ValueError(f'unknown config.model {model!r}; known models: {", ".join(sorted(table))}')
  return table[model]


def complete(config):
  """A copy of `config` with every shared (`train.defaults.TRAINING`) and family setting
  (`DEFAULTS` of `config.model`'s module) filled in where it is missing."""
  from gm_jax.train import defaults

  if 'model' not in config:
    raise ValueError('config has no `model` field')
  module = module_for(config.model)
  return defaults.complete(config, module.DEFAULTS)


def _catalogue_info(config):
  from gm_jax import data as gm_data

  try:
    return gm_data.get_info(config.dataset)
  except (ValueError, AttributeError, KeyError):
    return None  # a dataset the family's own load_splits knows


def setup(config) -> tuple[Any, Any, Any]:
  """`(config, family, splits)` for `config.model`, ready for `gm_jax.train.loop.run`.

  Fills the family's `DEFAULTS` (and the shared ones) once, runs its `check_config`
  before any data is read (against the catalogue's `DatasetInfo` of `config.dataset`;
  after loading where the catalogue does not know the dataset), loads the splits
  (`load_splits` hook), prepares them (`prepare` hook) and builds the family.
  """
  from gm_jax.train import input_pipeline

  config = complete(config)
  module = module_for(config.model)
  info = _catalogue_info(config)
  if info is not None:
    module.check_config(config, info)
  load = getattr(module, 'load_splits', input_pipeline.load_splits)
  splits = load(config)
  if info is None:
    module.check_config(config, splits.info)
  prepared: dict = {}
  if hasattr(module, 'prepare'):
    config, splits, prepared = module.prepare(config, splits)
  return config, module.make_family(config, splits.info, **prepared), splits


def train_and_evaluate(config, workdir: str) -> dict:
  """Trains `config.model` in `workdir` (resuming its checkpoints); returns `eval.json`."""
  from gm_jax.train import loop

  config, family, splits = setup(config)
  family = resuming_without_defaults(family, module_for(config.model), config, workdir)
  return loop.run(config, workdir, family, splits)


def resuming_without_defaults(family, module, config, workdir: str):
  """`family`, whose resume also lets through each `DEFAULTS` field that `workdir`'s saved
  config (`train.run_config`) lacks and `config` holds at its default.

  A run saved before its family listed that setting (or by a config that left it out)
  trained with the default, so resuming it at the default changes nothing, as the
  trainer already treats its shared settings (`defaults.TRAINING`).
  """
  import dataclasses
  import json

  from gm_jax.train import run_config

  try:
    saved = run_config.load(workdir)
  except run_config.ResumeConfigError:
    return family  # the trainer names the unreadable file
  if saved is None:
    return family
  plain = lambda value: json.loads(json.dumps(value, default=repr))
  same = frozenset(
    name
    for name, value in module.DEFAULTS.items()
    if name not in saved and plain(config[name]) == plain(value)
  )
  if not same:
    return family
  return dataclasses.replace(family, resume_may_change=family.resume_may_change | same)
