"""Config files loaded by path (#40 part 6): only their `configs` package becomes
importable; the folder holding it never goes on `sys.path` to shadow installed packages."""

import os
import subprocess
import sys

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

_CHECK = """
import importlib.util, sys
from gm_jax import _config_path
before = list(sys.path)
_config_path.add_config_root(sys.argv[1] + ':override')
assert sys.path == before, 'sys.path changed'
spec = importlib.util.spec_from_file_location('the_config', sys.argv[1])
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
import ml_collections  # the installed one, not the folder's ml_collections.py
print(module.get_config().value, ml_collections.__file__)
"""


def _folder_with_config(tmp_path, with_init):
  (tmp_path / 'configs').mkdir()
  if with_init:
    (tmp_path / 'configs' / '__init__.py').write_text('')
  (tmp_path / 'configs' / 'common.py').write_text('VALUE = 41\n')
  (tmp_path / 'configs' / 'mine.py').write_text(
    'from configs import common\nimport ml_collections\n\n'
    'def get_config():\n  return ml_collections.ConfigDict({"value": common.VALUE + 1})\n'
  )
  (tmp_path / 'ml_collections.py').write_text('raise ImportError("shadowed by the folder")\n')
  return str(tmp_path / 'configs' / 'mine.py')


def _run(config_path, cwd):
  env = dict(os.environ, PYTHONPATH=_ROOT)
  return subprocess.run(
    [sys.executable, '-c', _CHECK, config_path],
    cwd=cwd,
    env=env,
    capture_output=True,
    text=True,
    timeout=120,
  )


def test_config_from_another_folder_does_not_shadow_installed_packages(tmp_path):
  for with_init in (True, False):
    folder = tmp_path / f'init_{with_init}'
    folder.mkdir()
    out = _run(_folder_with_config(folder, with_init), cwd=_ROOT if with_init else str(tmp_path))
    assert out.returncode == 0, out.stderr
    value, ml_collections_file = out.stdout.split()
    assert value == '42'  # its own configs.common was read
    assert not ml_collections_file.startswith(str(tmp_path))
