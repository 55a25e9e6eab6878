"""Hierarchical VAE on 32x32 RGB patches of scikit-learn's two sample photographs.

Run:
    python -m gm_jax.main --config=configs/hvae_photos.py --workdir=/tmp/hvae_photos

configs/hvae.py with the changes below. `photo_patches`: 1,550 train crops (10% held
out for validation) and 350 test crops from the right-most columns, 256 levels,
discretised-logistic decoder. Latents: one 4x4x8 group and two 8x8x8 groups
(top-down); the stem downsamples 32x32 -> 8x8.

Measured (test crops, seed 0, 600 steps, 2-core CPU shared with other jobs): IWAE-100
5.443 bits/dim, ELBO 5.593 bits/dim; 3 of 3 groups active (test KL 51-153 nats);
1.6 train steps/s; 10 minutes in all. Far behind Glow (configs/glow_photos.py, 3.136):
latents no finer than 8x8 and a per-sub-pixel logistic decoder leave the texture to
independent pixel noise; this config shows the model runs on photos, not a good
photo model. With learning_rate 2e-3 and grad_skip_norm 1e5 the run diverged at
step ~420 and then skipped every step: gradient norms here are ~1e4 (losses ~1e4 nats).
"""

from configs import hvae


def get_config():
  config = hvae.get_config()
  config.dataset = 'photo_patches'
  config.likelihood = 'discretized_logistic'
  config.groups_per_scale = (1, 2)  # 4x4 latents, then 8x8
  config.stem_stride = 4  # 32x32 image -> 8x8 finest latent maps
  config.update(latent_channels=8, dropout_rate=0.0, kl_warmup_steps=0)
  config.grad_skip_norm = 0.0  # off: losses are ~1e4 nats, gradient norms ~1e4
  config.update(
    batch_size=32,
    num_train_steps=600,
    learning_rate=1e-3,
    grad_clip_norm=200.0,
    checkpoint_every=300,
  )
  config.update(iwae_samples=100, iwae_batch_size=50)
  return config
