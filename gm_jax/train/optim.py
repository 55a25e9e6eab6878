"""Optimiser construction from a config (optax)."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import optax

from gm_jax import _optimizer
from gm_jax.train import defaults


def learning_rate_schedule(config) -> optax.Schedule:
  """Linear warm-up to `learning_rate`, then `lr_schedule` ('cosine' or 'constant').

  Every optimiser of a config is built on this schedule, so this is where
  `config.learning_rate` is checked (a closed-form fit builds none and needs none).
  """
  lr = config.learning_rate
  if not isinstance(lr, (int, float)) or isinstance(lr, bool) or not np.isfinite(lr) or lr <= 0:
    raise ValueError(f'config.learning_rate must be a positive number, got {lr!r}')
  lr = float(lr)
  steps = int(config.num_train_steps)
  warmup = int(defaults.get(config, 'warmup_steps'))
  kind = defaults.get(config, 'lr_schedule')
  if kind == 'constant':
    after = optax.constant_schedule(lr)
  elif kind == 'cosine':
    after = optax.cosine_decay_schedule(lr, max(1, steps - warmup), alpha=0.05)
  else:
    raise ValueError(f"config.lr_schedule must be 'constant' or 'cosine', got {kind!r}")
  if warmup <= 0:
    return after
  return optax.join_schedules([optax.linear_schedule(lr / warmup, lr, warmup), after], [warmup])


# The one optimiser factory lives below the trainer, where models (a closed-form or
# full-batch fit) may use it too.
OPTIMIZERS = _optimizer.OPTIMIZERS
optimizer = _optimizer.optimizer


def make_optimizer(
  config, *, schedule: optax.Schedule | None = None
) -> optax.GradientTransformation:
  """`optimizer` with the settings of `config`.

  Uses `optimizer` ('adam'), `learning_rate` with `warmup_steps` and `lr_schedule`
  (or `schedule`, e.g. CycleGAN's linear decay), `grad_clip_norm` (0 = off),
  `weight_decay` (0 = plain Adam), `adam_b1`, `adam_b2`.
  """
  return optimizer(
    defaults.get(config, 'optimizer'),
    learning_rate_schedule(config) if schedule is None else schedule,
    b1=float(defaults.get(config, 'adam_b1')),
    b2=float(defaults.get(config, 'adam_b2')),
    weight_decay=float(defaults.get(config, 'weight_decay')),
    clip_norm=float(defaults.get(config, 'grad_clip_norm')),
  )


def kl_warmup_weight(step, warmup_steps: int):
  """Linear KL warm-up `min(1, (step + 1) / warmup_steps)`; 1 without a step.

  Sonderby et al. 2016 ("Ladder Variational Autoencoders", Section 2.3): the KL term's
  weight rises from ~0 to 1 over the first `warmup_steps` training steps, to keep the
  posterior from collapsing onto the prior before the latents carry information.
  `step` is the step being taken (int scalar or traced int32) or None (-> 1).
  """
  if step is None or warmup_steps <= 0:
    return jnp.asarray(1.0, jnp.float32)
  return jnp.minimum(1.0, (jnp.asarray(step, jnp.float32) + 1.0) / warmup_steps)


def kl_warmup_steps(config) -> int:
  """`config.kl_warmup_steps` (a family default), checked: an integer >= 0."""
  steps = config.kl_warmup_steps
  if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 0:
    raise ValueError(f'config.kl_warmup_steps must be an integer >= 0, got {steps!r}')
  return int(steps)
