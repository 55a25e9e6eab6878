"""Variational diffusion model on 32x32 RGB patches of scikit-learn's two sample photographs.

Run:
    python -m gm_jax.main --config=configs/diffusion_photos.py --workdir=/tmp/diffusion_photos

configs/diffusion.py at 32x32x3 with 256 levels: a U-Net of 32 / 64 / 64 / 64 channels
(three halvings, 32 -> 4), Fourier features 2^6 pi and 2^7 pi of z (VDM's, for 8-bit
data) and the log-SNR from 13.3 to -5 (VDM's CIFAR-10 end points: 256 levels need a high
SNR at t = 0 for the discrete decoder). test_bpd is the VDM bound in bits/dim of the
8-bit data (bound 'elbo'); photo_patches has two classes, so FID in the digits
classifier's features does not apply and is not reported.

Measured: not trained yet on this build (the digits configs took this session's CPU
budget); tests/families/test_diffusion.py builds it and evaluates its loss.
"""

from configs import diffusion


def get_config():
  config = diffusion.get_config()
  config.dataset = 'photo_patches'
  config.update(
    batch_size=32,
    num_train_steps=3000,
    channel_mults=(1, 2, 2, 2),
    fourier_exponents=(6, 7),
    log_snr_min=-5.0,
    log_snr_max=13.3,
    eval_bound_samples=4,
    eval_batch_size=64,
    sample_batch_size=128,
    timing_samplers=('ddim:50',),
  )
  return config
