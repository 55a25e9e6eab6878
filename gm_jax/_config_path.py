"""Makes `from configs import common` work in a config file loaded by its path.

Configs start from `configs/common.py` (as the Flax examples' variants start from
`configs/default.py`), so loading `configs/<name>.py` by path, as `--config=...` and
`demo.load_config` do, needs the folder holding `configs/` on `sys.path`: the current
directory is there only when the command runs from the repository root.
"""

from __future__ import annotations

import os
import sys
from typing import Sequence


def add_config_root(path: str) -> None:
  """Puts the folder that holds `path`'s `configs/` folder first on `sys.path`."""
  path = path.split(':', 1)[0]  # ml_collections' `file.py:override` form
  root = os.path.dirname(os.path.dirname(os.path.abspath(path)))
  if os.path.isfile(os.path.join(root, 'configs', 'common.py')) and root not in sys.path:
    sys.path.insert(0, root)


def add_config_root_from_argv(argv: Sequence[str]) -> None:
  """`add_config_root` for the `--config=PATH` (or `--config PATH`) of a command line."""
  for i, arg in enumerate(argv):
    if arg.startswith('--config='):
      add_config_root(arg[len('--config='):])
    elif arg == '--config' and i + 1 < len(argv):
      add_config_root(argv[i + 1])
