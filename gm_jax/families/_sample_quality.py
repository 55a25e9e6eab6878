"""What the diffusion and EDM families share for sampling: the sampler settings and their
checks, network evaluations per sample, the suite's draws and `trajectory.png`, and the
sample-quality evaluation (`sample_quality`: `gm_jax.evaluate.sample_metrics` of the default
sampler, `fid_by_sampler`, samples/s of the timed samplers)."""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import numpy as np

from gm_jax import sampling
from gm_jax.evaluate import sample_metrics
from gm_jax.models import diffusion as dm
from gm_jax.train import defaults

# the models whose own samplers (`sampling.DIFFUSION_METHODS`, `sampling.ODE_METHODS`) count
# their network evaluations as `num_evaluations` says; EDM's are the suite's.
VP_AND_FLOW_MODELS = ('diffusion', 'flow_matching')

# The sampling settings (the diffusion family's defaults; EDM overrides the sampler's).
DEFAULTS = {
  'sampler': 'ddim',
  'sample_steps': 50,
  'timing_samplers': ('ddpm:1000', 'ddim:50', 'heun:25'),
  # more samplers scored on fid_num_samples samples each: eval.json fid_by_sampler
  'fid_samplers': (),
  # the feature network of the FID and its sample count (gm_jax.evaluate.sample_metrics)
  **sample_metrics.DEFAULTS,
  # trajectory.png: this many samples at each step of the default sampler (0: none)
  'trajectory_samples': 8,
  # FID of each timed sampler too, on this many samples (0: only their samples/s; a
  # DDPM-1000 draw of the 1,293 digits costs 1.3M network evaluations)
  'timing_fid_samples': 0,
  'sample_batch_size': 512,
}
DEFAULTS_DOC = {
  'sampler': 'default sampler of samples.png and the FID',
  'sample_steps': 'steps of the default sampler',
  'timing_samplers': "'METHOD:STEPS' samplers timed (and optionally scored) too",
  'fid_samplers': "'METHOD:STEPS' samplers also scored on fid_num_samples (fid_by_sampler)",
  **sample_metrics.DEFAULTS_DOC,
  'trajectory_samples': 'samples in trajectory.png (0: no picture)',
  'timing_fid_samples': 'FID samples of each timed sampler (0: only samples/s)',
  'sample_batch_size': 'images per sampler call',
}
# all of them only read by the final evaluation and pictures: a resumed run may change them
EVAL_FIELDS = frozenset(DEFAULTS)


# The suite's samplers (`gm_jax.sampling.SAMPLERS`) that the VDM and flow-matching models
# did not have before it: on the Karras noise levels through `vp_denoiser` / `flow_denoiser`.
# 'euler' and 'heun' keep their meaning (and numbers) of `diffusion_sample` / `flow_sample`.
SUITE_ONLY = ('euler_ancestral', 'dpmpp_2m')
# The suite's sampler drawn for trajectory.png where the default sampler is not the suite's:
# DDIM is Euler on the probability-flow ODE in these coordinates, DDPM its ancestral form.
TRAJECTORY_ANALOGUE = {'ddim': 'euler', 'ddpm': 'euler_ancestral', 'rk4': 'heun'}


def sampler_names(model: str) -> tuple[str, ...]:
  """The `config.sampler` values of `model` ('diffusion', 'flow_matching' or 'edm')."""
  if model == 'diffusion':
    return tuple(sampling.DIFFUSION_METHODS) + SUITE_ONLY
  if model == 'flow_matching':
    return tuple(sampling.ODE_METHODS) + SUITE_ONLY
  return tuple(sampling.SAMPLERS)


def parse_sampler(spec: str, model: str, field: str = 'timing_samplers') -> tuple[str, int]:
  """`'ddim:50'` -> `('ddim', 50)`; a ValueError names `config.<field>`."""
  methods = sampler_names(model)
  method, _, steps = str(spec).partition(':')
  if method not in methods or not steps.isdigit() or int(steps) <= 0:
    raise ValueError(
      f"config.{field} entries must be 'METHOD:STEPS' with METHOD in "
      f'{methods} for {model} and STEPS >= 1; got {spec!r}'
    )
  return method, int(steps)


def check_sampler_fields(config) -> None:
  """The fields of `DEFAULTS`: `sampler`, `sample_steps`, `timing_samplers`, `fid_samplers`,
  `trajectory_samples`, `timing_fid_samples`, `sample_batch_size` and the FID network switch
  (`sample_metrics.check_config`); errors name the field."""
  names = sampler_names(config.model)
  if config.sampler not in names:
    raise ValueError(f'config.sampler must be one of {names}; got {config.sampler!r}')
  steps = config.sample_steps
  if not isinstance(steps, int) or isinstance(steps, bool) or steps < 1:
    raise ValueError(f'config.sample_steps must be an integer >= 1; got {steps!r}')
  for field in ('timing_samplers', 'fid_samplers'):
    for spec in config[field]:
      parse_sampler(spec, config.model, field)
  count = config.trajectory_samples
  if not isinstance(count, int) or isinstance(count, bool) or count < 0:
    raise ValueError(f'config.trajectory_samples must be an integer >= 0; got {count!r}')
  if not isinstance(config.timing_fid_samples, int) or config.timing_fid_samples < 0:
    raise ValueError(
      f'config.timing_fid_samples must be a non-negative integer; got {config.timing_fid_samples!r}'
    )
  size = config.sample_batch_size
  if not isinstance(size, int) or isinstance(size, bool) or size <= 0:
    raise ValueError(f'config.sample_batch_size must be a positive integer; got {size!r}')
  sample_metrics.check_config(config)


