"""VQ-VAE first stage (conv encoder/decoder, 4 x 4 grid of codes, EMA codebook) on the digits.

Run:
    python -m gm_jax.main --config=configs/vqvae.py --workdir=/tmp/vqvae

then its prior, configs/vqvae_prior.py (reads /tmp/vqvae). test_bpd here is the bound
with a uniform prior over the codes, `-log p(x | z_q) + 16 log K` in bits/dim of the
17-level data; test_perplexity / test_codes_used the codebook usage on the test split.

Measured (digits test split = last 360 images, seed 0, 1,000 steps, shared 2-core CPU):
K = 16 codes (this config): reconstruction 1.437 bits/dim, uniform-prior bound 2.437,
test perplexity 13.5 of 16 codes, all 16 used, best validation at step 800; 82 s of CPU
time (5.5 minutes wall on the loaded machine). K = 64: reconstruction 1.285, uniform bound
2.785, perplexity 41.0, 64 used (82 s CPU); its PixelCNN-prior bound is worse (2.523
against 2.274, configs/vqvae_prior.py): the codes carry more than the prior can predict.
"""

from configs import common


def get_config():
  config = common.likelihood_config(
    model='vqvae',
    dataset='digits',
    batch_size=64,
    num_train_steps=1000,
    learning_rate=1e-3,
    warmup_steps=100,
    grad_clip_norm=100.0,
  )
  config.update(num_codes=16, embed_dim=16)  # codebook: K codes of D dimensions
  config.update(hidden=64, num_downsamples=1, num_res_blocks=1)  # 8 x 8 -> 4 x 4 codes
  config.commitment_beta = 0.25  # van den Oord et al.'s beta
  config.codebook_decay = 0.99  # EMA codebook (their appendix A.1)
  # Restart codes whose EMA count (vectors a step; 64 on average for 64 x 16 vectors over
  # 16 codes) falls below this: the N(0, 1) initial codebook is far from the encoder's
  # outputs, so most codes start dead.
  config.dead_code_threshold = 1.0
  return config
