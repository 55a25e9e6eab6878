"""Hierarchical VAE on 32x32 RGB patches of scikit-learn's two sample photographs.

Run:
    python -m gm_jax.main --config=configs/hvae_photos.py --workdir=/tmp/hvae_photos

`photo_patches`: 1,550 train crops (10% held out for validation) and 350 test crops
from the right-most columns, 256 levels, discretised-logistic decoder. Latents: one
4x4x8 group and two 8x8x8 groups (top-down); the stem downsamples 32x32 -> 8x8.

Measured (test crops, seed 0, 600 steps, 2-core CPU shared with other jobs): IWAE-100
5.443 bits/dim, ELBO 5.593 bits/dim; 3 of 3 groups active (test KL 51-153 nats);
1.6 train steps/s; 10 minutes in all. Far behind Glow (configs/glow_photos.py, 3.136):
latents no finer than 8x8 and a per-sub-pixel logistic decoder leave the texture to
independent pixel noise; this config shows the model runs on photos, not a good
photo model. With learning_rate 2e-3 and grad_skip_norm 1e5 the run diverged at
step ~420 and then skipped every step: gradient norms here are ~1e4 (losses ~1e4 nats).
"""

import ml_collections


def get_config():
  config = ml_collections.ConfigDict()
  config.model = 'hvae'
  config.dataset = 'photo_patches'
  config.data_dir = ml_collections.config_dict.placeholder(str)
  config.validation_fraction = 0.1

  config.likelihood = 'discretized_logistic'
  config.groups_per_scale = (1, 2)  # 4x4 latents, then 8x8
  config.stem_stride = 4  # 32x32 image -> 8x8 finest latent maps
  config.channels = 32
  config.latent_channels = 8
  config.cells_per_group = 1
  config.normalization = 'weight'  # 'weight' | 'spectral' | 'none'
  config.dropout_rate = 0.0

  config.objective = 'elbo'  # 'elbo' | 'iwae'
  config.iwae_train_samples = 5
  config.free_bits = 1.0  # nats per group (batch-averaged KL floor); 0 = off
  config.kl_warmup_steps = 0  # beta rises linearly to 1 over these steps (0 = off)
  config.spectral_reg = 0.01  # NVAE's lambda on the sum of spectral norms
  config.grad_skip_norm = 0.0  # off: losses are ~1e4 nats, gradient norms ~1e4

  config.batch_size = 32
  config.num_train_steps = 600
  config.learning_rate = 1e-3
  config.lr_schedule = 'cosine'
  config.warmup_steps = 100
  config.weight_decay = 1e-4
  config.grad_clip_norm = 200.0
  config.seed = 0

  config.log_every = 50
  config.max_train_seconds = 0.0  # > 0: stop training after this much wall time (resumable)
  config.eval_every = 100
  config.checkpoint_every = 300
  config.max_to_keep = 2
  config.parallel = 'none'

  config.iwae_samples = 100
  config.iwae_batch_size = 50
  config.num_samples = 64
  config.sample_temperature = 1.0
  config.picture_temperatures = (1.0, 0.8, 0.6, 0.4, 0.2)
  return config
