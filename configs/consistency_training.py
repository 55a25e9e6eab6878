"""Consistency model by improved consistency training (Song & Dhariwal 2023) on the digits.

Run:
    python -m gm_jax.main --config=configs/consistency_training.py --workdir=/tmp/consistency

No teacher: the U-Net of configs/flow_matching.py as F in f = c_skip x + c_out F, the
pseudo-Huber consistency loss between neighbouring levels of a Karras grid that doubles
from 10 to 80 intervals in four equal stages, level pairs from iCT's log-normal
(P_mean -1.1, P_std 2.0). Samples in 1, 2 and 4 network evaluations (multistep
consistency sampling); eval.json's fid_by_steps, fid (1 step), fid_floor, class_coverage.

Measured (seed 0, 1,000 steps; idle 2-core CPU, 7.7 train steps/s, ~3 min for the whole
run): FID 27.3 at 1 step, 18.6 at 2, 16.7 at 4 (real-data floor 6.00; 1,293 samples from
the same initial noise for every step count), 10 of 10 classes; samples/s 1,909 at 1 step,
864 at 2, 493 at 4 (batches of 512). The target FID_1 <= 2 x floor + 1 = 13.0 is missed by
14.3; FID_2 < FID_1 holds. The first measurement (load ~25, 1.1 train steps/s, a separate
noise draw per step count) gave 27.3 / 21.3 / 19.3; 300 steps (grid 10 -> 40) 44.3 / 30.5
/ 30.1: the FID still falls fast with training (iCT trains 400k steps). Distillation from
an EDM run reaches the target in 1,500 steps: configs/consistency.py (FID 7.31 at 1 step).
"""

from configs import common


def get_config():
  config = common.likelihood_config(
    model='consistency',
    dataset='digits',
    batch_size=64,
    num_train_steps=1000,
    learning_rate=1e-3,
    warmup_steps=100,
    grad_clip_norm=100.0,
  )
  config.update(
    channels=32, channel_mults=(1, 2), num_res_blocks=1, attention=False, dropout_rate=0.1
  )
  config.update(sigma_min=0.002, sigma_max=80.0, sigma_data=0.5, rho=7.0)
  # the grid doubles from s0 to s1 over the run (iCT: 10 -> 1280 over 400k steps)
  config.update(ct_p_mean=-1.1, ct_p_std=2.0, ct_initial_scales=10, ct_final_scales=80)
  config.huber_c = 0.0  # 0.00054 sqrt(64)
  config.update(sample_steps=1, fid_steps=(1, 2, 4), fid_num_samples=0, sample_batch_size=512)
  return config
