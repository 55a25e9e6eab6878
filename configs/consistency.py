"""Consistency model by distillation (Song et al. 2023, Algorithm 2) from the EDM model.

Run (after configs/edm.py has trained into /tmp/edm):
    python -m gm_jax.main --config=configs/consistency.py --workdir=/tmp/consistency \
        --config.teacher_workdir=/tmp/edm

Distillation rather than consistency training (configs/consistency_training.py, no
teacher): on the digits, 1,500 distillation steps reach FID 7.3 at one step where 1,000
training steps reach 27.3 (the issue's target is 13.0); the price is a trained EDM run
first (configs/edm.py, ~6 min here), which the student also starts from.

The student is the teacher's U-Net started from the teacher's parameters; the target of
each pair of neighbouring levels on a fixed 18-level Karras grid is the student at the
point one Heun step of the teacher's probability-flow ODE reaches, under `stop_gradient`
(pseudo-Huber distance, iCT's log-normal pair distribution and `1 / (sigma_{i+1} -
sigma_i)` weight, as configs/consistency_training.py). Samples in 1, 2 and 4 network
evaluations; eval.json's fid_by_steps, fid (1 step), fid_floor, class_coverage.

Measured (seed 0, 1,500 steps, ~4 min wall on the idle 2-core CPU, 7.5 train steps/s; the
teacher: configs/edm.py with `--config.ema_decay=0.99`, best validation at step 2,400, Heun-18
FID 6.90): FID 7.31 at 1 step, 7.28 at 2, 7.20 at 4 (real-data floor 6.00; 1,293 samples
from the same initial noise for every step count; the EMA weights), 10 of 10 classes;
samples/s 3,611 at 1 step, 1,579 at 2, 910 at 4 (batches of 512). The target FID_1 <= 2 x
floor + 1 = 13.0 is met (configs/consistency_training.py, no teacher: 27.3), and
FID_2 < FID_1, by 0.02 on this draw; on two other draws (a script, 2-step level 1.43)
8.24 -> 8.08 and 7.45 -> 7.07, the teacher's Heun-18 from the same noise 7.50. Scored with
a separate noise draw per step count (before `fid_by_steps` shared one): 7.31 / 10.53 /
8.40, the FID of 1,293 samples moving by ~1-3 between draws. Also measured (separate
draws): learning rate 2e-4 without EMA 8.69 / 10.58 / 8.78; 2e-4 with EMA 0.999 for 3,000
steps 7.64 / 10.20 / 8.18. Against the teacher's 40-step Heun ODE from the same noisy test
images, the student's RMS error (data in [-1, 1], one level = 0.125) is 0.010 / 0.031 /
0.082 / 0.131 / 0.136 at sigma 0.1 / 0.5 / 1.43 / 5 / 40, the teacher's own denoiser's
0.023 / 0.092 / 0.225 / 0.424 / 0.447: distillation made it consistent along the ODE.
"""

from configs import common


def get_config():
  config = common.likelihood_config(
    model='consistency',
    dataset='digits',
    batch_size=64,
    num_train_steps=1500,
    learning_rate=1e-3,
    warmup_steps=100,
    grad_clip_norm=100.0,
  )
  config.ema_decay = 0.999
  config.teacher_workdir = '/tmp/edm'
  # sigma_max as the teacher samples (configs/edm.py): its log-normal training levels rarely
  # reach 80
  config.update(sigma_min=0.002, sigma_max=40.0, sigma_data=0.5, rho=7.0, cd_scales=18)
  config.update(ct_p_mean=-1.1, ct_p_std=2.0)
  config.huber_c = 0.0  # 0.00054 sqrt(64)
  config.sample_rho = 0.0  # 0: rho
  config.update(sample_steps=1, fid_steps=(1, 2, 4), fid_num_samples=0, sample_batch_size=512)
  return config
