"""The flow family through the generic trainer: artefacts, bounds, NaN guard."""

import json
import math
import pathlib
import re

import numpy as np
import pytest

from configs import glow as glow_config
from configs import nice as nice_config
from gm_jax import families
from gm_jax.families import flows as flows_family
from gm_jax.train import loop


def _tiny(config, tfds_dir, **overrides):
  c = config.get_config()
  c.data_dir = tfds_dir
  c.batch_size = 32
  c.num_train_steps = 40
  c.warmup_steps = 0
  c.log_every = 10
  c.eval_every = 20
  c.checkpoint_every = 40
  c.eval_dequant_samples = 2
  c.num_samples = 10
  c.update(overrides)
  return families.complete(c)


# One worker under `-n 2 --dist loadgroup` with test_contract's nice run.
@pytest.mark.xdist_group('nice_run')
def test_training_writes_every_artefact_and_learns(contract_run):
  # A tiny NICE: XLA:CPU compiles a conv flow's six programs (init, train step,
  # validation, test bound, sampler, interpolation) far too slowly for a smoke test;
  # the conv flows' gradients are tested in tests/models/test_flow_models.py. The run is
  # test_contract's (killed at step 21, resumed) on `_tiny`'s settings with 32 hidden
  # units in one layer (test_contract.SHARED).
  run = contract_run('nice')
  res, tmp_path = run.result, pathlib.Path(run.workdir)
  for name in (
    'eval.json',
    'metrics.jsonl',
    'samples.png',
    'samples_temperature.png',
    'interpolations.png',
  ):
    assert (tmp_path / name).exists(), name
  ev = json.loads((tmp_path / 'eval.json').read_text())
  assert ev == json.loads(json.dumps(res))
  assert ev['model'] == 'nice' and ev['bound'] == 'exact'
  assert ev['dequantization'] == 'uniform' and ev['test_nonfinite'] == 0
  for key in ('test_nll_nats', 'test_bpd', 'test_bpd_iw', 'train_steps_per_s', 'samples_per_s'):
    assert np.isfinite(ev[key]), key
  # bits/dim of the discrete data: NLL bound in nats / (64 log 2), with 64 log 17
  # of dequantisation volume inside it
  np.testing.assert_allclose(ev['test_bpd'], ev['test_nll_nats'] / (64 * math.log(2)), rtol=1e-6)
  assert ev['test_bpd_iw'] <= ev['test_bpd'] + 1e-6  # importance weighting only tightens
  assert ev['test_bpd'] < 4.087  # already better than uniform over 17 levels
  records = [json.loads(line) for line in (tmp_path / 'metrics.jsonl').read_text().splitlines()]
  train_bpd = [r['bpd'] for r in records if 'bpd' in r]
  assert train_bpd[-1] < train_bpd[0]


def test_nan_guard_stops_with_the_step_number(tmp_path, tfds_dir):
  config = _tiny(
    nice_config,
    tfds_dir,
    hidden=16,
    num_hidden_layers=1,
    num_couplings=2,
    learning_rate=1e4,
    grad_clip_norm=0.0,
    weight_decay=0.0,
    dropout_rate=0.0,
    num_train_steps=30,
    checkpoint_every=1000,
    eval_every=1000,
  )
  with pytest.raises(loop.NonFiniteLossError, match=r'at step \d+') as err:
    families.train_and_evaluate(config, str(tmp_path))
  step = int(re.search(r'at step (\d+)', str(err.value)).group(1))
  assert 1 <= step < 30


def test_bad_config_fields_are_named(tfds_dir):
  from gm_jax import data as gm_data

  info = gm_data.get_info('digits')
  with pytest.raises(ValueError, match='config.hidden'):
    flows_family.make_family(_tiny(glow_config, tfds_dir, hidden=0), info)
  with pytest.raises(ValueError, match='config.num_blocks'):
    flows_family.make_family(_tiny(glow_config, tfds_dir, num_blocks=-1), info)
  with pytest.raises(ValueError, match='config.coupling_scale'):
    flows_family.make_family(_tiny(glow_config, tfds_dir, coupling_scale='exp'), info)
  with pytest.raises(ValueError, match='divisible by 16'):
    flows_family.make_family(_tiny(glow_config, tfds_dir, num_scales=4), info)


@pytest.mark.slow
@pytest.mark.target
def test_default_glow_config_reaches_its_targets(tmp_path, tfds_dir):
  """configs/glow.py as shipped (~4 minutes on 2 cores): below the Gaussian-mixture
  baseline (2.743 bits/dim) and the Glow goal (2.20) on the digits test split."""
  config = glow_config.get_config()
  config.data_dir = tfds_dir
  ev = families.train_and_evaluate(config, str(tmp_path))
  assert ev['test_nonfinite'] == 0
  assert ev['test_bpd'] < 2.743
  assert ev['test_bpd'] < 2.20
