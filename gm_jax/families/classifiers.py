"""Training entry for the classifier families: naive Bayes and logistic regression.

`gm_jax.families.train_and_evaluate(config, workdir)` trains `config.model` in
('naive_bayes', 'logreg') on an image dataset (the embedded 'digits'; images are
flattened to D = H * W * C features).

Both run through the generic trainer `gm_jax.train.loop` (checkpoints, exact resume,
metrics, bad-input errors, `eval.json`, `samples.png` live there):

* naive_bayes: a closed-form fit is one full-batch step, a `TrainUpdate` whose update
  fits the parameters to the whole training split (`batch_size` becomes the split's
  size; the config's `batch_size` chunks evaluation). `samples.png` shows draws from
  p(x | y), one row per class. The categorical variant is a proper model of the
  17-level images, so its exact test log-likelihood (`test_nll_nats`, `test_bpd`,
  `bound: 'exact'`) is reported. `train_steps_per_s` is the rate of the jitted fit.
* logreg: minibatch Adam on the L2-regularised cross-entropy.

Both write `eval.json` with `test_accuracy`, `test_log_loss` (nats) and
`test_ece` (15 equal-width bins).
"""

from __future__ import annotations

import functools
import time

import jax
import jax.numpy as jnp
import numpy as np

from gm_jax import data as gm_data
from gm_jax.evaluate import calibration
from gm_jax.models import logistic_regression as lr_lib
from gm_jax.models import naive_bayes as nb_lib
from gm_jax.train import input_pipeline
from gm_jax.train import loop
from gm_jax.train.family import Family
from gm_jax.train.family import TrainUpdate

MODELS = ('naive_bayes', 'logreg')
NB_VARIANTS = ('categorical', 'bernoulli', 'multinomial', 'gaussian')

# The family's own settings (`gm_jax.families.setup` fills them in once).
DEFAULTS = {'nb_variant': 'categorical', 'alpha': 1.0, 'var_smoothing': 1e-9, 'l2': 0.0}
DEFAULTS_DOC = {
  'nb_variant': f'naive Bayes: the pixel model, one of {NB_VARIANTS}',
  'alpha': 'naive Bayes: Laplace pseudo-count (categorical, bernoulli, multinomial)',
  'var_smoothing': 'naive Bayes (gaussian): fraction of the largest variance added',
  'l2': 'logreg: weight of (l2 / 2) |W|^2 on the mean cross-entropy',
}


# ---------------------------------------------------------------------------
# Features from image batches.


def nb_features(images, *, variant: str, num_levels: int):
  """[N, H, W, C] integer images on `num_levels` levels -> [N, D] NB features.

  categorical: the levels themselves; bernoulli: pixel >= num_levels / 2;
  multinomial: the levels as counts ("ink"); gaussian: levels / (num_levels - 1).
  """
  x = jnp.reshape(jnp.asarray(images), (jnp.shape(images)[0], -1)).astype(jnp.int32)
  if variant == 'categorical' or variant == 'multinomial':
    return x
  if variant == 'bernoulli':
    return (2 * x >= num_levels).astype(jnp.int32)
  if variant == 'gaussian':
    return x.astype(jnp.float32) / (num_levels - 1)
  raise ValueError(f'config.nb_variant must be one of {NB_VARIANTS}, got {variant!r}')


def logreg_features(images, *, num_levels: int):
  """[N, H, W, C] levels -> [N, D] floats in [0, 1]."""
  x = jnp.reshape(jnp.asarray(images), (jnp.shape(images)[0], -1))
  return x.astype(jnp.float32) / (num_levels - 1)


def _nb_samples_to_images(samples, *, variant, num_levels, shape):
  """Maps samples of each variant back onto the image level grid, uint8."""
  s = np.asarray(samples)
  if variant == 'bernoulli':
    s = s * (num_levels - 1)
  elif variant == 'gaussian':
    s = np.rint(s * (num_levels - 1))
  return np.clip(s, 0, num_levels - 1).astype(np.uint8).reshape((-1,) + tuple(shape))


