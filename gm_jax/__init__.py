"""gm_jax: deep generative models in JAX/Flax.

    from gm_jax import losses, models

`losses` are pure array functions (one value per example); `models` holds the Flax
modules of every family; `data` the tfds pipelines; `train` the generic trainer.
"""

from gm_jax import losses
from gm_jax import models

__version__ = '0.1.0'
__all__ = ('losses', 'models', '__version__')
