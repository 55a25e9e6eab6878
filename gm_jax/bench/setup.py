"""The one place where the bench reaches a family: `trainer_inputs`.

Everything else in `gm_jax.bench` takes `(config, family, splits)` as this function
returns them: the same `gm_jax.families.setup` that `python -m gm_jax.main` trains
through, so the bench times what the trainer gets (the naive Bayes full-batch fit, the
binarised VAEs, the families' filled-in defaults) and replaces nothing.
"""

from __future__ import annotations


def trainer_inputs(config, workdir: str):
  """`(config, family, splits)` as the trainer would train them; nothing is trained.

  Args:
    config: a model config (`config.model` names a registered family's model).
    workdir: unused (kept so the bench's callers need not change); nothing is written.
  """
  del workdir
  from gm_jax import families

  return families.setup(config)