# ---------------------------------------------------------------------------
# Config validation.


def _positive_int(config, name):
  value = config[name]
  if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
    raise ValueError(f'config.{name} must be a positive integer, got {value!r}')


def check_config(config, info) -> None:
  """Checks the fields the classifiers use and the dataset `info`; the error names the bad
  field."""
  validate_config(config)
  _check_image_dataset(info, config)
  input_pipeline.require_memory(
    config, 'the classifiers read the whole training split (naive Bayes fits it in one step)'
  )


def validate_config(config) -> None:
  """Checks the fields the classifiers use; the error names the bad field."""
  missing = [k for k in loop.REQUIRED_FIELDS + ('validation_fraction',) if k not in config]
  if missing:
    raise ValueError(f'config is missing required field(s): {", ".join(missing)}')
  if config.model not in MODELS:
    raise ValueError(f'config.model must be one of {MODELS}, got {config.model!r}')
  if config.model == 'logreg':
    loop.validate_config(config)
    l2 = config.l2
    if not isinstance(l2, (int, float)) or isinstance(l2, bool) or not np.isfinite(l2) or l2 < 0:
      raise ValueError(f'config.l2 must be a non-negative number, got {l2!r}')
    return
  for name in ('batch_size', 'log_every', 'checkpoint_every'):
    _positive_int(config, name)
  if config.parallel != 'none':
    raise ValueError(
      f"config.parallel must be 'none' for naive Bayes (a closed-form fit), got {config.parallel!r}"
    )
  if not 0.0 <= config.validation_fraction < 1.0:
    raise ValueError(
      f'config.validation_fraction must be in [0, 1), got {config.validation_fraction!r}'
    )
  variant = config.nb_variant
  if variant not in NB_VARIANTS:
    raise ValueError(f'config.nb_variant must be one of {NB_VARIANTS}, got {variant!r}')
  for name in ('alpha', 'var_smoothing'):
    value = config[name]
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not value > 0:
      raise ValueError(f'config.{name} must be a positive number, got {value!r}')
  if not isinstance(config.seed, int) or config.seed < 0:
    raise ValueError(f'config.seed must be a non-negative integer, got {config.seed!r}')


def _check_image_dataset(info, config):
  if info.kind != 'image' or not info.num_classes:
    raise ValueError(
      f'config.dataset={config.dataset!r}: the classifiers need a labelled '
      f'image dataset (got kind={info.kind!r}, num_classes={info.num_classes})'
    )


# ---------------------------------------------------------------------------
# Naive Bayes.


def _fit_nb(config, x, y, num_classes, num_levels):
  variant = config.nb_variant
  if variant == 'categorical':
    return nb_lib.fit_categorical_nb(
      x, y, num_classes=num_classes, num_categories=num_levels, alpha=float(config.alpha)
    )
  if variant == 'gaussian':
    return nb_lib.fit_gaussian_nb(
      x, y, num_classes=num_classes, var_smoothing=float(config.var_smoothing)
    )
  return nb_lib.nb_from_name(variant)(x, y, num_classes=num_classes, alpha=float(config.alpha))


@functools.partial(jax.jit, static_argnames=('variant', 'num_levels'))
def _nb_posterior_and_marginal(params, images, *, variant, num_levels):
  joint = nb_lib.log_joint(params, nb_features(images, variant=variant, num_levels=num_levels))
  marginal = jax.nn.logsumexp(joint, -1)
  return joint - marginal[:, None], marginal


def _nb_log_probs(params, arrays, *, variant, num_levels, batch_size):
  """[N, C] log posteriors and [N] log p(x) over `arrays`, batch by batch.

  The last batch is padded to `batch_size` so there is one compilation.
  """
  post, marg = [], []
  for batch in gm_data.iterate_batches(arrays, batch_size):
    images = batch['image']
    n = len(images)
    if n < batch_size:
      images = np.concatenate([images, np.repeat(images[:1], batch_size - n, 0)])
    p, m = _nb_posterior_and_marginal(params, images, variant=variant, num_levels=num_levels)
    post.append(np.asarray(p)[:n])
    marg.append(np.asarray(m)[:n])
  return np.concatenate(post), np.concatenate(marg)


