"""What every part of one trainer run shares (`loop._prepare` builds it once)."""

from __future__ import annotations

import dataclasses
from typing import Any

from gm_jax.train.family import Family


@dataclasses.dataclass
class RunSetup:
  """What every part of a run shares (built once by `_prepare`)."""

  config: Any
  workdir: str
  family: Family
  splits: Any
  dp: Any
  is_primary: bool
  seed: int
  steps_per_loop: int
  resident: bool
  group_devices: int  # this process's devices (the split `put_batch` makes)
  eval_key: Any
  sample_key: Any
  has_validation: bool
  save_config: bool = False  # config.json is due once a checkpoint under it is committed
