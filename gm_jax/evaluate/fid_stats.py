"""Inception statistics of a dataset split, and FID between two `.npz` files (pytorch-fid's CLI).

    # real-data statistics of a tfds dataset (or `DATA_DIR/exported/<name>.npz`):
    python -m gm_jax.evaluate.fid_stats --weights pt_inception-2015-12-05-6726825d.pth \\
        --dataset cifar10 --split train --out cifar10_train.npz
    # FID between two files, each statistics (`mu`, `sigma`) or an image array:
    python -m gm_jax.evaluate.fid_stats --weights pt_inception-2015-12-05-6726825d.pth \\
        samples.npz cifar10_train.npz

An image file holds one uint8 array `[N, H, W, C]` (under `images`, `samples`, or as its
only array) on [0, 255], or on `[0, --num_levels)`. Statistics files hold `mu [2048]` and
`sigma [2048, 2048]` as pytorch-fid's `--save-stats` files do, so either tool's files can be
compared with the other's. Prints one JSON line. Files are read with `allow_pickle=False`.
"""

from __future__ import annotations

import argparse
import json
import os

import numpy as np

from gm_jax import data as gm_data
from gm_jax import parallel
from gm_jax.evaluate import feature_metrics
from gm_jax.evaluate import feature_stats
from gm_jax.evaluate import inception
from gm_jax.evaluate import sample_metrics

_IMAGE_KEYS = ('images', 'samples', 'image')


def read_images(path: str, *, num_levels: int = 256) -> np.ndarray:
  """The uint8 image array `[N, H, W, C]` of an `.npz` file, mapped to [0, 255]."""
  with np.load(path, allow_pickle=False) as f:
    keys = [k for k in _IMAGE_KEYS if k in f.files] or (f.files if len(f.files) == 1 else [])
    if not keys:
      raise ValueError(
        f'{path!r} holds neither mu/sigma nor one image array under '
        f'{_IMAGE_KEYS} (keys: {sorted(f.files)})'
      )
    images = f[keys[0]]
  if images.ndim != 4 or images.shape[-1] not in (1, 3) or images.dtype.kind not in 'ui':
    raise ValueError(
      f'{path!r}: images must be integer [N, H, W, 1 or 3]; got {images.dtype} {images.shape}'
    )
  return sample_metrics.to_uint8(images, num_levels)


def stats_of_file(
  path: str, params, *, num_levels: int = 256, batch_size: int = 200, mesh=None
) -> feature_stats.FeatureStats:
  """Statistics stored in `path`, or computed from the images it holds."""
  with np.load(path, allow_pickle=False) as f:
    is_stats = 'mu' in f.files and 'sigma' in f.files
  if is_stats:
    return feature_stats.load(path)
  return feature_stats.statistics(
    params, read_images(path, num_levels=num_levels), batch_size=batch_size, mesh=mesh
  )


def dataset_stats(
  params, *, dataset: str, split: str, data_dir: str | None = None, batch_size: int = 200, mesh=None
) -> feature_stats.FeatureStats:
  """Statistics of a dataset split (`gm_jax.data.load_split`: tfds, embedded or exported)."""
  info = gm_data.get_info(dataset)
  if info.kind != 'image':
    raise ValueError(f'--dataset {dataset!r} is not an image dataset ({info.kind})')
  images = gm_data.load_split(dataset, split, data_dir=data_dir)['image']
  return feature_stats.statistics(
    params, sample_metrics.to_uint8(images, info.num_levels), batch_size=batch_size, mesh=mesh
  )


def main(argv=None) -> dict:
  p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  p.add_argument('paths', nargs='*', help='two .npz files (statistics or images): print FID')
  p.add_argument('--weights', required=True, help=f"pytorch-fid's {inception.FID_WEIGHTS_FILE}")
  p.add_argument('--dataset', default=None, help='write the statistics of this dataset split')
  p.add_argument('--split', default='train')
  p.add_argument('--data_dir', default=None)
  p.add_argument('--out', default=None, help='.npz for --dataset statistics')
  p.add_argument('--num_levels', type=int, default=256, help='levels of the image files')
  p.add_argument('--batch_size', type=int, default=200)
  p.add_argument(
    '--parallel',
    default='sharding',
    choices=parallel.MODES,
    help="'none': one device; else every device",
  )
  args = p.parse_args(argv)
  if bool(args.dataset) == bool(args.paths):
    p.error('give either --dataset (and --out) or two .npz paths')
  params = inception.load_torch_weights(args.weights)
  mesh = parallel.eval_mesh(args.parallel)
  if args.dataset:
    if not args.out:
      p.error('--dataset needs --out')
    stats = dataset_stats(
      params,
      dataset=args.dataset,
      split=args.split,
      data_dir=args.data_dir,
      batch_size=args.batch_size,
      mesh=mesh,
    )
    feature_stats.save(args.out, stats)
    result = {
      'out': os.path.abspath(args.out),
      'dataset': args.dataset,
      'split': args.split,
      'count': stats.count,
    }
  else:
    if len(args.paths) != 2:
      p.error(f'FID needs two .npz paths; got {len(args.paths)}')
    a, b = (
      stats_of_file(path, params, num_levels=args.num_levels, batch_size=args.batch_size, mesh=mesh)
      for path in args.paths
    )
    result = {
      'fid': feature_metrics.frechet_distance(a.mu, a.sigma, b.mu, b.sigma),
      'counts': [a.count, b.count],
    }
  result.update(
    {
      'fid_network': feature_stats.NETWORK,
      'fid_resize': inception.RESIZE_RULE,
      'weights_sha256': feature_stats.weights_sha256(args.weights),
    }
  )
  print(json.dumps(result))
  return result


if __name__ == '__main__':
  main()
