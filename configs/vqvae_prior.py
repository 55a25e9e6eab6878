"""Gated PixelCNN prior over the codes of configs/vqvae.py's first stage, on the digits.

Run (after configs/vqvae.py trained into /tmp/vqvae):
    python -m gm_jax.main --config=configs/vqvae_prior.py --workdir=/tmp/vqvae_prior

test_bpd: the true bound `-log p(x | z_q) - log p_prior(z_q)` in bits/dim of the
17-level data (deterministic one-hot posterior); fid / fid_floor / classes_covered of
samples decoded from the prior, in the digits classifier's features.

Measured: see the commit that ships this config (2,000 steps, one seed).
"""

from configs import common


def get_config():
  config = common.likelihood_config(
    model='vqvae_prior',
    dataset='digits',
    batch_size=64,
    num_train_steps=2000,
    learning_rate=1e-3,
    warmup_steps=100,
    grad_clip_norm=100.0,
  )
  config.first_stage_workdir = '/tmp/vqvae'  # the trained configs/vqvae.py run
  config.update(channels=64, num_layers=6, kernel_size=3, dropout_rate=0.1)
  config.fid_num_samples = 0  # as many samples as training images
  return config
