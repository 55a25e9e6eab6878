"""Hierarchical VAE on 32x32 RGB patches of scikit-learn's two sample photographs.

Run:
    python -m gm_jax.main --config=configs/hvae_photos.py --workdir=/tmp/hvae_photos

`photo_patches`: 1,550 train crops (10% held out for validation) and 350 test crops
from the right-most columns, 256 levels, discretised-logistic decoder. Latents: one
4x4x8 group and two 8x8x8 groups (top-down); the stem downsamples 32x32 -> 8x8.

Measured: see the bottom of this docstring (filled in from eval.json).
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
  config.free_bits = 0.0
  config.kl_warmup_steps = 0  # active only when the trainer passes `step` to the loss
  config.spectral_reg = 0.0
  config.grad_skip_norm = 0.0

  config.batch_size = 32
  config.num_train_steps = 600
  config.learning_rate = 2e-3
  config.lr_schedule = 'cosine'
  config.warmup_steps = 50
  config.weight_decay = 1e-4
  config.grad_clip_norm = 200.0
  config.seed = 0

  config.log_every = 50
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
