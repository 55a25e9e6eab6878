"""Consistency distillation (Song et al. 2023, Algorithm 2) from the EDM model, on the digits.

Run (after configs/edm.py has trained into /tmp/edm):
    python -m gm_jax.main --config=configs/consistency_distillation.py \
        --workdir=/tmp/consistency_distillation --config.teacher_workdir=/tmp/edm

The student is the teacher's U-Net started from the teacher's parameters; the target of
each pair of neighbouring levels on a fixed 18-level Karras grid is the student at the
point one Heun step of the teacher's probability-flow ODE reaches, under `stop_gradient`
(pseudo-Huber distance, iCT's log-normal pair distribution and `1 / (sigma_{i+1} -
sigma_i)` weight, as configs/consistency.py's training). Samples in 1, 2 and 4 network
evaluations; eval.json's fid_by_steps, fid (1 step), fid_floor, class_coverage.

Measured: see docs/families.md's table once trained (not yet recorded here).
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
