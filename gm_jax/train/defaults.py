"""The one home of every shared training setting's default.

`configs/common.py` starts every shipped config from `TRAINING`; a config built by hand
may leave any of these out, and the trainer reads them with `get(config, name)` (or
`complete(config)` once at its entry), never with a default of its own. A family's own
settings have their defaults in the family's module (`DEFAULTS`), completed the same way:

    config = defaults.complete(config, family_module.DEFAULTS)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import ml_collections

TRAINING: Mapping[str, Any] = {
  # data: the last `validation_fraction` of the train split selects the best parameters
  'validation_fraction': 0.1,
  # how training batches are read (gm_jax.train.input_pipeline): 'memory' (every process
  # holds the split; batches are functions of the step), 'stream' (each process streams
  # its own part through tf.data), 'auto' (stream a tfds training split of more than
  # input_memory_max_bytes per process; embedded and exported datasets stay in memory)
  'input_pipeline': 'auto',
  'input_memory_max_bytes': 8 << 30,
  'shuffle_buffer_size': 16_384,  # rows of the streamed shuffle ('stream' only)
  'seed': 0,
  'parallel': 'none',  # 'none' | 'pmap' | 'sharding'
  # examples per loss call, each with its own key (parallel.mean_over_groups)
  'loss_group_size': 1,
  # optimiser (optim.make_optimizer)
  'optimizer': 'adam',
  'lr_schedule': 'constant',  # 'constant' | 'cosine'
  'warmup_steps': 0,
  'weight_decay': 0.0,
  'grad_clip_norm': 0.0,
  'adam_b1': 0.9,
  'adam_b2': 0.999,
  # logging, validation, checkpoints
  'log_every': 50,
  'eval_every': 0,  # 0: at every checkpoint
  'checkpoint_every': 500,
  'max_to_keep': 3,
  'eval_batch_size': 256,  # validation and test batches
  'max_train_seconds': 0.0,  # > 0: stop after this much training time (resumable)
  'progress_bar': True,
  # how a run starts and resumes (loop.run)
  'init_from': '',
  'allow_resume_changes': False,
  # an exponential moving average of the parameters (gm_jax.nn.ema), updated on the device
  # after every optimiser step with the warm-up decay min(ema_decay, (1 + n) / (10 + n))
  # after n updates (the DDPM / score-SDE codes' `num_updates`); validation, the best
  # checkpoint, evaluation and samples then use the averaged weights. 0: off (no state)
  'ema_decay': 0.0,
  # samples.png and samples_per_s
  'num_samples': 64,
  # the accelerator side of the loop (loop.py): steps per dispatch, the training set
  # kept on the device up to this size, matmul precision of the training steps
  # ('default' | 'high' | 'highest'; evaluation always runs at 'highest')
  'steps_per_loop': 1,
  'device_data_max_bytes': 1 << 30,
  'matmul_precision': 'default',
  # 'float32' | 'bfloat16': activations and matmuls/convs of training steps
  # (gm_jax.nn.precision); parameters, optimiser state and evaluation stay float32
  'compute_dtype': 'float32',
}


def get(config, name: str):
  """`config[name]`, or its default from `TRAINING` (a KeyError names unknown fields)."""
  if name in config:
    return config[name]
  if name not in TRAINING:
    raise KeyError(f'config.{name} is not set and has no shared default')
  return TRAINING[name]


def complete(config, *family_defaults: Mapping[str, Any]) -> ml_collections.ConfigDict:
  """A copy of `config` with every missing field of `TRAINING` and `family_defaults`."""
  out = ml_collections.ConfigDict(config.to_dict() if hasattr(config, 'to_dict') else dict(config))
  with out.unlocked():
    for table in (TRAINING,) + family_defaults:
      for name, value in table.items():
        if name not in out:
          out[name] = value
  return out


def check_one_of(config, name: str, choices) -> None:
  """A ValueError naming `config.<name>` unless its value is one of `choices`."""
  value = config[name]
  if value not in tuple(choices):
    raise ValueError(f'config.{name} must be one of {tuple(choices)}; got {value!r}')
