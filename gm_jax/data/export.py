"""Writes datasets read through tfds to `exported/<name>.npz` (see `gm_jax.data.exported`).

python -m gm_jax.data.export --dataset mnist_offline --data_dir ~/tensorflow_datasets
"""

from __future__ import annotations

import argparse
import os

from gm_jax.data import catalogue
from gm_jax.data import exported
from gm_jax.data import reading


def export_splits(
  name: str,
  splits: list[str],
  *,
  data_dir: str | os.PathLike[str] | None = None,
  out: str | None = None,
) -> str:
  """Reads `splits` of `name` through tfds and writes them to one file; returns its path.

  Args:
    name: a dataset of `gm_jax.data.get_info`.
    splits: tfds split strings, stored under exactly these strings.
    data_dir: tfds data directory to read (and the default place to write).
    out: the file to write (default `exported_path(name, data_dir)`).
  """
  if out is None:
    if data_dir is None:
      raise ValueError('export_splits needs data_dir or out')
    out = exported.exported_path(name, data_dir)
  arrays = {s: reading.load_split(name, s, data_dir=data_dir, use_exported=False) for s in splits}
  exported.write(out, name, arrays)
  return out


def main(argv=None) -> None:
  p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  p.add_argument('--dataset', required=True)
  p.add_argument('--data_dir', default=None)
  p.add_argument(
    '--splits',
    default=None,
    help='comma-separated tfds splits (default: the ones load_splits reads)',
  )
  p.add_argument('--out', default=None)
  args = p.parse_args(argv)
  splits = args.splits.split(',') if args.splits else catalogue.split_names(args.dataset)
  print(export_splits(args.dataset, splits, data_dir=args.data_dir, out=args.out))


if __name__ == '__main__':
  main()
