"""EDM (Karras et al. 2022) on the digits: preconditioned denoiser, Heun sampling.

Run:
    python -m gm_jax.main --config=configs/edm.py --workdir=/tmp/edm

The U-Net of configs/flow_matching.py as `D(x; sigma) = c_skip x + c_out F(c_in x,
c_noise)` (sigma_data = 0.5 for images in [-1, 1]), trained with the EDM loss at log-normal
noise levels (P_mean = -1.2, P_std = 1.2) on uniformly dequantised images; samples with
Heun (Algorithm 1) on 18 Karras levels from 80 to 0.002 (rho = 7): 35 network
evaluations. fid_by_sampler scores DPM-Solver++(2M) with 10 steps on as many samples.
test_bpd is the dequantisation bound in bits/dim of the 17-level data through the
probability-flow ODE (RK4, 32 fixed steps, Hutchinson's trace), as configs/flow_matching.py.

Measured: MEASURED
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
  config.update(sigma_min=0.002, sigma_max=80.0, rho=7.0, s_churn=0.0)
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
