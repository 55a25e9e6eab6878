"""k-diffusion 0.1.1's `k_diffusion/sampling.py`, loaded alone, as the reference samplers.

The package's `__init__` imports its models, configs and evaluation code, which need
torchvision, safetensors, clean-fid and more (none installed: k-diffusion is installed
with `pip install --no-deps`, see setup.cfg's `test` extra). Only `sampling.py` is
executed, from its path, under the name `k_diffusion.sampling`; its imports are met by
torch, scipy and tqdm (installed) and, for what the samplers used here never touch, by
stand-ins put in `sys.modules` only while the file executes:

* `k_diffusion` itself: an empty package module, so `from . import utils` resolves;
* `k_diffusion.utils`: `append_dims` only, the one helper the samplers call (`to_d`),
  copied verbatim from k-diffusion 0.1.1's `utils.py` (the rest of that file needs
  torchvision);
* `torchdiffeq` (its `odeint` serves `log_likelihood` only) and `torchsde` (the
  Brownian-tree noise sampler): empty modules.
"""

from __future__ import annotations

import importlib.util
import sys
import types


def _append_dims(x, target_dims):
  """Appends dimensions to the end of a tensor until it has target_dims dimensions."""
  dims_to_append = target_dims - x.ndim
  if dims_to_append < 0:
    raise ValueError(f'input has {x.ndim} dims but target_dims is {target_dims}, which is less')
  return x[(...,) + (None,) * dims_to_append]


def load():
  """The module `k_diffusion/sampling.py`, or None when k-diffusion is not installed."""
  spec = importlib.util.find_spec('k_diffusion')  # locates the package, runs nothing
  if spec is None or not spec.submodule_search_locations:
    return None
  path = f'{next(iter(spec.submodule_search_locations))}/sampling.py'
  package = types.ModuleType('k_diffusion')
  package.__path__ = []
  utils = types.ModuleType('k_diffusion.utils')
  utils.append_dims = _append_dims
  package.utils = utils
  torchdiffeq = types.ModuleType('torchdiffeq')
  torchdiffeq.odeint = None
  stand_ins = {
    'k_diffusion': package,
    'k_diffusion.utils': utils,
    'torchdiffeq': torchdiffeq,
    'torchsde': types.ModuleType('torchsde'),
  }
  saved = {name: sys.modules.get(name) for name in stand_ins}
  sys.modules.update(stand_ins)
  try:
    file_spec = importlib.util.spec_from_file_location('k_diffusion.sampling', path)
    module = importlib.util.module_from_spec(file_spec)
    file_spec.loader.exec_module(module)
  finally:
    for name, old in saved.items():
      if old is None:
        sys.modules.pop(name, None)
      else:
        sys.modules[name] = old
  return module
