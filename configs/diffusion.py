"""Variational diffusion model (VDM, Kingma et al. 2021) on the digits.

Run:
    python -m gm_jax.main --config=configs/diffusion.py --workdir=/tmp/diffusion

Continuous-time bound with the discrete decoder at t=0 (17 levels) and the prior KL at
t=1, so test_bpd (bound 'elbo') is in bits/dim of the discrete data like every other
row; 16 stratified time draws per test image. A U-Net of 32 channels at 8x8 and 64
at 4x4, Fourier features of z, VDM's learned log-SNR schedule (a monotone network with
free end points, started at 6 and -6, trained on the bound), epsilon-prediction, EMA.

Measured (the shipped config; seed 0, 3,000 steps, 2-core CPU shared with one other
training run for most of it, 5.7 train steps/s): test 1.882 bits/dim (bound 'elbo', stderr
0.015; recon 0.194 + prior 0.001 + diffusion 1.686), best validation 1.884 at step 2,800
(the #43 target <= 1.90 is met; the hierarchical VAE's 1.84 is not reached); FID 6.91 in
the digits classifier's features (real-data floor 6.00) with DDIM-50 on 1,293 samples, 10
of 10 classes. The learned schedule moved the t=0 end: the recon term fell from 0.570
(the fixed cosine schedule below) to 0.194 bits/dim while the diffusion term rose 1.415 ->
1.686. A fixed cosine schedule from 8 instead was at validation 2.097 at step 1,800 (recon
0.004: the diffusion term pays for the SNR range; stopped there).

Earlier measurements, with a fixed cosine schedule from 6 to -6 (seed 0, 3,000 steps in ~10
minutes on the 2-core CPU shared with other jobs, ~11.7 train steps/s): test 1.986 bits/dim
(bound 'elbo', stderr 0.024; recon 0.570 + prior 0.001 + diffusion 1.415), best validation
1.975 at step 2,800; FID 7.29 in the digits classifier's features (real-data floor 5.97)
with DDIM-50 on 1,293 samples, 10 of 10 classes; samples/s (64 at once, shared CPU):
DDPM-1000 0.93, DDIM-50 16.4, Heun-25 25.2. Most of the recon term is the fixed end point
log_snr_max = 6 (a cosine schedule from 10 was at 3.46 vs 2.36 bits/dim after 500 steps: the
high-SNR end is slow to learn).

EMA (`ema_decay=0.999`, warm-up `min(0.999, (1 + n) / (10 + n))`; measured 2026-12-06,
seed 0, 3,000 steps, ~27 minutes on the shared CPU at load up to 25): the averaged weights
test 1.976 bits/dim (stderr 0.023; best validation 1.968 at step 3,000) and FID 7.02
(10 of 10 classes), against 1.982 and FID 8.50 for the trained weights of the same run's
last step (the same eval keys, so paired); the shipped default since. The 1.90 target of
#43 is not reached by EMA alone: the learned schedule above reaches it.
"""

from configs import common


def get_config():
  config = common.likelihood_config(
    model='diffusion',
    dataset='digits',
    batch_size=64,
    num_train_steps=3000,
    learning_rate=2e-3,
    warmup_steps=100,
    grad_clip_norm=100.0,
  )
  # times are stratified over each loss group (VDM's low-discrepancy sampler)
  config.loss_group_size = 16
  config.update(
    channels=32, channel_mults=(1, 2), num_res_blocks=1, attention=False, dropout_rate=0.1
  )
  config.fourier_exponents = (2, 3)  # sin/cos(2^n pi z): the 17-level grid's scale
  # learned: VDM's monotone network; the end points are where it starts
  config.update(noise_schedule='learned', log_snr_min=-6.0, log_snr_max=6.0, prediction_type='eps')
  config.update(conditional=False, cond_drop_rate=0.1, guidance_scale=1.0)
  config.update(val_samples=4, eval_bound_samples=16)
  config.ema_decay = 0.999  # validation, test bound and samples use the average
  config.update(
    sampler='ddim',
    sample_steps=50,
    timing_samplers=('ddpm:1000', 'ddim:50', 'heun:25'),
    fid_num_samples=0,
    timing_fid_samples=0,
    sample_batch_size=512,
  )
  return config
