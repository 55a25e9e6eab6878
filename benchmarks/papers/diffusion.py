"""Diffusion and flow matching on 8-bit MNIST, beside the flows: the anchor is FFJORD's 0.99.

    python benchmarks/papers/diffusion.py [--rows vdm,flow_matching] [--steps N]

Both rows give test bits/dim of the 256-level images, the same column as RealNVP (1.06),
Glow (1.05) and FFJORD (0.99 bits/dim, Grathwohl et al. 2019, Table 2: a continuous-time
flow, the papers' MNIST anchor for this family):
* `vdm`: the variational diffusion model's continuous-time bound (Kingma et al. 2021)
  with its discrete decoder at t = 0, so the bound is on the discrete images directly
  (`bound: 'elbo'`); the VDM paper has no MNIST row. The log-SNR runs from
  13.3 to -5 (VDM's CIFAR-10 end points: with 256 levels the decoder needs a high SNR),
  Fourier features 2^6 pi and 2^7 pi of z (VDM appendix B.3).
* `flow_matching`: conditional flow matching on the OT path to uniformly dequantised
  images; the log-likelihood through the probability-flow ODE with Hutchinson's trace
  estimator (784 dimensions; stated in `bound`), RK4 with fixed steps, a dequantisation
  bound as for the flows.
A 28x28 U-Net of 64 / 128 / 128 channels (two halvings: 28 -> 14 -> 7), attention at 7x7.

Not run yet on this build (a 28x28 U-Net needs an accelerator lease for a useful budget);
papers.md gives a number only for rows that were run.

Needs the `diffusion` and `flow_matching` families (gm_jax/families/diffusion.py).
"""

import _common

_DATA = dict(dataset='mnist_offline', progress_bar=False, log_every=500, eval_every=5000,
             checkpoint_every=5000, weight_decay=0.0, batch_size=128, num_train_steps=100_000,
             channels=64, channel_mults=(1, 2, 2), num_res_blocks=2, attention=True,
             dropout_rate=0.1, loss_group_size=16, fid_num_samples=10_000,
             timing_samplers=('ddim:50',))

ROWS = [
    _common.Row(key='vdm', label='VDM (continuous-time bound)', paper='0.99 bits/dim (FFJORD)',
                config='diffusion',
                overrides=dict(_DATA, log_snr_min=-5.0, log_snr_max=13.3,
                               fourier_exponents=(6, 7), eval_bound_samples=4,
                               timing_samplers=('ddpm:1000', 'ddim:50')),
                metric=_common.bits_per_dim(),
                protocol='test bits/dim, 8-bit, VDM bound with the discrete decoder'),
    _common.Row(key='flow_matching', label='Flow matching (OT path)',
                paper='0.99 bits/dim (FFJORD)', config='flow_matching',
                overrides=dict(_DATA, likelihood_solver='rk4', likelihood_steps=32,
                               likelihood_batch_size=100, timing_samplers=('heun:25',)),
                metric=_common.bits_per_dim(),
                protocol='test bits/dim, 8-bit, uniform dequantisation, probability-flow '
                         "ODE with Hutchinson's trace (bound in expectation)"),
]


def main():
  args = _common.parser(__doc__.split('\n\n')[0]).parse_args()
  records = _common.run_rows('diffusion', ROWS, args)
  print(_common.markdown('Diffusion and flow matching on 8-bit MNIST', records))


if __name__ == '__main__':
  main()
