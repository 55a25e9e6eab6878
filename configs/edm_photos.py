"""EDM on 32x32 RGB patches of scikit-learn's two sample photographs.

Run:
    python -m gm_jax.main --config=configs/edm_photos.py --workdir=/tmp/edm_photos

configs/edm.py at 32x32x3 with 256 levels: a U-Net of 32 / 64 / 64 / 64 channels (three
halvings), as configs/flow_matching_photos.py. 3,072 dimensions: the likelihood uses
Hutchinson's trace estimator along the probability-flow ODE (RK4, 16 fixed steps). The
patches have no labels: set fid_network='inception' with inception_weights for an FID.

Measured: not trained on this build (the digits config took this session's CPU budget);
tests/families/test_edm.py builds it and evaluates its loss.
"""

from configs import edm


def get_config():
  config = edm.get_config()
  config.dataset = 'photo_patches'
  config.update(
    batch_size=32,
    num_train_steps=3000,
    channel_mults=(1, 2, 2, 2),
    likelihood_steps=16,
    likelihood_batch_size=50,
    sample_batch_size=128,
    timing_samplers=('heun:18',),
    fid_samplers=(),
  )
  config.sigma_max = 80.0  # the paper's start for photos (the digits config starts at 40)
  return config
