"""The one optimiser factory of gm_jax (optax), below the trainer and the models.

`gm_jax.train.optim` builds a config's optimiser with it; models that fit themselves
(`gm_jax.models.classifiers`' logistic regression) use it directly.
"""

from __future__ import annotations

import optax

OPTIMIZERS = ('adam', 'sgd', 'lbfgs')


def optimizer(
  name: str,
  learning_rate,
  *,
  b1: float = 0.9,
  b2: float = 0.999,
  weight_decay: float = 0.0,
  clip_norm: float = 0.0,
) -> optax.GradientTransformation:
  """The one optimiser factory of gm_jax: `name` on `learning_rate` (a float or schedule).

  Args:
    name: 'adam' (AdamW where `weight_decay > 0`), 'sgd', or 'lbfgs' (full batch;
      `learning_rate=None` uses its zoom line search).
    learning_rate: step size or `optax.Schedule`.
    b1, b2: Adam's moment decays (DCGAN: b1 = 0.5).
    weight_decay: decoupled weight decay (Loshchilov & Hutter 2019); Adam only.
    clip_norm: > 0 clips the gradients' global norm first.
  """
  if name not in OPTIMIZERS:
    raise ValueError(f'optimizer must be one of {OPTIMIZERS}, got {name!r}')
  if name != 'adam' and weight_decay:
    raise ValueError(f'weight_decay={weight_decay} needs optimizer adam, got {name!r}')
  parts = [optax.clip_by_global_norm(clip_norm)] if clip_norm > 0 else []
  if name == 'lbfgs':
    parts.append(optax.lbfgs(learning_rate=learning_rate))
  elif name == 'sgd':
    parts.append(optax.sgd(learning_rate))
  elif weight_decay > 0:
    parts.append(optax.adamw(learning_rate, b1=b1, b2=b2, weight_decay=weight_decay))
  else:
    parts.append(optax.adam(learning_rate, b1=b1, b2=b2))
  return optax.chain(*parts)  # a chain even of one: the state's structure never varies
