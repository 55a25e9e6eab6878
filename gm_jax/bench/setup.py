"""The one place where the bench reaches a family: `trainer_inputs`.

Everything else in `gm_jax.bench` takes `(config, family, splits)` as this function
returns them, so swapping how a family is found (a family registry's `setup(config)`)
changes this module only.
"""
from __future__ import annotations

from gm_jax.bench.configs import BenchError


class _Captured(Exception):
  """Carries what a family's `train_and_evaluate` hands to `loop.run`."""

  def __init__(self, config, family, splits):
    super().__init__('captured')
    self.config, self.family, self.splits = config, family, splits


def trainer_inputs(config, workdir: str):
  """`(config, family, splits)` as the trainer would train them; nothing is trained.

  Today's way: `config.model`'s `train_and_evaluate` runs until it calls
  `gm_jax.train.loop.run`, which is replaced for that call and restored after (the
  family's data loading, config completion and closed-form pre-fits run, its training
  does not). `workdir` is where that run may write; nothing is left to read there.

  Raises:
    BenchError: the family's `train_and_evaluate` returned without calling `loop.run`.
  """
  from gm_jax.train import loop  # pylint: disable=g-import-not-at-top
  from gm_jax.train import registry  # pylint: disable=g-import-not-at-top
  train_and_evaluate = registry.trainer_for(config.model)

  def capture(cfg, unused_workdir, family, splits):
    raise _Captured(cfg, family, splits)

  run = loop.run
  loop.run = capture
  try:
    train_and_evaluate(config, workdir)
  except _Captured as c:
    return c.config, c.family, c.splits
  finally:
    loop.run = run
  raise BenchError(f'config.model {config.model!r}: its train_and_evaluate returned '
                   'without calling gm_jax.train.loop.run; only the generic trainer is timed')
