"""pytorch-fid 0.3.0's own network and FID formula, importable beside CPU torch (test only).

pytorch-fid builds its FID Inception from torchvision's Inception-v3 classes, and PyPI's
torchvision wheel cannot be imported beside a CPU build of torch: its package
`__init__` registers C++ operators (`torchvision::nms`) that the CPU torch does not
have. The classes pytorch-fid needs are plain Python (`torchvision/models/
inception.py`), so this module installs empty `torchvision` and `torchvision.models`
packages pointing at the installed files (their `__init__` is never run) and imports
only `torchvision.models.inception`, then pytorch-fid itself. `load()` returns `None`
when torch, torchvision or pytorch-fid is not installed (extra `[bench]`).
"""

import importlib
import importlib.metadata
import importlib.util
import os
import sys
import types


def load():
  """`(pytorch_fid.inception, pytorch_fid.fid_score)` modules, or `None` if not installed."""
  try:
    import torch  # noqa: F401
  except ImportError:
    return None
  if 'torchvision' not in sys.modules:
    spec = importlib.util.find_spec('torchvision')
    if spec is None or importlib.util.find_spec('pytorch_fid') is None:
      return None
    root = os.path.dirname(spec.origin)
    for name, path in (('torchvision', root), ('torchvision.models', os.path.join(root, 'models'))):
      module = types.ModuleType(name)
      module.__path__ = [path]
      sys.modules[name] = module
    tv = sys.modules['torchvision']
    tv.__version__ = importlib.metadata.version('torchvision')
    inception = importlib.import_module('torchvision.models.inception')
    tv.models = sys.modules['torchvision.models']
    tv.models.inception = inception
    tv.models.inception_v3 = inception.inception_v3
  return (
    importlib.import_module('pytorch_fid.inception'),
    importlib.import_module('pytorch_fid.fid_score'),
  )
