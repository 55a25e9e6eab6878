"""VQ-VAE first stage (conv encoder/decoder, 4 x 4 grid of codes, EMA codebook) on the digits.

Run:
    python -m gm_jax.main --config=configs/vqvae.py --workdir=/tmp/vqvae

then its prior, configs/vqvae_prior.py (reads /tmp/vqvae). test_bpd here is the bound
with a uniform prior over the codes, `-log p(x | z_q) + 16 log K` in bits/dim of the
17-level data; test_perplexity / test_codes_used the codebook usage on the test split.

Measured (digits test split = last 360 images, seed 0, 1,000 steps, shared 2-core CPU):
K = 8 codes (this config): reconstruction 1.566 bits/dim, uniform-prior bound 2.316 (16 x 3
bits over 64 dims), test perplexity 7.02 of 8 codes, all 8 used, best validation at step
800; ~5.3 train steps/s at load ~10. K = 16: reconstruction 1.437, uniform bound 2.437,
perplexity 13.5 of 16, all used (82 s of CPU time); K = 64: reconstruction 1.285, uniform
bound 2.785, perplexity 41.0. Fewer codes lose reconstruction but cost the prior less: with
configs/vqvae_prior.py's PixelCNN the true bound is 2.109 at K = 8, 2.274 at K = 16 and 2.523
at K = 64.
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
  config.update(num_codes=8, embed_dim=16)  # codebook: K codes of D dimensions
  config.update(hidden=64, num_downsamples=1, num_res_blocks=1)  # 8 x 8 -> 4 x 4 codes
  config.commitment_beta = 0.25  # van den Oord et al.'s beta
  config.codebook_decay = 0.99  # EMA codebook (their appendix A.1)
  # Restart codes whose EMA count (vectors a step; 128 on average for 64 x 16 vectors over
  # 8 codes) falls below this: the N(0, 1) initial codebook is far from the encoder's
  # outputs, so most codes start dead.
  config.dead_code_threshold = 1.0
  return config
