"""Glow on 32x32 RGB patches of scikit-learn's two sample photographs.

Run:
    python -m gm_jax.main --config=configs/glow_photos.py --workdir=/tmp/glow_photos

`photo_patches`: 32x32 RGB crops, 256 levels, test crops from the right-most
columns of the photographs. Uniform dequantisation; test_bpd is the bound
E_u[-log p((k + u) / 256)] + 3072 log 256 in bits/dim of the 8-bit data (4 noise
draws per test crop).

Measured (seed 0, 2-core CPU shared with other jobs, 1,500 steps, 7.5 minutes):
test 3.136 bits/dim (importance-weighted 3.128), ~4.8 train steps/s, ~260
samples/s, no NaN; validation was still improving at the last step. Three
scales (32 -> 16 -> 8 -> 4), three steps each, 32-channel coupling networks:
the 64-channel, four-step version ran at 1.5 steps/s here. Samples are drawn at
temperature 0.7.
"""

import ml_collections


def get_config():
  config = ml_collections.ConfigDict()
  config.model = 'glow'
  config.dataset = 'photo_patches'
  config.data_dir = ml_collections.config_dict.placeholder(str)
  config.validation_fraction = 0.1

  config.num_scales = 3
  config.steps_per_scale = 3
  config.hidden = 32
  config.num_blocks = 0  # residual blocks per coupling network (RealNVP's ResNet couplings)
  config.coupling_scale = 'tanh'  # or Glow's 'sigmoid' (couplings never amplify)
  config.learned_prior = True
  config.dropout_rate = 0.1
  config.logit_alpha = 0.05

  config.batch_size = 32
  config.num_train_steps = 1500
  config.learning_rate = 1e-3
  config.lr_schedule = 'cosine'
  config.warmup_steps = 100
  config.weight_decay = 1e-4
  config.grad_clip_norm = 500.0
  config.seed = 0

  config.log_every = 50
  config.max_train_seconds = 0.0  # > 0: stop training after this much wall time (resumable)
  config.eval_every = 100
  config.checkpoint_every = 500
  config.max_to_keep = 2
  config.parallel = 'none'

  config.eval_dequant_samples = 4
  config.eval_batch_size = 128
  config.num_samples = 64
  config.sample_temperature = 0.7
  return config
