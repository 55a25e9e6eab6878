"""The shared defaults every `configs/<name>.py` starts from.

As the Flax ImageNet example's variants start from `configs/default.py`, a config is

    from configs import common

    def get_config():
      config = common.get_config(model='logreg', dataset='digits', batch_size=128,
                                 num_train_steps=1500, learning_rate=0.05)
      config.l2 = 1e-3  # a setting that needs a word of explanation: one per line
      config.update(log_every=100, eval_every=250)  # plain values, one topic a call
      return config

and a variant of another config starts from that one instead (`configs/cvae.py` from
`configs/vae.py`, `configs/glow_photos.py` from `configs/glow.py`).

The arguments of `get_config` are what every config chooses: the trainer has no default
for them. Every other training setting's default has one home,
`gm_jax.train.defaults.TRAINING`: `get_config` copies it, so the trainer sees the same
value whether a config sets it or leaves it out, and `--config.<name>=VALUE` overrides
any of them on the command line. The one field added here is the typed `data_dir`
placeholder. A config sets only the training values that differ from these, and its
family's own settings (`likelihood`, `dropout_rate`, ...), so that `--config.<name>`
works for them too.
"""

import ml_collections

from gm_jax.train import defaults


def get_config(
  *, model: str, dataset: str, batch_size: int, num_train_steps: int, learning_rate: float
) -> ml_collections.ConfigDict:
  """`defaults.TRAINING`, `data_dir` and the arguments: what a config starts from."""
  config = ml_collections.ConfigDict(dict(defaults.TRAINING))
  config.model = model
  config.dataset = dataset
  # tfds data_dir; None = tfds default (~/tensorflow_datasets). A typed placeholder, so
  # --config.data_dir=DIR works on the command line.
  config.data_dir = ml_collections.config_dict.placeholder(str)
  config.batch_size = batch_size
  config.num_train_steps = num_train_steps
  config.learning_rate = learning_rate
  return config


def likelihood_config(
  *, warmup_steps: int, grad_clip_norm: float, **required
) -> ml_collections.ConfigDict:
  """`get_config(**required)` with the training the likelihood models here share.

  A cosine learning-rate schedule after `warmup_steps` of linear warm-up, weight decay
  1e-4, gradients clipped at norm `grad_clip_norm`, and the validation metric every 100
  steps: the trainer keeps the parameters that are best on it, since a few thousand
  training examples overfit quickly. Two checkpoints are kept.
  """
  config = get_config(**required)
  config.update(
    lr_schedule='cosine',
    warmup_steps=warmup_steps,
    weight_decay=1e-4,
    grad_clip_norm=grad_clip_norm,
    eval_every=100,
    max_to_keep=2,
  )
  return config
