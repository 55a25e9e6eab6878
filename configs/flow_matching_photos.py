"""Flow matching on 32x32 RGB patches of scikit-learn's two sample photographs.

Run:
    python -m gm_jax.main --config=configs/flow_matching_photos.py --workdir=/tmp/fm_photos

configs/flow_matching.py at 32x32x3 with 256 levels: a U-Net of 32 / 64 / 64 / 64
channels (three halvings). 3,072 dimensions is above `exact_trace_max_dims`, so the
test log-likelihood uses Hutchinson's trace estimator along the probability-flow ODE
(one Rademacher probe per image, an unbiased estimate; `bound` says so), RK4 with 16
fixed steps, and the uniform-dequantisation bound in bits/dim of the 8-bit data.

Measured: not trained yet on this build (the digits configs took this session's CPU
budget); tests/families/test_diffusion.py builds it and evaluates its loss.
"""

from configs import flow_matching


def get_config():
  config = flow_matching.get_config()
  config.dataset = 'photo_patches'
  config.update(
    batch_size=32,
    num_train_steps=3000,
    channel_mults=(1, 2, 2, 2),
    likelihood_steps=16,
    likelihood_batch_size=50,
    sample_batch_size=128,
    timing_samplers=('euler:50',),
  )
  return config
