"""Neural spline flow (RQ-NSF (C): Glow's multi-scale flow with spline couplings) on the digits.

Run:
    python -m gm_jax.main --config=configs/nsf.py --workdir=/tmp/nsf

test_bpd: the uniform-dequantisation bound of configs/glow.py in bits/dim of the
17-level data (10 noise draws per test image).

Measured (2,000 steps, one seed, digits test split; helper run through the flow family):
test 1.993 bits/dim with 16 bins (8 bins: 2.007; layer='autoregressive' with 8 bins:
2.069); RealNVP's config: 2.072-2.076. Rerun of this config through the shipped family
cut at step 400 for CPU (validation 2.188 there), not re-measured to the end.
"""

from configs import common


def get_config():
  config = common.likelihood_config(
    model='nsf',
    dataset='digits',
    batch_size=64,
    num_train_steps=2000,
    learning_rate=1e-3,
    warmup_steps=200,
    grad_clip_norm=100.0,
  )
  config.update(eval_dequant_samples=10, sample_temperature=1.0)
  config.layer = 'coupling'  # or 'autoregressive' (MADE spline steps, as configs/maf.py)
  config.update(num_bins=16, tail_bound=3.0)
  config.update(num_scales=2, steps_per_scale=4, hidden=64, num_blocks=0)
  config.dropout_rate = 0.3  # in the coupling networks
  config.logit_alpha = 0.05
  # layer='autoregressive' only: its steps, their MADEs and the order between them.
  config.update(num_layers=10, num_hidden_layers=2, permutation='random', actnorm=True)
  return config
