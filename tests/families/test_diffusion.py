"""Diffusion (VDM) and flow matching through the generic trainer.

Both families' runs are test_contract's (tests/families/conftest.py `contract_run`: a tiny
U-Net trained three steps on the digits, killed after the first checkpoint and resumed;
the VDM one class-conditional with a learned schedule and compared, bit for bit, with an
uninterrupted run); here: every `eval.json` entry the family promises: the bound in
bits/dim of the discrete data, FID / floor / class coverage, samples/s of each timed
sampler.
"""

import json
import math
import os

import numpy as np
import pytest

from gm_jax import data as gm_data
from gm_jax import families
from gm_jax.families import diffusion as diffusion_family

INFO = gm_data.get_info('digits')


def _config(model, **overrides):
  import importlib

  c = importlib.import_module(f'configs.{model}').get_config()
  c.update(
    batch_size=16,
    loss_group_size=4,
    num_train_steps=6,
    warmup_steps=0,
    log_every=2,
    eval_every=2,
    checkpoint_every=2,
    channels=8,
    channel_mults=(1,),
    num_samples=8,
    fid_num_samples=50,
    sample_steps=4,
    sample_batch_size=64,
    val_samples=2,
    eval_batch_size=40,
  )
  if model == 'diffusion':
    c.update(timing_samplers=('ddpm:3',), eval_bound_samples=2, timing_fid_samples=20)
  else:
    c.update(
      timing_samplers=('euler:2',),
      likelihood_solver='euler',
      likelihood_steps=1,
      likelihood_batch_size=40,
      exact_trace_max_dims=64,
    )
  c.update(overrides)
  return families.complete(c)


def _report(run) -> dict:
  workdir = run.workdir
  with open(os.path.join(workdir, 'eval.json')) as f:
    saved = json.load(f)
  with open(os.path.join(workdir, 'metrics.jsonl')) as f:
    metrics = [json.loads(line) for line in f.read().splitlines()]
  return {
    'identical': run.identical,
    'steps_at_kill': [str(s) for s in run.saved_at_kill],
    'returned_equals_saved': saved == json.loads(json.dumps(run.result)),
    'saved': saved,
    'files': sorted(os.listdir(workdir)),
    'metrics': metrics,
  }


# Each on one worker under `-n 2 --dist loadgroup` with test_contract's run of its model.
@pytest.mark.slow
@pytest.mark.parametrize(
  'model',
  [
    pytest.param('diffusion', marks=pytest.mark.xdist_group('diffusion_train')),
    pytest.param('flow_matching', marks=pytest.mark.xdist_group('flow_runs')),
  ],
)
def test_resumes_bit_identically_and_writes_every_entry(contract_run, model):
  r = _report(contract_run(model))
  if model == 'diffusion':
    assert r['steps_at_kill'] == ['2'] and r['identical']
  assert r['returned_equals_saved']
  for name in ('eval.json', 'metrics.jsonl', 'samples.png'):
    assert name in r['files'], name
  ev = r['saved']
  assert ev['model'] == model and ev['dataset'] == 'digits'
  for k in (
    'test_nll_nats',
    'test_bpd',
    'test_bpd_stderr',
    'fid',
    'fid_floor',
    'class_coverage',
    'samples_per_s',
    'train_steps_per_s',
  ):
    assert np.isfinite(ev[k]), (k, ev)
  assert ev['test_nonfinite'] == 0
  np.testing.assert_allclose(ev['test_bpd'], ev['test_nll_nats'] / (64 * math.log(2)), rtol=1e-9)
  assert 0 <= ev['class_coverage'] <= 10
  if model == 'diffusion':
    assert ev['bound'] == 'elbo' and ev['likelihood'] == 'p(x|y)'
    parts = ev['test_recon_bpd'] + ev['test_prior_bpd'] + ev['test_diffusion_bpd']
    np.testing.assert_allclose(parts, ev['test_bpd'], rtol=1e-6)
    for k in ('samples_per_s_ddpm_3', 'fid_ddpm_3', 'class_coverage_ddpm_3'):
      assert np.isfinite(ev[k]), k
    assert ev['log_snr_0'] > ev['log_snr_1']
    assert 'diffusion_bpd' in r['metrics'][0]
  else:
    assert ev['bound'].startswith('dequantization (probability-flow ODE, exact trace')
    assert np.isfinite(ev['samples_per_s_euler_2'])
    assert any('val_fm_loss_per_dim' in m or 'fm_loss_per_dim' in m for m in r['metrics'])


def test_bad_config_fields_are_named():
  for field, value, model in (
    ('noise_schedule', 'sqrt', 'diffusion'),
    ('prediction_type', 'x', 'diffusion'),
    ('channels', 0, 'diffusion'),
    ('likelihood_solver', 'dopri5', 'flow_matching'),
    ('sigma_min', 1.0, 'flow_matching'),
  ):
    with pytest.raises(ValueError, match=f'config.{field}'):
      diffusion_family.make_family(_config(model, **{field: value}), INFO)
  with pytest.raises(ValueError, match='config.timing_samplers'):
    diffusion_family.make_family(_config('diffusion', timing_samplers=('ddim',)), INFO)
  with pytest.raises(ValueError, match='config.channel_mults'):
    diffusion_family.make_family(_config('diffusion', channel_mults=(1, 2, 2, 2, 2)), INFO)
  with pytest.raises(ValueError, match='config.conditional=True needs labels'):
    diffusion_family.make_family(
      _config('diffusion', conditional=True), gm_data.get_info('binarized_mnist')
    )
  with pytest.raises(ValueError, match='config.noise_schedule'):  # before any data is read
    families.train_and_evaluate(
      _config('diffusion', noise_schedule='sqrt', data_dir='/nonexistent'), '/tmp/x'
    )


@pytest.mark.parametrize('name', ['diffusion_photos', 'flow_matching_photos'])
def test_photo_configs_build_for_photo_patches(name):
  import importlib

  import jax

  config = families.complete(importlib.import_module(f'configs.{name}').get_config())
  info = gm_data.get_info('photo_patches')
  family = diffusion_family.make_family(config, info)
  rng = np.random.default_rng(0)
  batch = {
    'image': rng.integers(0, 256, (2, 32, 32, 3)).astype(np.uint8),
    'label': np.zeros(2, np.int32),
  }
  params = family.init(jax.random.key(0), batch)
  loss, _ = jax.jit(lambda p: family.loss(p, batch, jax.random.key(1), train=False))(params)
  assert np.isfinite(float(loss))
