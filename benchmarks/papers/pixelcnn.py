"""van den Oord et al. 2016 (Pixel Recurrent Neural Networks), Table 4: binarised MNIST.

    python benchmarks/papers/pixelcnn.py [--steps N] [--workdir ~/gm_jax_papers]

The paper reports an exact test NLL of 81.30 nats for PixelCNN on the binarised MNIST
of Salakhutdinov & Murray 2008 / Larochelle & Murray 2011, a fixed (static)
binarisation. Here: `mnist_offline` statically binarised (`config.binarize='static'`,
train / validation / test drawn once with `np.random.default_rng([0, i])`), so the
test set is a different draw from the paper's; the likelihood is exact (no bound).
Target on a CPU budget of a few hours: report the curve (`metrics.jsonl`, `loss.png` in
the workdir) and the best value; goal within 2 nats.

Needs the `pixelcnn` family (gm_jax/families/autoregressive.py) to be registered and to
apply `config.binarize`; the script says so and stops otherwise.
"""

import _common

ROWS = [
    _common.Row(
        key='pixelcnn', label='PixelCNN', paper='81.30 nats', config='pixelcnn',
        overrides=dict(dataset='mnist_offline', binarize='static', binarize_seed=0,
                       channels=64, num_layers=7, kernel_size=3, dropout_rate=0.0,
                       batch_size=32, num_train_steps=100_000, learning_rate=1e-3,
                       weight_decay=0.0, log_every=500, eval_every=5000,
                       checkpoint_every=5000, progress_bar=False),
        metric=_common.nats(),
        protocol='exact test NLL, statically binarised mnist_offline (own draw, seed 0)'),
]


def main():
  args = _common.parser(__doc__.split('\n\n')[0]).parse_args()
  records = _common.run_rows('pixelcnn', ROWS, args)
  print(_common.markdown('van den Oord et al. 2016, binarised MNIST', records))


if __name__ == '__main__':
  main()
