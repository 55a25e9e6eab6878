"""Arrays checked where they enter: the dataset's declared shape, dtype and value range.

`load_split` hands every family `{'image': uint8 [N, H, W, C] in [0, num_levels)}` (or
`'tokens'`: int32 `[N, T]`) and `'label'`: int32 `[N]` in `[0, num_classes)`. Data
that break this (an exported file with pixel values 0-240 for a 17-level dataset)
would train silently to meaningless numbers; `check_arrays` refuses them once, naming
the source, the field and the offending value.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

# The dtype `load_split` returns for each field.
DTYPES = {'image': np.dtype(np.uint8), 'tokens': np.dtype(np.int32), 'label': np.dtype(np.int32)}


def check_arrays(arrays: Mapping[str, Any], info, *, source: str, split: str) -> None:
  """Raises ValueError unless `arrays` are a split of the dataset `info` describes.

  Args:
    arrays: `{field: array}` as `load_split` returns them.
    info: the dataset's `DatasetInfo` (`kind`, `shape`, `num_levels`, `num_classes`).
    source: where the arrays came from (a file path), named in the error.
    split: the split string, named in the error.

  Raises:
    ValueError: a field is missing, or has another dtype, per-example shape or
      number of examples, or a value outside its range; the message names `source`,
      `split`, the field and the first offending value with its example index.
  """
  data_field = 'image' if info.kind == 'image' else 'tokens'
  ranges = {data_field: (info.shape, info.num_levels)}
  if info.num_classes is not None:
    ranges['label'] = ((), info.num_classes)
  where = f'{source}: split {split!r}'
  num = None
  for field, (shape, high) in ranges.items():
    if field not in arrays:
      raise ValueError(
        f'{where} has no field {field!r} (it has: '
        f'{", ".join(sorted(arrays)) or "none"}); {info.name} needs it.'
      )
    value = np.asarray(arrays[field])
    if value.dtype != DTYPES[field]:
      raise ValueError(
        f'{where} field {field!r} has dtype {value.dtype}; {info.name} declares {DTYPES[field]}.'
      )
    if value.shape[1:] != tuple(shape) or value.ndim != len(shape) + 1:
      raise ValueError(
        f'{where} field {field!r} has examples of shape {value.shape[1:]}; '
        f'{info.name} declares {tuple(shape)}.'
      )
    if num is not None and len(value) != num:
      raise ValueError(
        f'{where} field {field!r} has {len(value)} examples, {data_field!r} has {num}.'
      )
    num = len(value)
    if value.size:
      bad = (value < 0) | (value >= high)
      if bad.any():
        flat = int(np.flatnonzero(bad.reshape(-1))[0])
        offending = value.reshape(-1)[flat]
        example = flat // max(int(np.prod(shape)), 1)
        raise ValueError(
          f'{where} field {field!r} holds the value {offending} (example {example}); '
          f'{info.name} declares values in [0, {high}) '
          f'({"num_levels" if field != "label" else "num_classes"} = {high}).'
        )