def num_evaluations(model: str, method: str, steps: int) -> int:
  """Network evaluations per sample of `method` with `steps` steps (classifier-free
  guidance doubles the batch, not this count).

  The suite's samplers: `sampling.nfe`; VDM's own: one per step (Heun two) and the final
  denoising; flow matching's `odeint`: 1, 2, 4 per step (Euler, Heun, RK4)."""
  if model not in VP_AND_FLOW_MODELS or method in SUITE_ONLY:
    return sampling.nfe(method, steps)
  per_step = {'ddpm': 1, 'ddim': 1, 'euler': 1, 'heun': 2, 'rk4': 4}[method]
  return per_step * steps + (1 if model == 'diffusion' else 0)


def suite_draw(denoise, key, shape, method, sigmas, *, levels: int, trajectory: bool = False):
  """A draw of the suite's `method` on `sigmas` from `noise * sigmas[0]`: uint8 levels
  `shape`, or with `trajectory` the states `[N + 1, *shape]` scaled to the data's range
  (`x / sqrt(1 + sigma^2)`, the variance-preserving view) and quantised."""
  init_key, step_key = jax.random.split(key)
  x = jax.random.normal(init_key, shape, jnp.float32) * sigmas[0]
  out = sampling.get_sampler(method)(denoise, x, sigmas, key=step_key, return_trajectory=trajectory)
  if not trajectory:
    return dm.unit_to_levels(out, levels).astype(jnp.uint8)
  states = out[1] * jax.lax.rsqrt(1.0 + jnp.square(sigmas)).reshape((-1,) + (1,) * len(shape))
  return dm.unit_to_levels(states, levels).astype(jnp.uint8)


def save_trajectory_picture(states, workdir, levels, method, steps) -> dict:
  """`trajectory.png` (one row per sample, one column per state) and its eval.json keys."""
  import os

  from gm_jax.evaluate import images

  images.save_trajectory(
    np.asarray(states), os.path.join(workdir, 'trajectory.png'), num_levels=levels
  )
  return {'trajectory_sampler': f'{method}:{steps}'}


def sample_quality(
  sample_with, params, splits, key, cfg, default_sampler, nfe_of, *, cache_dir=None
) -> dict:
  """Sample metrics of the default sampler (`gm_jax.evaluate.sample_metrics`: FID, floor,
  class coverage, KID, precision/recall, what was measured); FID of each of
  `cfg.fid_samplers` on as many samples (`fid_by_sampler`, `nfe_by_sampler`, keys
  `'name:steps'`); samples/s of each timed sampler (and its FID on `timing_fid_samples`
  samples when that is set).

  Args:
    sample_with: `(params, key, num, method, steps) -> uint8 [num, H, W, C]`.
    default_sampler: `(method, steps)`.
    nfe_of: `(method, steps) -> network evaluations per sample`.
    cache_dir: where the real-data Inception statistics are cached
      (`sample_metrics.cache_dir(workdir)`); None computes them every call.
  """
  from gm_jax.evaluate import fid

  info = splits.info
  num = sample_metrics.num_samples(cfg, splits)
  results = {
    'sampler': f'{default_sampler[0]}-{default_sampler[1]}',
    'nfe': nfe_of(*default_sampler),
  }
  scorable = cfg.fid_network == 'inception' or bool(info.num_classes)
  by_fid, by_nfe = {}, {}
  fid_specs = [default_sampler] + [
    parse_sampler(s, cfg.model, 'fid_samplers') for s in cfg.fid_samplers
  ]
  for i, (method, steps) in enumerate(fid_specs):
    name = f'{method}:{steps}'
    if name in by_nfe:
      continue
    by_nfe[name] = nfe_of(method, steps)
    if not scorable:
      continue
    # the default sampler draws with fold_in(key, 0) as before the suite (same numbers)
    sub_key = jax.random.fold_in(key, 0 if i == 0 else 1000 + i)
    samples = sample_with(params, sub_key, num, method, steps)
    if i == 0:
      results.update(sample_metrics.sample_metrics(cfg, samples, splits, cache_dir=cache_dir))
      by_fid[name] = results['fid']
    else:
      by_fid[name] = sample_metrics.sample_metrics(cfg, samples, splits, cache_dir=cache_dir)['fid']
  if by_fid:
    results['fid_by_sampler'] = by_fid
  results['nfe_by_sampler'] = by_nfe
  classifier = fid.classifier_for(splits) if info.num_classes else None
  specs = [parse_sampler(s, cfg.model) for s in cfg.timing_samplers]
  timing_num = int(defaults.get(cfg, 'num_samples'))
  seen = {default_sampler}
  for i, (method, steps) in enumerate(specs, start=1):
    if (method, steps) in seen:
      continue
    seen.add((method, steps))
    name = f'{method}_{steps}'
    sub_key = jax.random.fold_in(key, i)
    sample_with(params, sub_key, timing_num, method, steps)  # compile
    t0 = time.perf_counter()
    sample_with(params, jax.random.fold_in(sub_key, 1), timing_num, method, steps)
    results[f'samples_per_s_{name}'] = timing_num / (time.perf_counter() - t0)
    results[f'nfe_{name}'] = nfe_of(method, steps)
    count = int(cfg.timing_fid_samples)
    if classifier is None or not count:
      continue
    samples = sample_with(params, sub_key, count, method, steps)
    quality = fid.sample_quality(classifier, samples, splits, num_classes=info.num_classes)
    results[f'fid_{name}'] = quality['fid']
    results[f'class_coverage_{name}'] = quality['class_coverage']
    results[f'fid_samples_{name}'] = count
  return results
