"""Pieces shared by the PyTorch replicas: the optimiser of `gm_jax.train.optim`,
parameter-shape signatures, and a generic training step."""

from __future__ import annotations

from collections.abc import Callable, Iterable
import math

import numpy as np
import torch


def lr_at(config, step: int) -> float:
  """`gm_jax.train.optim.learning_rate_schedule(config)(step)`, in plain Python."""
  lr = float(config.learning_rate)
  steps = int(config.num_train_steps)
  warmup = int(config.get('warmup_steps', 0))
  if warmup > 0 and step < warmup:
    return lr / warmup + (lr - lr / warmup) * step / warmup
  if config.get('lr_schedule', 'constant') == 'constant':
    return lr
  t = min(step - max(warmup, 0), max(1, steps - warmup)) / max(1, steps - warmup)
  alpha = 0.05
  return lr * ((1 - alpha) * 0.5 * (1 + math.cos(math.pi * t)) + alpha)


def make_optimizer(config, params: Iterable[torch.nn.Parameter]):
  """Adam or AdamW (decoupled decay, as optax.adamw) with the config's betas."""
  params = list(params)
  b1 = float(config.get('adam_b1', 0.9))
  b2 = float(config.get('adam_b2', 0.999))
  wd = float(config.get('weight_decay', 0.0))
  lr = lr_at(config, 0)
  if wd > 0:
    return torch.optim.AdamW(params, lr=lr, betas=(b1, b2), eps=1e-8, weight_decay=wd)
  return torch.optim.Adam(params, lr=lr, betas=(b1, b2), eps=1e-8)


def make_train_step(
  config, module: torch.nn.Module, loss_fn: Callable[[], torch.Tensor]
) -> Callable[[], float]:
  """One optimiser step of `loss_fn()` with the config's clipping and schedule.

  Mirrors `gm_jax.train.loop.make_train_step` with `gm_jax.train.optim.make_optimizer`:
  global-norm clipping (`grad_clip_norm`, 0 = off), then Adam(W) at the scheduled rate.
  """
  opt = make_optimizer(config, module.parameters())
  clip = float(config.get('grad_clip_norm', 0.0))
  state = {'step': 0}

  def step() -> float:
    for group in opt.param_groups:
      group['lr'] = lr_at(config, state['step'])
    opt.zero_grad(set_to_none=True)
    loss = loss_fn()
    loss.backward()
    if clip > 0:
      torch.nn.utils.clip_grad_norm_(module.parameters(), clip)
    opt.step()
    state['step'] += 1
    return float(loss.detach())

  return step


def shape_signature(shapes: Iterable[tuple[int, ...]]) -> list[tuple[int, ...]]:
  """Layout-free signature of a set of parameter tensors: each shape's sorted dims
  (size-1 dims dropped), the list sorted. Equal signatures = the same weight tensors up
  to layout (HWIO vs OIHW, [in, out] vs [out, in])."""
  return sorted(tuple(sorted(d for d in s if d != 1)) for s in shapes)


def torch_signature(module: torch.nn.Module) -> list[tuple[int, ...]]:
  return shape_signature(tuple(p.shape) for p in module.parameters() if p.requires_grad)


def num_params(module: torch.nn.Module) -> int:
  return int(sum(p.numel() for p in module.parameters() if p.requires_grad))


def to_nchw(images: np.ndarray) -> torch.Tensor:
  """uint8 [B, H, W, C] -> int64 [B, C, H, W] (levels, not yet scaled)."""
  return torch.from_numpy(np.ascontiguousarray(np.asarray(images).transpose(0, 3, 1, 2))).long()