def make_nb_family(config, info, *, num_trials=None) -> Family:
  """Naive Bayes as a `Family`: one `TrainUpdate` step fits it to the (full) batch.

  Args:
    num_trials: the total count of a multinomial sample (None otherwise).
  """
  variant = config.nb_variant
  levels, num_classes = info.num_levels, info.num_classes
  params_type = {
    'categorical': nb_lib.CategoricalNBParams,
    'bernoulli': nb_lib.BernoulliNBParams,
    'multinomial': nb_lib.MultinomialNBParams,
    'gaussian': nb_lib.GaussianNBParams,
  }[variant]

  def fit(batch):
    x = nb_features(batch['image'], variant=variant, num_levels=levels)
    return _fit_nb(config, x, jnp.asarray(batch['label'], jnp.int32), num_classes, levels)._asdict()

  def joint_nll_and_metrics(params, batch):
    post, marg = _nb_posterior_and_marginal(
      params_type(**params), batch['image'], variant=variant, num_levels=levels
    )
    y = jnp.asarray(batch['label'], jnp.int32)
    log_post_y = jnp.take_along_axis(post, y[:, None], -1)[:, 0]
    # "loss" of a closed-form fit: the mean -log p(x, y) it maximises (nats/example).
    loss = -jnp.mean(marg + log_post_y)
    return loss, {
      'log_loss': -jnp.mean(log_post_y),
      'accuracy': jnp.mean(jnp.argmax(post, -1) == y),
    }

  def init(key, batch):
    del key
    return fit(batch)

  def update(params, opt_state, batch, key, *, step, axis_name=None):
    del params, key, step
    if axis_name is not None:
      raise ValueError("naive Bayes fits on one device: config.parallel must be 'none'")
    params = fit(batch)
    loss, metrics = joint_nll_and_metrics(params, batch)
    return params, {'fits': opt_state['fits'] + 1}, dict(metrics, loss=loss)

  def loss(params, batch, key, *, train):
    del key, train
    return joint_nll_and_metrics(params, batch)

  def fits_per_s(train):
    """The rate of the jitted closed-form fit on the whole training split."""
    batch = {k: jnp.asarray(train[k]) for k in ('image', 'label')}
    jax.block_until_ready(fit(batch))
    num_timed, t0 = 5, time.perf_counter()
    for _ in range(num_timed):
      jax.block_until_ready(fit(batch))
    return num_timed / (time.perf_counter() - t0)

  def evaluate(params, splits, key, cfg):
    del key
    nb = params_type(**params)
    kwargs = dict(variant=variant, num_levels=levels, batch_size=int(cfg.eval_batch_size))
    test_post, test_marg = _nb_log_probs(nb, splits.test, **kwargs)
    test = calibration.classification_metrics(test_post, splits.test['label'])
    results = {f'test_{k}': v for k, v in test.items()}
    results.update(nb_variant=variant, train_steps_per_s=fits_per_s(splits.train))
    if variant == 'categorical':
      # A distribution over {0..L-1}^D: log p(x) = logsumexp_y log p(x, y) is exact.
      nll = -float(np.mean(test_marg))
      results.update(
        {'test_nll_nats': nll, 'test_bpd': nll / (info.num_dims * np.log(2.0)), 'bound': 'exact'}
      )
    return results

  def sample(params, key, num):
    """`num // C` draws from p(x | y) per class y, class by class (one row each)."""
    per_class = max(1, num // num_classes)
    samples = _draw_jit(
      params_type(**params),
      key,
      per_class=per_class,
      num_classes=num_classes,
      num_trials=num_trials,
    )
    return _nb_samples_to_images(
      samples.reshape(num_classes * per_class, -1),
      variant=variant,
      num_levels=levels,
      shape=info.shape,
    )

  return Family(
    name='naive_bayes',
    init=init,
    loss=loss,
    evaluate=evaluate,
    sample=sample,
    validation_metric='log_loss',
    train_update=TrainUpdate(init=lambda p: {'fits': jnp.zeros((), jnp.int32)}, update=update),
  )


@functools.partial(jax.jit, static_argnames=('per_class', 'num_classes', 'num_trials'))
def _draw_jit(params, key, *, per_class, num_classes, num_trials):
  return jax.vmap(
    lambda c: nb_lib.sample(
      params, jax.random.fold_in(key, c), label=c, num=per_class, num_trials=num_trials
    )
  )(jnp.arange(num_classes))


# ---------------------------------------------------------------------------
# Logistic regression through the generic trainer.


def make_logreg_family(config, info) -> Family:
  """L2-regularised multinomial logistic regression as pure functions for `loop.run`."""
  levels, num_classes, num_dims = info.num_levels, info.num_classes, info.num_dims
  l2 = float(config.l2)

  def init(key, batch):
    del key, batch  # convex objective: start from zero
    return lr_lib.logreg_init(num_dims, num_classes)._asdict()

  def loss(params, batch, key, *, train):
    del key, train  # no dropout, no noise
    p = lr_lib.LogRegParams(**params)
    x = logreg_features(batch['image'], num_levels=levels)
    y = jnp.asarray(batch['label'], jnp.int32)
    log_probs = lr_lib.logreg_predict_log_proba(p, x)
    ce = -jnp.take_along_axis(log_probs, y[:, None], -1)[:, 0]
    metrics = {'log_loss': jnp.mean(ce), 'accuracy': jnp.mean(jnp.argmax(log_probs, -1) == y)}
    return lr_lib.logreg_objective(p, x, y, l2=l2), metrics

  def evaluate(params, splits, key, cfg):
    del key, cfg
    p = lr_lib.LogRegParams(**params)
    x = logreg_features(splits.test['image'], num_levels=levels)
    test = calibration.classification_metrics(
      lr_lib.logreg_predict_log_proba(p, x), splits.test['label']
    )
    return {f'test_{k}': v for k, v in test.items()}

  return Family(
    name='logreg', init=init, loss=loss, evaluate=evaluate, validation_metric='log_loss'
  )


# ---------------------------------------------------------------------------


def make_family(config, info, *, num_trials=None) -> Family:
  """`make_nb_family` or `make_logreg_family` by `config.model`.

  Args:
    num_trials: naive Bayes' multinomial sample size (the `prepare` hook's).
  """
  if config.model == 'logreg':
    return make_logreg_family(config, info)
  return make_nb_family(config, info, num_trials=num_trials)


def load_splits(config) -> gm_data.Splits:
  """The registry's hook: `config.dataset` in memory (whatever `config.input_pipeline`)."""
  return gm_data.load_splits(
    config.dataset, data_dir=config.data_dir, validation_fraction=config.validation_fraction
  )


def prepare(config, splits):
  """The registry's hook: naive Bayes fits in one full-batch step.

  Returns `(config, splits, kwargs)`: for naive Bayes, `config.batch_size` becomes the
  training split's size and `eval_batch_size` the config's `batch_size` (it chunks the
  evaluation); the fit's input checks (value ranges) run once here, outside jit; a
  multinomial model samples with the average total "ink" of a training image.
  """
  _check_image_dataset(splits.info, config)
  if config.model == 'logreg':
    return config, splits, {}
  info = splits.info
  config = config.copy_and_resolve_references()
  with config.unlocked():
    config.eval_batch_size = int(config.batch_size)
    config.batch_size = len(splits.train['label'])
  variant = config.nb_variant
  x = nb_features(splits.train['image'], variant=variant, num_levels=info.num_levels)
  _fit_nb(
    config, x, jnp.asarray(splits.train['label'], jnp.int32), info.num_classes, info.num_levels
  )
  num_trials = int(round(float(jnp.mean(jnp.sum(x, -1))))) if variant == 'multinomial' else None
  return config, splits, {'num_trials': num_trials}
