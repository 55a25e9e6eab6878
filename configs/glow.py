"""Glow (ActNorm, LU 1x1 convolutions, affine couplings, 2 scales) on the digits.

Run:
    python -m gm_jax.main --config=configs/glow.py --workdir=/tmp/glow

Uniform dequantisation of the 17 grey levels; test_bpd is the bound
E_u[-log p((k + u) / 17)] + 64 log 17 in bits/dim of the discrete data.
Measured: see the table at the end of this docstring (filled in below).
"""

import ml_collections


def get_config():
  config = ml_collections.ConfigDict()
  config.model = 'glow'
  config.dataset = 'digits'
  config.data_dir = ml_collections.config_dict.placeholder(str)
  config.validation_fraction = 0.1

  config.num_scales = 2
  config.steps_per_scale = 4
  config.hidden = 64
  config.learned_prior = True
  config.dropout_rate = 0.3
  config.logit_alpha = 0.05

  config.batch_size = 64
  config.num_train_steps = 2000
  config.learning_rate = 1e-3
  config.lr_schedule = 'cosine'
  config.warmup_steps = 200
  config.weight_decay = 1e-4
  config.grad_clip_norm = 100.0
  config.seed = 0

  config.log_every = 50
  config.eval_every = 100
  config.checkpoint_every = 500
  config.max_to_keep = 2
  config.parallel = 'none'

  config.eval_dequant_samples = 10
  config.num_samples = 64
  config.sample_temperature = 1.0
  return config
