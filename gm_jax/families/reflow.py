"""Rectified-flow reflow (Liu et al. 2023, "Flow Straight and Fast"): a 2-rectified flow.

`config.model = 'reflow'`: `config.teacher_workdir` names a trained `flow_matching` run
(the 1-rectified flow). At setup (`prepare`) the teacher's ODE sampler
(`teacher_sampler` with `teacher_steps`) maps `num_pairs + val_pairs` Gaussian draws
`x0` to samples `x1`; the pairs are cached in the teacher's workdir as
`reflow_pairs_*.npz` (keyed by the teacher's checkpoint step, the sampler, the count
and `config.seed`; no pickle), so reflow runs that share a teacher generate them once.
The student, the teacher's U-Net started from the teacher's parameters
(`init_from_teacher`, as Liu et al. do), regresses the velocity of the straight path
between the coupled points, `v(t x1 + (1 - t) x0, t) ~ x1 - x0` (eq. 1 with the
coupling `(x0, x1)` of the teacher's flow), whose ODE paths are nearly straight, so few
Euler steps suffice. Validation: the same loss on the `val_pairs` held-out pairs.

Samples by Euler steps; eval.json has `fid_by_steps` for `fid_steps` (1, 2, 4 network
evaluations) and, at `sample_steps`, `gm_jax.evaluate.sample_metrics` (`fid`, KID,
precision/recall; `config.fid_network` 'classifier' (`fid_floor`, `class_coverage`) or
'inception', as every sampling family) against the real data (the dataset's splits, not
the pairs).
"""

from __future__ import annotations

import dataclasses
import functools
import os

import jax
import jax.numpy as jnp
import numpy as np

from gm_jax import losses
from gm_jax import sampling
from gm_jax.evaluate import sample_metrics
from gm_jax.families import _fewstep
from gm_jax.families import diffusion as diffusion_family
from gm_jax.models import diffusion as dm
from gm_jax.train.family import Family

MODELS = ('reflow',)

DEFAULTS = {
  'teacher_workdir': '',
  'teacher_sampler': 'heun',
  'teacher_steps': 12,
  'num_pairs': 4096,
  'val_pairs': 256,
  'init_from_teacher': True,
  **_fewstep.DEFAULTS,
}

DEFAULTS_DOC = {
  'teacher_workdir': 'workdir of the trained flow_matching run whose ODE gives the pairs',
  'teacher_sampler': 'ODE method of the pair generation (sampling.ODE_METHODS)',
  'teacher_steps': 'steps of that ODE solver',
  'num_pairs': '(noise, sample) pairs to train on',
  'val_pairs': 'held-out pairs of the validation loss',
  'init_from_teacher': "start from the teacher's parameters (else from scratch)",
  **_fewstep.DEFAULTS_DOC,
}

_EVAL_FIELDS = _fewstep.EVAL_FIELDS


def check_config(config, info) -> None:
  """Validates the family's fields against dataset `info`; errors name the field.

  The teacher itself is read (and checked) by `prepare`.
  """
  if config.model not in MODELS:
    raise ValueError(f'config.model must be one of {MODELS}; got {config.model!r}')
  if info.kind != 'image':
    raise ValueError(f'config.dataset={info.name!r} is {info.kind} data; reflow needs images')
  if not isinstance(config.teacher_workdir, str):
    raise ValueError(f'config.teacher_workdir must be a path (str); got {config.teacher_workdir!r}')
  if config.teacher_sampler not in sampling.ODE_METHODS:
    raise ValueError(
      f'config.teacher_sampler must be one of {sampling.ODE_METHODS}; '
      f'got {config.teacher_sampler!r}'
    )
  for name in ('teacher_steps', 'num_pairs', 'val_pairs'):
    value = config[name]
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
      raise ValueError(f'config.{name} must be a positive integer; got {value!r}')
  _fewstep.check_config(config)


def generate_pairs(velocity, key, num: int, shape, *, method: str, num_steps: int, batch_size: int):
  """`(x0, x1)`, float32 `[num, *shape]` each: `x0 ~ N(0, I)` and the teacher's ODE solution
  `x1` at `t = 1` from it (`sampling.odeint`, `num_steps` fixed steps of `method`)."""

  @functools.partial(jax.jit, static_argnums=1)
  def one(k, n):
    x0 = jax.random.normal(k, (n,) + tuple(shape), jnp.float32)
    x1 = sampling.odeint(velocity, x0, t0=0.0, t1=1.0, num_steps=num_steps, method=method)
    return x0, x1

  parts = [
    one(jax.random.fold_in(key, i), min(batch_size, num - start))
    for i, start in enumerate(range(0, num, batch_size))
  ]
  return tuple(np.concatenate([np.asarray(p[j]) for p in parts]) for j in (0, 1))


