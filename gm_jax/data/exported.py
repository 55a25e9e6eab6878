"""Datasets exported to one `.npz` file, readable without TensorFlow.

Machines that train but have no TensorFlow (a GPU box with only JAX, say) read the
splits that `gm_jax.data.export.export_splits` wrote on a machine with tfds:

    python -m gm_jax.data.export --dataset mnist_offline --data_dir ~/tensorflow_datasets

writes `DATA_DIR/exported/mnist_offline.npz`. Copy that `exported/` folder into a
`data_dir` on the other machine: `load_split(name, split, data_dir=...)` reads the
file when it is there (and tfds otherwise). The file holds plain arrays and a JSON
index; it is read with `allow_pickle=False`, so nothing in it can run code.
"""

from __future__ import annotations

import json
import os
from typing import Any
import zipfile

import numpy as np

from gm_jax.data import checks

FORMAT = 'gm_jax.exported/1'
_INDEX = '__index__'


def exported_path(name: str, data_dir: str | os.PathLike[str]) -> str:
  """`DATA_DIR/exported/<name>.npz` (a tfds version suffix is dropped)."""
  return os.path.join(os.fspath(data_dir), 'exported', name.split(':', 1)[0] + '.npz')


def write(path: str, name: str, splits: dict[str, dict[str, np.ndarray]]) -> None:
  """Writes `{split string: {field: array}}` of dataset `name` to `path` (.npz).

  Raises:
    ValueError: an array of dtype object (it could only be stored pickled).
  """
  arrays: dict[str, Any] = {}
  index: dict[str, Any] = {'format': FORMAT, 'dataset': name, 'splits': {}}
  for split, fields in splits.items():
    index['splits'][split] = {}
    for field, value in fields.items():
      value = np.asarray(value)
      if value.dtype == object:
        raise ValueError(
          f'{name} {split!r} field {field!r} has dtype object; only numeric arrays can be exported.'
        )
      key = f'a{len(arrays)}'
      arrays[key] = value
      index['splits'][split][field] = key
  arrays[_INDEX] = np.asarray(json.dumps(index))
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  tmp = path + '.tmp.npz'
  np.savez_compressed(tmp, **arrays)
  os.replace(tmp, path)  # never a half-written file under the final name


def read_split(path: str, name: str, split: str) -> dict[str, np.ndarray]:
  """One split of dataset `name` from an exported file (see `write`).

  Raises:
    ValueError: the file is not a readable export, is of another dataset, or does not
      hold `split` (the message lists what it holds and how to re-export); or its
      arrays break the dataset's declared shape, dtype or value range
      (`checks.check_arrays`: the message names the file, field and value).
  """
  try:
    with np.load(path, allow_pickle=False) as f:
      index = json.loads(str(f[_INDEX][()]))
      if index.get('format') != FORMAT:
        raise ValueError(f'format {index.get("format")!r}, expected {FORMAT!r}')
      if index.get('dataset', '').split(':', 1)[0] != name.split(':', 1)[0]:
        raise ValueError(f'it holds dataset {index.get("dataset")!r}, not {name!r}')
      if split not in index['splits']:
        raise ValueError(
          f'it has no split {split!r} (it has: {", ".join(sorted(index["splits"]))})'
        )
      arrays = {field: f[key] for field, key in index['splits'][split].items()}
  except (OSError, KeyError, zipfile.BadZipFile, json.JSONDecodeError, ValueError) as e:
    raise ValueError(
      f'cannot read exported dataset {path!r}: {e}. Re-export it where tfds can read '
      f'the data: python -m gm_jax.data.export --dataset {name} --data_dir ...'
    ) from e
  # Checked once, where the data enter: a file of other values would train silently.
  from gm_jax import data as gm_data  # pylint: disable=g-import-not-at-top (a cycle)

  checks.check_arrays(arrays, gm_data.get_info(name), source=path, split=split)
  return arrays
