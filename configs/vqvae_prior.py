"""Gated PixelCNN prior over the codes of configs/vqvae.py's first stage, on the digits.

Run (after configs/vqvae.py trained into /tmp/vqvae):
    python -m gm_jax.main --config=configs/vqvae_prior.py --workdir=/tmp/vqvae_prior

test_bpd: the true bound `-log p(x | z_q) - log p_prior(z_q)` in bits/dim of the
17-level data (deterministic one-hot posterior); fid / fid_floor / classes_covered of
samples decoded from the prior, in the digits classifier's features.

Measured (digits test split, seed 0, 1,000 steps on configs/vqvae.py's 1,000-step run with
K = 8 codes, 2-core CPU at load ~10): test bound 2.109 +- 0.016 bits/dim (reconstruction
1.566 + prior 0.543; the uniform prior's 0.75), best validation at step 700; FID 8.89
against the real-data floor 6.00 (1,293 samples, pixels drawn from the decoder's
categorical), 10 of 10 classes; the issue's targets (bound < 2.20, FID <= 2 x floor + 1 =
13.0, perplexity >= K / 2, >= 9 classes) are met. On K = 16 codes: bound 2.274 (reconstruction
1.437 + prior 0.837), FID 19.0, 10 classes (119 s of CPU time); K = 64 and dropout 0.1:
bound 2.523 (prior 1.238), FID 28.6. `decode_pixels='mode'` decodes the samples by the
decoder's most likely level instead of a draw.
"""

from configs import common


def get_config():
  config = common.likelihood_config(
    model='vqvae_prior',
    dataset='digits',
    batch_size=64,
    num_train_steps=1000,
    learning_rate=1e-3,
    warmup_steps=100,
    grad_clip_norm=100.0,
  )
  config.first_stage_workdir = '/tmp/vqvae'  # the trained configs/vqvae.py run
  config.update(channels=64, num_layers=6, kernel_size=3, dropout_rate=0.3)
  config.fid_num_samples = 0  # as many samples as training images
  return config