def prepare(config, splits):
  """Reads the teacher, generates (or reads the cached) pairs; trains on the pairs."""
  info = splits.info
  teacher_config = _fewstep.teacher_config(config, model='flow_matching', needed_by='reflow')
  model = diffusion_family.build_model(teacher_config, info)
  step, params = _fewstep.teacher_params(model, config, info)
  total = int(config.num_pairs) + int(config.val_pairs)
  name = (
    f'reflow_pairs_step{step}_{config.teacher_sampler}{config.teacher_steps}_'
    f'n{total}_seed{config.seed}.npz'
  )
  path = os.path.join(config.teacher_workdir, name)
  if os.path.exists(path):
    with np.load(path, allow_pickle=False) as saved:
      x0, x1 = saved['noise'], saved['sample']
  else:
    velocity = lambda z, t: model.apply(params, z, jnp.full((z.shape[0],), t, jnp.float32))
    x0, x1 = generate_pairs(
      velocity,
      jax.random.fold_in(jax.random.key(int(config.seed)), 0x5EF1),
      total,
      info.shape,
      method=config.teacher_sampler,
      num_steps=int(config.teacher_steps),
      batch_size=int(config.sample_batch_size),
    )
    tmp = path + '.tmp.npz'
    np.savez(tmp, noise=x0, sample=x1)
    os.replace(tmp, path)
  n = int(config.num_pairs)
  pairs = dataclasses.replace(
    splits,
    train={'noise': x0[:n], 'sample': x1[:n]},
    validation={'noise': x0[n:], 'sample': x1[n:]},
  )
  prepared = {
    'teacher_config': teacher_config,
    'teacher_params': params,
    'real_splits': splits,
  }
  return config, pairs, prepared


def make_family(config, info, *, teacher_config, teacher_params, real_splits) -> Family:
  """Pure functions of the 2-rectified flow (the teacher's architecture) for the trainer."""
  model = diffusion_family.build_model(teacher_config, info)
  levels, num_dims, shape = info.num_levels, info.num_dims, tuple(info.shape)

  def init(key, batch):
    if config.init_from_teacher:
      return jax.tree.map(jnp.array, teacher_params)
    x = jnp.asarray(batch['noise'])
    rngs = {'params': key, 'dropout': jax.random.fold_in(key, 1)}
    return model.init(rngs, x, jnp.zeros((x.shape[0],)))

  def loss(params, batch, key, *, train):
    x0, x1 = jnp.asarray(batch['noise']), jnp.asarray(batch['sample'])
    t_key, drop_key = jax.random.split(key)
    times = dm.low_discrepancy_times(t_key, x0.shape[0])
    t = times.reshape((-1,) + (1,) * (x0.ndim - 1))
    v = model.apply(
      params, (1.0 - t) * x0 + t * x1, times, None, train=train, rngs={'dropout': drop_key}
    )
    value = jnp.mean(losses.flow_matching_loss(v, x0, x1, sigma_min=0.0))
    return value, {'reflow_loss_per_dim': value / num_dims}

  @functools.partial(jax.jit, static_argnums=(2, 3))
  def draw(params, key, num, steps):
    velocity = lambda z, t: model.apply(params, z, jnp.full((z.shape[0],), t, jnp.float32))
    x = sampling.flow_sample(velocity, key, (num,) + shape, method='euler', num_steps=steps)
    return dm.unit_to_levels(x, levels).astype(jnp.uint8)

  sample_with = _fewstep.batched(draw, config)

  def sample(params, key, num):
    return sample_with(params, key, num, int(config.sample_steps))

  def evaluate(params, splits, key, cfg, *, workdir=None):
    del splits  # the pairs; FID compares with the real data
    cache_dir = sample_metrics.cache_dir(workdir)
    return _fewstep.fid_by_steps(sample_with, params, real_splits, key, cfg, cache_dir=cache_dir)

  return Family(
    name=config.model,
    init=init,
    loss=loss,
    evaluate=evaluate,
    sample=sample,
    validation_metric='reflow_loss_per_dim',
    resume_may_change=_EVAL_FIELDS,
    evaluate_takes_workdir=True,
  )
