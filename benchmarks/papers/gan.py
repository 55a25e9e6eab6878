"""GANs on MNIST: Frechet distance in the features of the project's own MNIST classifier.

    python benchmarks/papers/gan.py [--rows minimax,non_saturating,lsgan] [--seeds 0,1,2]

This is not Inception FID: the features are the penultimate layer of a classifier that
`gm_jax.evaluate.fid` trains deterministically on `mnist_offline`'s training split, so
numbers compare only within this table. Reported per GAN loss over 3 seeds: the mean
and spread of the distance between generated samples and the 10,000 test images, the
real-data floor (train vs test images in the same features) and the classifier's test
accuracy. There is no paper value in this unit; the paper column names the loss.

Needs the `dcgan` family (gm_jax/families/gan.py).
"""

import statistics

import _common

LOSSES = {'minimax': 'Goodfellow et al. 2014 (minimax)',
          'non_saturating': 'Goodfellow et al. 2014 (non-saturating)',
          'lsgan': 'Mao et al. 2017 (least squares)'}


def _fid(ev):
  return (f"{ev['fid']:.2f} (floor {ev['fid_floor']:.2f}, classifier test acc "
          f"{ev['fid_classifier_test_accuracy']:.4f})")


def rows(seeds):
  out = []
  for loss, paper in LOSSES.items():
    for seed in seeds:
      out.append(_common.Row(
          key=f'{loss}_s{seed}', label=f'DCGAN, {loss}, seed {seed}', paper=paper,
          config='dcgan',
          overrides=dict(dataset='mnist_offline', gan_loss=loss, seed=seed,
                         num_train_steps=20_000, log_every=500, checkpoint_every=5000,
                         progress_bar=False),
          metric=_fid,
          protocol='Frechet distance, project MNIST classifier features (not Inception)'))
  return out


def expand_rows(rows_arg: str, seeds) -> str:
  """`--rows` with each GAN loss name replaced by its rows at every seed, in order.

  E.g. 'lsgan,minimax_s1' with seeds (0, 1) -> 'lsgan_s0,lsgan_s1,minimax_s1'; row keys
  pass through (an unknown one is then named by `_common.selected`).
  """
  if not rows_arg:
    return rows_arg
  return ','.join(','.join(f'{r}_s{s}' for s in seeds) if r in LOSSES else r
                  for r in rows_arg.split(','))


def main():
  p = _common.parser(__doc__.split('\n\n')[0])
  p.add_argument('--seeds', default='0,1,2')
  args = p.parse_args()
  seeds = [int(s) for s in args.seeds.split(',')]
  args.rows = expand_rows(args.rows, seeds)
  records = _common.run_rows('gan', rows(seeds), args)
  print(_common.markdown('GANs on MNIST (classifier-feature Frechet distance)', records))
  print()
  print('| loss | mean FD over seeds | min | max |')
  print('|---|---|---|---|')
  for loss in LOSSES:
    fds = [r['eval']['fid'] for r in records if r['row'].startswith(loss + '_s')]
    if fds:
      print(f'| {loss} | {statistics.mean(fds):.2f} | {min(fds):.2f} | {max(fds):.2f} |')


if __name__ == '__main__':
  main()
