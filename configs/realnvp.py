"""RealNVP (checkerboard and channel affine couplings, squeeze, factor-out) on the digits.

Run:
    python -m gm_jax.main --config=configs/realnvp.py --workdir=/tmp/realnvp

Uniform dequantisation of the 17 grey levels; test_bpd is the bound
E_u[-log p((k + u) / 17)] + 64 log 17 in bits/dim of the discrete data.
"""

import ml_collections


def get_config():
  config = ml_collections.ConfigDict()
  config.model = 'realnvp'
  config.dataset = 'digits'
  config.data_dir = ml_collections.config_dict.placeholder(str)
  config.validation_fraction = 0.1

  config.num_scales = 2
  config.num_checkerboard = 3
  config.num_channel = 3
  config.num_final = 4
  config.hidden = 64
  config.dropout_rate = 0.1
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
