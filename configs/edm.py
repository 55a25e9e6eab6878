"""EDM (Karras et al. 2022) on the digits: preconditioned denoiser, Heun sampling.

Run:
    python -m gm_jax.main --config=configs/edm.py --workdir=/tmp/edm

The U-Net of configs/flow_matching.py as `D(x; sigma) = c_skip x + c_out F(c_in x,
c_noise)` (sigma_data = 0.5 for images in [-1, 1]), trained with the EDM loss at log-normal
noise levels (P_mean = -1.2, P_std = 1.2) on uniformly dequantised images; samples with
Heun (Algorithm 1) on 18 Karras levels from 40 to 0.002 (rho = 7): 35 network
evaluations. fid_by_sampler scores DPM-Solver++(2M) with 10 steps on as many samples.
test_bpd is the dequantisation bound in bits/dim of the 17-level data through the
probability-flow ODE (RK4, 32 fixed steps, Hutchinson's trace), as configs/flow_matching.py.

Measured (seed 0, 3,000 steps, no EMA: this build's trainer had none when it was trained;
2-core CPU shared with ~10 other jobs at load ~25, 2.6 train steps/s: 31 min wall for
training and evaluation, 10.4 min CPU (547 s user + 76 s system), 1.7 GB peak memory): best
validation 0.503 per dim at step 3,000. Evaluated with this config (sigma_max 40; the
trainer's evaluation key): test 1.938 bits/dim (target < 2.20); FID 6.27 with Heun-18 = 35
network evaluations on 1,293 samples (real-data floor 6.00: floor + 0.27; target floor + 1),
10 of 10 classes; fid_by_sampler dpmpp_2m:10 7.51 (floor + 1.51; target floor + 2).
The same checkpoint and key at the paper's sigma_max 80: Heun-18 6.10, dpmpp_2m:10 8.25
(over the target), test 1.938; with another sampling key, dpmpp_2m:10 7.34 at sigma_max 80,
6.66 at 40, 6.95 at 20: the FID of 1,293 samples moves by ~1 between keys, and starting the
10-step schedule at 40 rather than 80 is worth ~0.7. sigma_max only sets the sampling
schedule and the likelihood ODE's range: the training loss draws sigma log-normally.
With `--config.ema_decay=0.999` (idle machine, 342 s wall, 547 s CPU): best validation at
step 2,400, test 1.935 bits/dim, Heun-18 FID 6.87, dpmpp_2m:10 8.17, 10 of 10 classes: the
averaged weights scored worse FIDs on this key, so this config leaves EMA off. With
`ema_decay=0.99` (2-core CPU at load ~3, 7.8 train steps/s): best validation at step 2,400,
test 1.936 bits/dim, Heun-18 FID 6.90, dpmpp_2m:10 8.54 (over its target), 10 of 10 classes.
Samples/s (64 at once, loaded CPU): Heun-18 21.5, DPM-Solver++(2M)-10 64.6, Euler
ancestral-18 58.6.
"""

from configs import common


def get_config():
  config = common.likelihood_config(
    model='edm',
    dataset='digits',
    batch_size=64,
    num_train_steps=3000,
    learning_rate=2e-3,
    warmup_steps=100,
    grad_clip_norm=100.0,
  )
  config.update(
    channels=32, channel_mults=(1, 2), num_res_blocks=1, attention=False, dropout_rate=0.1
  )
  config.update(sigma_data=0.5, p_mean=-1.2, p_std=1.2)
  config.update(conditional=False, cond_drop_rate=0.1, guidance_scale=1.0, val_samples=4)
  config.update(sigma_min=0.002, sigma_max=40.0, rho=7.0, s_churn=0.0)
  config.update(
    sampler='heun',
    sample_steps=18,
    fid_samplers=('dpmpp_2m:10',),
    timing_samplers=('heun:18', 'dpmpp_2m:10', 'euler_ancestral:18'),
    timing_fid_samples=0,
    fid_num_samples=0,
    fid_network='classifier',
    inception_weights='',
    sample_batch_size=512,
    trajectory_samples=8,
  )
  config.update(
    likelihood_solver='rk4',
    likelihood_steps=32,
    exact_trace_max_dims=0,
    eval_dequant_samples=1,
    likelihood_batch_size=40,
  )
  return config
