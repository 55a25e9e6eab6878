"""GAN stability: the three DCGAN objectives over several seeds on digits.

    python benchmarks/gan_stability.py --out benchmarks/results/gan_stability \
        [--steps 3000] [--seeds 0,1,2,3,4] [--losses minimax,non_saturating,lsgan]

Trains `configs/dcgan.py` once per (loss, seed) with `config.gan_loss` set to
`minimax` (Goodfellow et al. 2014, eq. 1: the saturating generator loss),
`non_saturating` (the same paper, Sec. 3) or `lsgan` (Mao et al. 2017), and
reports per variant the mean and standard deviation over seeds of the final FID
(in the features of the project's digits classifier, against the 360 test
digits), the real-data floor (train vs test, identical for every run), class
coverage and entropy of the samples, and how many runs collapsed (coverage < 5 of
10 classes) or stopped on a non-finite loss. Instability is reported, not hidden:
there is no best-of-seeds and no checkpoint selection (the last parameters are
evaluated).

Writes `results.json` (every run and the per-variant summary) into `--out` and
prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..'))

from gm_jax import _xla

_xla.configure_cpu_flags()

import numpy as np

from gm_jax import families
from gm_jax.demo import load_config
from gm_jax.train import loop

COLLAPSE_BELOW = 5  # classes


def summarise(runs: list[dict]) -> dict:
  """Per-loss mean/std of FID and coverage, and the count of collapsed runs."""
  out = {}
  for name in dict.fromkeys(r['gan_loss'] for r in runs):
    rs = [r for r in runs if r['gan_loss'] == name]
    ok = [r for r in rs if r.get('fid') is not None]
    fids = np.array([r['fid'] for r in ok])
    cov = np.array([r['class_coverage'] for r in ok])
    out[name] = {
      'runs': len(rs),
      'fid_mean': float(fids.mean()) if len(ok) else None,
      'fid_std': float(fids.std(ddof=1)) if len(ok) > 1 else None,
      'fid_min': float(fids.min()) if len(ok) else None,
      'fid_max': float(fids.max()) if len(ok) else None,
      'coverage_mean': float(cov.mean()) if len(ok) else None,
      'entropy_mean': float(np.mean([r['class_entropy_nats'] for r in ok])) if ok else None,
      'collapsed': int(np.sum(cov < COLLAPSE_BELOW)),
      'non_finite': len(rs) - len(ok),
      'train_steps_per_s': float(np.mean([r['train_steps_per_s'] for r in ok])) if ok else None,
    }
  return out


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--out', default='benchmarks/results/gan_stability')
  parser.add_argument('--steps', type=int, default=3000)
  parser.add_argument('--seeds', default='0,1,2,3,4')
  parser.add_argument('--losses', default='minimax,non_saturating,lsgan')
  parser.add_argument('--data_dir', default=None)
  args = parser.parse_args(argv)
  config_path = os.path.join(
    os.path.dirname(os.path.abspath(__file__)), '..', 'configs', 'dcgan.py'
  )
  os.makedirs(args.out, exist_ok=True)
  runs = []
  t_start = time.time()
  for loss in args.losses.split(','):
    for seed in (int(s) for s in args.seeds.split(',')):
      config = load_config(config_path)
      config.gan_loss, config.seed, config.num_train_steps = loss, seed, args.steps
      config.checkpoint_every = args.steps
      config.progress_bar = False
      if args.data_dir:
        config.data_dir = args.data_dir
      workdir = os.path.join(args.out, 'runs', f'{loss}_seed{seed}')
      t0 = time.time()
      try:
        result = families.train_and_evaluate(config, workdir)
      except loop.NonFiniteLossError as e:
        result = {'error': str(e)}
      result.update(gan_loss=loss, seed=seed, seconds=round(time.time() - t0, 1))
      runs.append(result)
      print(
        json.dumps(
          {
            k: result.get(k)
            for k in (
              'gan_loss',
              'seed',
              'fid',
              'fid_floor',
              'class_coverage',
              'class_entropy_nats',
              'train_steps_per_s',
              'seconds',
              'error',
            )
          }
        ),
        flush=True,
      )
  summary = summarise(runs)
  floor = next((r['fid_floor'] for r in runs if 'fid_floor' in r), None)
  lines = [
    f'DCGAN on digits, {args.steps} steps, seeds {args.seeds}; FID floor (real train '
    f'vs test) {floor:.2f}'
    if floor is not None
    else '',
    '',
    '| loss | runs | FID mean | FID std | FID min-max | coverage | entropy (nats) | '
    'collapsed (<5 classes) | non-finite |',
    '|' + '---|' * 9,
  ]
  for name, s in summary.items():
    fmt = lambda v: '-' if v is None else f'{v:.2f}'
    lines.append(
      f'| {name} | {s["runs"]} | {fmt(s["fid_mean"])} | {fmt(s["fid_std"])} | '
      f'{fmt(s["fid_min"])}-{fmt(s["fid_max"])} | {fmt(s["coverage_mean"])} | '
      f'{fmt(s["entropy_mean"])} | {s["collapsed"]} | {s["non_finite"]} |'
    )
  table = '\n'.join(lines)
  with open(os.path.join(args.out, 'results.json'), 'w') as f:
    json.dump(
      {
        'steps': args.steps,
        'seeds': args.seeds,
        'fid_floor': floor,
        'summary': summary,
        'runs': runs,
        'seconds': round(time.time() - t_start, 1),
      },
      f,
      indent=2,
      sort_keys=True,
    )
  print(table)
  return 0


if __name__ == '__main__':
  sys.exit(main())
