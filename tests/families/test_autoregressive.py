"""The autoregressive family through the generic trainer: artefacts, exact NLL, checks."""

import json
import math
import os
import pathlib

import numpy as np
import pytest

from configs import char_lm as char_lm_config
from configs import pixelcnn as pixelcnn_config
from gm_jax import data as gm_data
from gm_jax import families
from gm_jax.families import autoregressive as ar_family


def _tiny(config, tfds_dir, **overrides):
  c = config.get_config()
  c.data_dir = tfds_dir
  c.channels = 8
  c.batch_size = 16
  c.num_train_steps = 30
  c.warmup_steps = 0
  c.log_every = 10
  c.eval_every = 10
  c.checkpoint_every = 10
  c.max_to_keep = 5
  c.num_samples = 4
  c.update(overrides)
  return families.complete(c)


# One worker under `-n 2 --dist loadgroup` with test_contract's pixelcnn and char_lm runs.
@pytest.mark.xdist_group('ar_runs')
def test_pixelcnn_trains_writes_artefacts_and_learns(contract_run):
  # test_contract's pixelcnn run (killed at step 11, resumed; bit for bit in
  # tests/train/test_loop.py) on `_tiny`'s settings with 2 layers (test_contract.SHARED).
  run = contract_run('pixelcnn')
  ev, straight = run.result, run.workdir
  for name in ('eval.json', 'metrics.jsonl', 'samples.png'):
    assert os.path.exists(os.path.join(straight, name)), name
  assert ev == json.loads(open(os.path.join(straight, 'eval.json')).read())
  assert ev['model'] == 'pixelcnn' and ev['bound'] == 'exact' and ev['test_nonfinite'] == 0
  np.testing.assert_allclose(ev['test_bpd'], ev['test_nll_nats'] / (64 * math.log(2)), rtol=1e-6)
  assert ev['test_bpd'] < 4.087  # better than uniform over 17 levels after 30 steps
  assert ev['samples_per_s'] > 0 and ev['train_steps_per_s'] > 0


@pytest.mark.xdist_group('ar_runs')
def test_char_lm_reports_bits_per_char_and_writes_text(contract_run):
  # test_contract's char_lm run (killed at step 11, resumed) on `_tiny`'s settings with
  # dilations (1, 2, 4), 20 steps and two samples of 50 bytes (test_contract.SHARED).
  run = contract_run('char_lm')
  ev, tmp_path = run.result, pathlib.Path(run.workdir)
  assert ev['model'] == 'char_lm' and ev['bound'] == 'exact'
  assert ev['test_bits_per_char'] == ev['test_bpd']
  np.testing.assert_allclose(ev['test_bpd'], ev['test_nll_nats'] / (128 * math.log(2)), rtol=1e-6)
  assert ev['test_bits_per_char'] < 8.0  # better than uniform over 256 bytes
  text = (tmp_path / 'samples.txt').read_text()
  assert text.count('--- sample') == 2
  assert ev['samples_per_s'] > 0 and ev['sample_length'] == 50


def test_bad_config_fields_are_named(tfds_dir):
  digits, text = gm_data.get_info('digits'), gm_data.get_info('pydoc_chars')
  bad = [
    (pixelcnn_config, digits, dict(channels=0), 'config.channels'),
    (pixelcnn_config, digits, dict(num_layers=-1), 'config.num_layers'),
    (pixelcnn_config, digits, dict(kernel_size=4), 'config.kernel_size'),
    (pixelcnn_config, digits, dict(dropout_rate=1.5), 'config.dropout_rate'),
    (pixelcnn_config, digits, dict(sample_temperature=0.0), 'config.sample_temperature'),
    (pixelcnn_config, text, {}, 'needs a image dataset'),
    (
      pixelcnn_config,
      gm_data.get_info('photo_patches'),
      dict(channels=8),
      'multiple of the 3 colour channels',
    ),
    (char_lm_config, text, dict(dilations=()), 'config.dilations'),
    (char_lm_config, text, dict(dilations=(1, 0)), 'config.dilations'),
    (char_lm_config, digits, {}, 'needs a text dataset'),
  ]
  for module, info, overrides, message in bad:
    with pytest.raises(ValueError, match=message):
      ar_family.make_family(_tiny(module, tfds_dir, **overrides), info)


@pytest.mark.slow
@pytest.mark.target
def test_default_pixelcnn_config_reaches_its_target(tmp_path, tfds_dir):
  """configs/pixelcnn.py as shipped: below 1.90 bits/dim on the digits test split
  (logistic autoregressive baseline 2.063)."""
  config = pixelcnn_config.get_config()
  config.data_dir = tfds_dir
  ev = families.train_and_evaluate(config, str(tmp_path))
  assert ev['test_nonfinite'] == 0
  assert ev['test_bpd'] < 1.90
