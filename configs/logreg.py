"""L2-regularised multinomial logistic regression on the embedded digits.

Run:
    python -m gm_jax.main --config=configs/logreg.py --workdir=/tmp/logreg

Pixels are scaled to [0, 1]; Adam on the mean cross-entropy + (l2 / 2)|W|^2
through the generic trainer (best step on validation log-loss).

Expected (measured with this config: train = first 1,293 digits, validation =
next 144, test = last 360): test accuracy 0.903, log-loss 0.355 nats, ECE 0.053
(best validation step 250), about 25 s on a 2-core CPU including TF start-up.
"""

import ml_collections


def get_config():
  config = ml_collections.ConfigDict()
  config.model = 'logreg'
  config.dataset = 'digits'
  # None = tfds default (~/tensorflow_datasets); a typed placeholder so that
  # --config.data_dir=... can override it on the command line.
  config.data_dir = ml_collections.config_dict.placeholder(str)
  config.validation_fraction = 0.1  # last 10% of train selects the best step

  config.l2 = 1e-3  # on the mean loss; sklearn's C = 1 / (l2 * N_train)

  config.batch_size = 128
  config.num_train_steps = 1500
  config.learning_rate = 0.05
  config.lr_schedule = 'constant'
  config.seed = 0

  config.log_every = 100
  config.max_train_seconds = 0.0  # > 0: stop training after this much wall time (resumable)
  config.eval_every = 250
  config.checkpoint_every = 500
  config.max_to_keep = 3
  config.parallel = 'none'
  return config
