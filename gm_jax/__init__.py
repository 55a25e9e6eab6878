"""gm_jax: deep generative models in JAX/Flax.

    from gm_jax import losses, models

`losses` are pure array functions (one value per example); `models` holds the Flax
modules of every family; `data` the input pipelines; `train` the generic trainer;
`sampling` the autoregressive, diffusion and flow-matching samplers.

The subpackages are imported on first use (PEP 562 `__getattr__`), so
`from gm_jax import losses` costs only JAX and NumPy: no Flax, optax, SciPy or
TensorFlow until a model, optimiser or dataset is asked for.
"""

import importlib
from typing import TYPE_CHECKING

__version__ = '0.1.0'

# Public subpackages and modules, loaded lazily by `__getattr__`.
_SUBMODULES = ('data', 'evaluate', 'losses', 'models', 'nn', 'parallel', 'sampling', 'train')

__all__ = ('__version__',) + _SUBMODULES

if TYPE_CHECKING:  # static analysers and IDEs see the eager imports
  from gm_jax import data as data
  from gm_jax import evaluate as evaluate
  from gm_jax import losses as losses
  from gm_jax import models as models
  from gm_jax import nn as nn
  from gm_jax import parallel as parallel
  from gm_jax import sampling as sampling
  from gm_jax import train as train


def __getattr__(name: str):
  """Imports `gm_jax.<name>` the first time the attribute is read."""
  if name in _SUBMODULES:
    # import_module binds the submodule as an attribute of this package, so later
    # reads skip this function.
    return importlib.import_module(f'{__name__}.{name}')
  raise AttributeError(f'module {__name__!r} has no attribute {name!r}')


def __dir__():
  return sorted(set(globals()) | set(_SUBMODULES))
