"""DCGAN on the embedded 8x8 digits (17 grey levels), native resolution.

Run:
    python -m gm_jax.main --config=configs/dcgan.py --workdir=/tmp/dcgan
    # the other objectives: --config.gan_loss=minimax | lsgan; class-conditional:
    # --config.conditional=True

Radford et al. 2016 settings scaled to 8x8: G is z(32) -> 2x2x128 -> 4x4x64 -> 8x8x1
(transposed convolutions, batch norm, ReLU, tanh), D mirrors it (strided convolutions,
LeakyReLU 0.2, batch norm except on the input layer); Adam 2e-4, beta1 0.5, one D and
one G update per step. No likelihood: eval.json has `bound: "none"`, the FID of 1,293
samples against the 360 test digits in the features of a classifier trained on the
train split, its real-data floor `fid_floor` (train vs test), and class coverage.

Measured (seed 0, non_saturating, 3,000 steps, 2-core CPU shared with other jobs at load
~8: 3.9 train steps/s, 14 steps/s when less loaded, ~14 min wall there, ~4 min unloaded):
FID 6.96 against a real-data floor of 5.97, all 10 classes covered, class entropy 2.300
nats (uniform: 2.303), classifier test accuracy 0.93. 800-step minimax runs: FID 15.1 and
10.8 (seeds 0, 1). These runs predate dropping the biases before batch norm (cancelled
by the normalisation; same function class).

EMA of the generator (`ema_decay=0.999`, warm-up `min(0.999, (1 + n) / (10 + n))`,
measured 2026-12-06, seed 0, 3,000 steps, one run): FID 6.29 with the averaged generator
against 7.01 with the trained one at the same last step (the same 1,293 latent draws;
floor 6.00), 10 of 10 classes either way; the shipped default since.
"""

from configs import common


def get_config():
  # The validation split (common's validation_fraction) is not used for selection (GANs
  # keep their last parameters); keeping the default split makes the FID floor use the
  # same train images as the VAE.
  config = common.get_config(
    model='dcgan', dataset='digits', batch_size=64, num_train_steps=3000, learning_rate=2e-4
  )

  config.gan_loss = 'non_saturating'  # 'minimax' | 'non_saturating' | 'lsgan'
  config.generator_norm = 'batch_norm'  # 'batch_norm' | 'none'
  config.discriminator_norm = 'batch_norm'  # 'batch_norm' | 'spectral_norm' | 'none'
  config.update(
    conditional=False, latent_dim=32, generator_features=(128, 64), discriminator_features=(64, 128)
  )

  config.update(adam_b1=0.5, log_every=100, checkpoint_every=1000, max_to_keep=2)
  # the generator's exponential moving average is evaluated and sampled (measured above)
  config.ema_decay = 0.999
  config.fid_num_samples = 0  # 0 = as many as training images (same size as the floor)
  return config
