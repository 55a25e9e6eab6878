"""A family's datasets under the config's input settings (`gm_jax.data.load_splits`).

    config.input_pipeline = 'auto'   # 'auto' | 'memory' | 'stream'
    config.input_memory_max_bytes    # 'auto' streams a tfds training split above this
    config.shuffle_buffer_size       # rows of the streamed shuffle

'memory': every process reads the training split into memory and the batch of step
`s` is `gm_jax.data.batch_at_step` (the order the test numbers were measured with).
'stream': each process streams its own part through tf.data (`gm_jax.data.stream`).
'auto' streams only a tfds dataset whose training rows exceed
`input_memory_max_bytes`; the embedded datasets (`digits`, `photo_patches`,
`pydoc_chars`) and exported files are always in memory. Defaults:
`gm_jax.train.defaults.TRAINING`.
"""

from __future__ import annotations

from gm_jax import data as gm_data
from gm_jax.train import defaults


def check(config) -> str:
  """`config.input_pipeline` (its default where absent), checked; errors name the field."""
  defaults.check_one_of(defaults.complete(config), 'input_pipeline', gm_data.INPUT_PIPELINES)
  return defaults.get(config, 'input_pipeline')


def load_splits(config) -> gm_data.Splits:
  """`gm_data.load_splits` of `config.dataset` with the config's data settings."""
  return gm_data.load_splits(
      config.dataset, data_dir=config.data_dir,
      validation_fraction=defaults.get(config, 'validation_fraction'),
      input_pipeline=check(config),
      memory_max_bytes=int(defaults.get(config, 'input_memory_max_bytes')))


def require_memory(config, why: str) -> None:
  """A ValueError where `config.input_pipeline='stream'` for a family that cannot stream.

  Args:
    why: what needs the training split in memory, e.g. 'naive Bayes fits the whole
      training split in one step'.
  """
  if check(config) == 'stream':
    raise ValueError(f"config.input_pipeline='stream' is not supported here: {why}. "
                     "Use 'memory' or 'auto'.")
