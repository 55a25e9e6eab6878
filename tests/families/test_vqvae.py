"""The VQ-VAE family: the prior's first stage, the EMA codebook the update carries, and the
true bound of `vqvae_prior` recomputed in NumPy from the two models' logits."""

import json
import math
import os

import jax
import numpy as np
import pytest
from scipy import special

from configs import vqvae as vqvae_config
from configs import vqvae_prior as prior_config
from gm_jax import data as gm_data
from gm_jax import families
from gm_jax.families import vqvae as family_lib

TINY = dict(
  num_train_steps=4,
  hidden=8,
  num_codes=8,
  embed_dim=4,
  channels=8,
  num_layers=1,
  batch_size=16,
  warmup_steps=0,
  eval_every=2,
  log_every=2,
  checkpoint_every=4,
  progress_bar=False,
  fid_num_samples=16,
  num_samples=4,
)


def _config(module, data_dir, **extra):
  config = module.get_config()
  config.update({k: v for k, v in TINY.items() if k in config}, data_dir=data_dir, **extra)
  return config


@pytest.fixture
def first_stage(contract_run):
  """test_contract's tiny vqvae run (8 codes: test_contract.SHARED), the prior's first stage."""
  run = contract_run('vqvae')
  return run.workdir, run.result


# One worker under `-n 2 --dist loadgroup` with test_contract's vqvae and vqvae_prior runs.
@pytest.mark.xdist_group('vqvae_runs')
def test_first_stage_logs_usage_and_writes_reconstructions(first_stage):
  workdir, ev = first_stage
  assert os.path.exists(os.path.join(workdir, 'reconstructions.png'))
  with open(os.path.join(workdir, 'metrics.jsonl')) as f:
    rows = [json.loads(line) for line in f]
  train = [r for r in rows if 'perplexity' in r]
  assert train and all(1.0 <= r['perplexity'] <= 8.0 and 1 <= r['codes_used'] <= 8 for r in train)
  # Uniform prior: 16 codes of log 8 nats each, in bits/dim of the 64 pixels.
  assert math.isclose(ev['test_prior_bpd'], 16 * 3 / 64, rel_tol=1e-9)
  assert math.isclose(ev['test_bpd'], ev['test_recon_bpd'] + ev['test_prior_bpd'], rel_tol=1e-9)


def test_update_carries_the_ema_codebook_into_the_params(data_dir):
  config = families.complete(_config(vqvae_config, data_dir, dead_code_threshold=0.0))
  info = gm_data.get_info(config.dataset)
  family = family_lib.make_family(config, info)
  images = np.random.RandomState(0).randint(0, 17, (16, 8, 8, 1)).astype(np.uint8)
  params = family.init(jax.random.key(0), {'image': images})
  state = family.train_update.init(params)
  # Compiled once (op by op, the update and the encoder took seconds of dispatch).
  update = jax.jit(lambda p, s, b, k: family.train_update.update(p, s, b, k, step=0))
  new_params, new_state, metrics = update(params, state, {'image': images}, jax.random.key(1))
  # The EMA step (van den Oord et al. appendix A.1) in NumPy, on the pre-update encoder.
  model = family_lib.build_first_stage(config, info)
  out = jax.jit(model.apply)(params, images)
  z = np.asarray(out['z_e'], np.float64).reshape(-1, 4)
  codes = np.asarray(out['codes']).reshape(-1)
  one_hot = np.eye(8)[codes]
  counts = 0.99 * 1.0 + 0.01 * one_hot.sum(0)
  cb = np.asarray(params['params']['codebook'], np.float64)
  sums = 0.99 * cb + 0.01 * one_hot.T @ z
  smoothed = (counts + 1e-5) / (counts.sum() + 8e-5) * counts.sum()
  np.testing.assert_allclose(new_state['ema']['counts'], counts, rtol=1e-5)
  np.testing.assert_allclose(new_params['params']['codebook'], sums / smoothed[:, None], rtol=1e-4)
  np.testing.assert_array_equal(new_params['params']['codebook'], new_state['ema']['codebook'])
  assert float(metrics['restarted']) == 0.0


