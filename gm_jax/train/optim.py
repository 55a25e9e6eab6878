"""Optimiser construction from a config (optax)."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import optax


def learning_rate_schedule(config) -> optax.Schedule:
  """Linear warm-up to `learning_rate`, then `lr_schedule` ('cosine' or 'constant')."""
  lr = float(config.learning_rate)
  steps = int(config.num_train_steps)
  warmup = int(config.get('warmup_steps', 0))
  kind = config.get('lr_schedule', 'constant')
  if kind == 'constant':
    after = optax.constant_schedule(lr)
  elif kind == 'cosine':
    after = optax.cosine_decay_schedule(lr, max(1, steps - warmup), alpha=0.05)
  else:
    raise ValueError(f"config.lr_schedule must be 'constant' or 'cosine', got {kind!r}")
  if warmup <= 0:
    return after
  return optax.join_schedules(
      [optax.linear_schedule(lr / warmup, lr, warmup), after], [warmup])


def make_optimizer(config) -> optax.GradientTransformation:
  """Adam(W) with optional global-norm clipping, from `config`.

  Uses `learning_rate`, `warmup_steps`, `lr_schedule`, `grad_clip_norm` (0 = off),
  `weight_decay` (0 = plain Adam), `adam_b1`, `adam_b2`.
  """
  schedule = learning_rate_schedule(config)
  b1 = float(config.get('adam_b1', 0.9))
  b2 = float(config.get('adam_b2', 0.999))
  wd = float(config.get('weight_decay', 0.0))
  parts = []
  clip = float(config.get('grad_clip_norm', 0.0))
  if clip > 0:
    parts.append(optax.clip_by_global_norm(clip))
  if wd > 0:
    parts.append(optax.adamw(schedule, b1=b1, b2=b2, weight_decay=wd))
  else:
    parts.append(optax.adam(schedule, b1=b1, b2=b2))
  return optax.chain(*parts)


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
  """`config.kl_warmup_steps` (0 if absent), checked: an integer >= 0."""
  steps = config.get('kl_warmup_steps', 0)
  if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 0:
    raise ValueError(f'config.kl_warmup_steps must be an integer >= 0, got {steps!r}')
  return int(steps)
