"""Makes `from configs import common` work in a config file loaded by its path.

Configs start from `configs/common.py` (as the Flax examples' variants start from
`configs/default.py`), so loading `configs/<name>.py` by path, as `--config=...` and
`demo.load_config` do, needs a `configs` package: the current directory provides one
only when the command runs from the repository root. The folder holding `configs/` is
*not* put on `sys.path` (a `numpy/` or `optax.py` beside `configs/` would then shadow
the installed package): only its `configs` package is registered, in `sys.modules`.
"""

from __future__ import annotations

from collections.abc import Sequence
import importlib.machinery
import importlib.util
import os
import sys


def add_config_root(path: str) -> None:
  """Makes `path`'s `configs/` folder importable as the package `configs`, and nothing else.

  A `configs` package imported already (e.g. from the repository root) that does not
  hold this folder gets it first on its `__path__`, so `from configs import common`
  reads the loaded config's sibling.
  """
  path = path.split(':', 1)[0]  # ml_collections' `file.py:override` form
  folder = os.path.dirname(os.path.abspath(path))
  if os.path.basename(folder) != 'configs' or not os.path.isfile(os.path.join(folder, 'common.py')):
    return
  loaded = sys.modules.get('configs')
  if loaded is not None:
    search = getattr(loaded, '__path__', None)
    if search is not None and folder not in list(search):
      search.insert(0, folder)
    return
  init = os.path.join(folder, '__init__.py')
  spec: importlib.machinery.ModuleSpec | None = None
  if os.path.isfile(init):
    spec = importlib.util.spec_from_file_location(
      'configs', init, submodule_search_locations=[folder]
    )
  if spec is None:  # a folder without __init__.py, as a namespace package would be
    spec = importlib.machinery.ModuleSpec('configs', None, is_package=True)
    spec.submodule_search_locations = [folder]
  module = importlib.util.module_from_spec(spec)
  sys.modules['configs'] = module
  if spec.loader is not None:
    spec.loader.exec_module(module)


def add_config_root_from_argv(argv: Sequence[str]) -> None:
  """`add_config_root` for the `--config=PATH` (or `--config PATH`) of a command line."""
  for i, arg in enumerate(argv):
    if arg.startswith('--config='):
      add_config_root(arg[len('--config=') :])
    elif arg == '--config' and i + 1 < len(argv):
      add_config_root(argv[i + 1])
