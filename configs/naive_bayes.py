"""Naive Bayes on the embedded digits, fitted in closed form.

Run:
    python -m gm_jax.main --config=configs/naive_bayes.py --workdir=/tmp/naive_bayes

`nb_variant='categorical'` (default) models each pixel as a 17-way categorical
given the class, a proper generative model of the images: besides the
classification metrics, eval.json has its exact test log-likelihood
(`test_nll_nats`, `test_bpd`, `bound: 'exact'`) and samples.png draws from it.

Expected (test split = last 360 digits, train = first 90% of the first 1,437,
measured with this config): test accuracy 0.836, log-loss 2.08 nats,
ECE 0.14, 3.06 bits/dim (uniform: 4.09). Runs in ~10 s on a 2-core CPU.
"""

import ml_collections


def get_config():
  config = ml_collections.ConfigDict()
  config.model = 'naive_bayes'
  config.dataset = 'digits'
  # None = tfds default (~/tensorflow_datasets); a typed placeholder so that
  # --config.data_dir=... can override it on the command line.
  config.data_dir = ml_collections.config_dict.placeholder(str)
  config.validation_fraction = 0.1  # reported as val_* metrics; not used to fit

  config.nb_variant = 'categorical'  # 'categorical' | 'bernoulli' | 'multinomial' | 'gaussian'
  config.alpha = 1.0  # Laplace pseudo-count (categorical, bernoulli, multinomial)
  config.var_smoothing = 1e-9  # gaussian: fraction of the largest variance added

  # A closed-form fit is one "step". batch_size only chunks evaluation and
  # learning_rate is unused; both are here because every config has them.
  config.batch_size = 512
  config.num_train_steps = 1
  config.learning_rate = 0.0
  config.seed = 0
  config.log_every = 1
  config.checkpoint_every = 1
  config.parallel = 'none'

  config.num_samples = 100  # samples.png: 10 per class, one row per class
  return config