@pytest.mark.xdist_group('vqvae_runs')
def test_prior_bound_equals_its_terms_recomputed(contract_run):
  """test_contract's vqvae_prior run, on the first stage of `first_stage`."""
  run = contract_run('vqvae_prior')
  ev, tmp_path = run.result, run.workdir
  assert run.config.first_stage_workdir == contract_run('vqvae').workdir
  config, family, splits = families.setup(run.config)
  fs_model, fs_params = family_lib.load_first_stage(config, splits.info)
  from gm_jax.train import checkpoint

  target = family.init(jax.random.key(0), {'image': splits.train['image'][:4]})
  _, prior_params = checkpoint.load_params(str(tmp_path), target)
  test = np.asarray(splits.test['image'])
  z_e = np.asarray(fs_model.apply(fs_params, test, method=fs_model.encode), np.float64)
  cb = np.asarray(fs_params['params']['codebook'], np.float64)
  codes = np.argmin(((z_e[..., None, :] - cb) ** 2).sum(-1), -1)  # [N, 4, 4]
  recon_logits = np.asarray(fs_model.apply(fs_params, codes, method=fs_model.decode_codes))
  log_px = np.take_along_axis(
    special.log_softmax(recon_logits.astype(np.float64), -1), test[..., None].astype(int), -1
  ).sum((1, 2, 3, 4))
  prior = family_lib.ar_lib.PixelCNN(
    num_levels=8, num_channels=1, features=8, num_layers=1, kernel_size=3, dropout_rate=0.1
  )
  prior_logits = np.asarray(prior.apply(prior_params, codes[..., None]), np.float64)
  log_pz = np.take_along_axis(
    special.log_softmax(prior_logits, -1), codes[..., None, None], -1
  ).sum((1, 2, 3, 4))
  bound = -(log_px + log_pz)
  assert math.isclose(ev['test_nll_nats'], bound.mean(), rel_tol=1e-5)
  assert math.isclose(ev['test_bpd'], bound.mean() / (64 * math.log(2)), rel_tol=1e-5)
  assert math.isclose(ev['test_prior_bpd'], -log_pz.mean() / (64 * math.log(2)), rel_tol=1e-5)
  assert ev['fid_num_samples'] == 16 and 'class_coverage' in ev
  assert ev['decode_pixels'] == 'sample'
  assert os.path.exists(os.path.join(str(tmp_path), 'prior_samples.png'))

  # decode_pixels='mode': the decoder's most likely level of each pixel of the same codes.
  with run.config.unlocked():
    mode_config = run.config.copy_and_resolve_references()
  mode_config.decode_pixels = 'mode'
  _, mode_family, _ = families.setup(mode_config)
  key = jax.random.key(5)
  drawn = mode_family.sample(prior_params, key, 3)
  code_key, _ = jax.random.split(key)
  sampled_codes = np.asarray(
    family_lib.sampling.sample(prior, prior_params, code_key, (3, 4, 4, 1))
  )[..., 0]
  logits = np.asarray(fs_model.apply(fs_params, sampled_codes, method=fs_model.decode_codes))
  np.testing.assert_array_equal(drawn, np.argmax(logits, -1))
  assert drawn.dtype == np.uint8 and not np.array_equal(drawn, family.sample(prior_params, key, 3))


def test_prior_first_stage_errors_name_the_field(data_dir, tmp_path):
  info = gm_data.get_info('digits')
  other = tmp_path / 'nice'
  other.mkdir()
  (other / 'config.json').write_text(json.dumps({'model': 'nice', 'dataset': 'digits'}))
  for path, why in (
    ('', 'must name'),
    (str(tmp_path / 'missing'), 'no config.json'),
    (str(other), "'nice'"),
  ):
    config = families.complete(_config(prior_config, data_dir, first_stage_workdir=path))
    with pytest.raises(ValueError, match=rf'config\.first_stage_workdir.*{why}'):
      family_lib.check_config(config, info)
  config = families.complete(_config(vqvae_config, data_dir, num_codes=1))
  with pytest.raises(ValueError, match=r'config\.num_codes'):
    family_lib.check_config(config, info)
  first = tmp_path / 'vqvae'
  first.mkdir()
  (first / 'config.json').write_text(json.dumps({'model': 'vqvae', 'dataset': 'digits'}))
  config = families.complete(_config(prior_config, data_dir, first_stage_workdir=str(first)))
  family_lib.check_config(config, info)
  config.decode_pixels = 'mean'
  with pytest.raises(ValueError, match=r"config\.decode_pixels.*'sample', 'mode'.*'mean'"):
    family_lib.check_config(config, info)
