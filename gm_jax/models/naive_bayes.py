"""Naive Bayes: the generative classifier, fitted in closed form.

A generative classifier models p(x | y) p(y) and classifies with Bayes' rule,

  log p(y | x) = log p(x | y) + log p(y) - logsumexp_y' [log p(x | y') + log p(y')];

a discriminative one models p(y | x) directly. Naive Bayes assumes the features
are independent given the class, log p(x | y) = sum_d log p(x_d | y), so evidence
carried by correlated (or duplicated) features is counted once per copy; logistic
regression (`gm_jax.models.logistic_regression`), fitted to p(y | x), learns to share
the weight between the copies (Ng & Jordan, "On Discriminative vs. Generative
Classifiers", NIPS 2002).

Naive Bayes variants, each fitted in closed form by maximum a posteriori counts
(same conventions as scikit-learn's `BernoulliNB`, `MultinomialNB`,
`CategoricalNB` and `GaussianNB`; the class prior is the empirical frequency):

* Bernoulli   x_d in {0, 1}:     p(x_d = 1 | y) = (N_yd + alpha) / (N_y + 2 alpha)
* Multinomial x_d >= 0 counts:   p(word d | y) = (N_yd + alpha) / (sum_d N_yd + D alpha)
* Categorical x_d in {0..K-1}:   p(x_d = k | y) = (N_ydk + alpha) / (N_y + K alpha)
* Gaussian    x_d real:          N(x_d; mu_yd, var_yd + eps),
                                 eps = var_smoothing * max_d Var[x_d]

All functions are pure; parameters are NamedTuples (pytrees) so they pass through
`jit`, `vmap` and `grad`. Public functions validate their inputs (ValueError
naming the field; `gm_jax._checks`) when the values are concrete and then call jitted
kernels.
"""

from __future__ import annotations

import functools
from typing import cast, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from gm_jax import _checks
from gm_jax._checks import as_float as _float
from gm_jax._checks import is_concrete as _concrete

# --------------------------------------------------------------------------
# Parameters.


class BernoulliNBParams(NamedTuple):
  """Bernoulli naive Bayes.

  Attributes:
    log_prior: [C] log p(y).
    log_prob: [C, D] log p(x_d = 1 | y).
    log_neg_prob: [C, D] log p(x_d = 0 | y).
  """

  log_prior: jax.Array
  log_prob: jax.Array
  log_neg_prob: jax.Array


class MultinomialNBParams(NamedTuple):
  """Multinomial (bag-of-words) naive Bayes.

  Attributes:
    log_prior: [C] log p(y).
    log_prob: [C, D] log p(word d | y); each row sums to 1 in probability.
  """

  log_prior: jax.Array
  log_prob: jax.Array


class CategoricalNBParams(NamedTuple):
  """Categorical-per-feature naive Bayes (e.g. one 17-way categorical per pixel).

  Attributes:
    log_prior: [C] log p(y).
    log_prob: [C, D, K] log p(x_d = k | y).
  """

  log_prior: jax.Array
  log_prob: jax.Array


class GaussianNBParams(NamedTuple):
  """Gaussian naive Bayes (diagonal covariance per class).

  Attributes:
    log_prior: [C] log p(y).
    mean: [C, D] class-conditional means.
    var: [C, D] class-conditional variances, smoothing included.
  """

  log_prior: jax.Array
  mean: jax.Array
  var: jax.Array


NBParams = BernoulliNBParams | MultinomialNBParams | CategoricalNBParams | GaussianNBParams


# --------------------------------------------------------------------------
# Validation at the boundary.


def _check_xy(x, y, num_classes):
  _checks.check_matrix(x, 'x')
  _checks.check_positive_int(num_classes, 'num_classes')
  _checks.check_labels(y, x, name='y', rows_name='x', num_classes=num_classes)


def _check_fit_inputs(x, y, num_classes, alpha, kind, num_categories=None):
  """The checks every naive Bayes fit makes: shapes, label range, values, `alpha > 0`."""
  _check_xy(x, y, num_classes)
  _check_values(x, kind, num_categories)
  _checks.check_positive(alpha, 'alpha')


def _check_values(x, kind, num_categories=None):
  """Checks the support of a concrete `x` for the NB variant `kind`."""
  if not _concrete(x) or not jnp.size(x):
    return
  x_np = np.asarray(x)
  if kind == 'bernoulli':
    if not np.all((x_np == 0) | (x_np == 1)):
      raise ValueError('x must be binary (0/1) for Bernoulli naive Bayes')
  elif kind == 'multinomial':
    if np.any(x_np < 0):
      raise ValueError('x must be non-negative counts for multinomial naive Bayes')
  elif kind == 'categorical':
    if not np.issubdtype(x_np.dtype, np.integer):
      raise ValueError(f'x must be integer categories, got dtype {x_np.dtype}')
    if x_np.min() < 0 or x_np.max() >= num_categories:
      raise ValueError(
        f'x must lie in [0, num_categories={num_categories}), got range '
        f'[{x_np.min()}, {x_np.max()}]'
      )
  elif kind == 'gaussian':
    if not np.all(np.isfinite(x_np)):
      raise ValueError('x must be finite for Gaussian naive Bayes')


def _class_stats(y, num_classes, dtype):
  """One-hot labels [N, C], class counts [C] and empirical log prior [C]."""
  onehot = jax.nn.one_hot(y, num_classes, dtype=dtype)
  count = jnp.sum(onehot, axis=0)
  log_prior = jnp.log(count) - jnp.log(jnp.sum(count))
  return onehot, count, log_prior


# --------------------------------------------------------------------------
# Naive Bayes: closed-form fits.


@functools.partial(jax.jit, static_argnames=('num_classes',))
def _fit_bernoulli(x, y, alpha, *, num_classes):
  x = _float(x)
  onehot, count, log_prior = _class_stats(y, num_classes, x.dtype)
  feature_count = onehot.T @ x  # [C, D]
  denom = jnp.log(count + 2.0 * alpha)[:, None]
  return BernoulliNBParams(
    log_prior=log_prior,
    log_prob=jnp.log(feature_count + alpha) - denom,
    log_neg_prob=jnp.log(count[:, None] - feature_count + alpha) - denom,
  )


def fit_bernoulli_nb(
  x: jax.Array, y: jax.Array, *, num_classes: int, alpha: float = 1.0
) -> BernoulliNBParams:
  """Fits Bernoulli naive Bayes with Laplace (add-alpha) smoothing.

  Args:
    x: [N, D] binary features (0/1; binarise first, e.g. `x > 0`).
    y: [N] int labels in [0, num_classes).
    num_classes: C.
    alpha: pseudo-count added to both outcomes of every feature.

  Returns:
    `BernoulliNBParams`.
  """
  _check_fit_inputs(x, y, num_classes, alpha, 'bernoulli')
  return _fit_bernoulli(x, y, alpha, num_classes=num_classes)


@functools.partial(jax.jit, static_argnames=('num_classes',))
def _fit_multinomial(x, y, alpha, *, num_classes):
  x = _float(x)
  onehot, _, log_prior = _class_stats(y, num_classes, x.dtype)
  smoothed = onehot.T @ x + alpha  # [C, D]
  return MultinomialNBParams(
    log_prior=log_prior, log_prob=jnp.log(smoothed) - jnp.log(jnp.sum(smoothed, -1, keepdims=True))
  )


def fit_multinomial_nb(
  x: jax.Array, y: jax.Array, *, num_classes: int, alpha: float = 1.0
) -> MultinomialNBParams:
  """Fits multinomial (bag-of-words) naive Bayes with Laplace smoothing.

  Args:
    x: [N, D] non-negative counts (word d appears x_nd times in document n).
    y: [N] int labels in [0, num_classes).
    num_classes: C.
    alpha: pseudo-count added to every (class, word) count.

  Returns:
    `MultinomialNBParams`.
  """
  _check_fit_inputs(x, y, num_classes, alpha, 'multinomial')
  return _fit_multinomial(x, y, alpha, num_classes=num_classes)


@functools.partial(jax.jit, static_argnames=('num_classes', 'num_categories'))
def _fit_categorical(x, y, alpha, *, num_classes, num_categories):
  dtype = jnp.result_type(float)
  onehot, count, log_prior = _class_stats(y, num_classes, dtype)
  x_onehot = jax.nn.one_hot(x, num_categories, dtype=dtype)  # [N, D, K]
  category_count = jnp.einsum('nc,ndk->cdk', onehot, x_onehot)
  denom = jnp.log(count + num_categories * alpha)[:, None, None]
  return CategoricalNBParams(log_prior=log_prior, log_prob=jnp.log(category_count + alpha) - denom)


def fit_categorical_nb(
  x: jax.Array, y: jax.Array, *, num_classes: int, num_categories: int, alpha: float = 1.0
) -> CategoricalNBParams:
  """Fits naive Bayes with one K-way categorical per feature.

  For 17-level digits this is a proper generative model of the image:
  p(x) = sum_y p(y) prod_d p(x_d | y) is a distribution over {0..16}^64.

  Args:
    x: [N, D] int categories in [0, num_categories).
    y: [N] int labels in [0, num_classes).
    num_classes: C.
    num_categories: K, number of values each feature can take.
    alpha: pseudo-count added to every (class, feature, value) count.

  Returns:
    `CategoricalNBParams`.
  """
  _check_xy(x, y, num_classes)
  _checks.check_positive_int(num_categories, 'num_categories')
  if not jnp.issubdtype(jnp.asarray(x).dtype, jnp.integer):
    raise ValueError(f'x must be integer categories, got dtype {jnp.asarray(x).dtype}')
  _check_fit_inputs(x, y, num_classes, alpha, 'categorical', num_categories)
  return _fit_categorical(x, y, alpha, num_classes=num_classes, num_categories=num_categories)


@functools.partial(jax.jit, static_argnames=('num_classes',))
def _fit_gaussian(x, y, var_smoothing, *, num_classes):
  x = _float(x)
  onehot, count, log_prior = _class_stats(y, num_classes, x.dtype)
  safe_count = jnp.maximum(count, 1.0)[:, None]
  mean = onehot.T @ x / safe_count  # [C, D]
  # Two-pass variance: sum (x - mean_y)^2 avoids E[x^2] - E[x]^2 cancellation.
  var = onehot.T @ jnp.square(x - mean[y]) / safe_count
  epsilon = var_smoothing * jnp.max(jnp.var(x, axis=0))
  return GaussianNBParams(log_prior=log_prior, mean=mean, var=var + epsilon)


def fit_gaussian_nb(
  x: jax.Array, y: jax.Array, *, num_classes: int, var_smoothing: float = 1e-9
) -> GaussianNBParams:
  """Fits Gaussian naive Bayes (maximum-likelihood mean and variance per class).

  Args:
    x: [N, D] real features.
    y: [N] int labels in [0, num_classes).
    num_classes: C.
    var_smoothing: fraction of the largest feature variance added to every
      class variance (scikit-learn's convention), so constant pixels do not
      give zero variance.

  Returns:
    `GaussianNBParams`.
  """
  _check_xy(x, y, num_classes)
  _check_values(x, 'gaussian')
  _checks.check_positive(var_smoothing, 'var_smoothing')
  return _fit_gaussian(x, y, var_smoothing, num_classes=num_classes)


# --------------------------------------------------------------------------
# Naive Bayes: inference.


def _num_features(params: NBParams) -> int:
  if isinstance(params, GaussianNBParams):
    return params.mean.shape[-1]
  if isinstance(params, CategoricalNBParams):
    return params.log_prob.shape[-2]
  return params.log_prob.shape[-1]


@jax.jit
def _log_joint(params: NBParams, x):
  if isinstance(params, BernoulliNBParams):
    x = _float(x)
    return (
      x @ (params.log_prob - params.log_neg_prob).T
      + jnp.sum(params.log_neg_prob, -1)
      + params.log_prior
    )
  if isinstance(params, MultinomialNBParams):
    return _float(x) @ params.log_prob.T + params.log_prior
  if isinstance(params, CategoricalNBParams):
    num_features = params.log_prob.shape[1]
    # log_prob[c, d, x_nd] gathered to [C, N, D].
    picked = params.log_prob[:, jnp.arange(num_features), x]
    return jnp.sum(picked, axis=-1).T + params.log_prior
  if isinstance(params, GaussianNBParams):
    x = _float(x)
    log_norm = -0.5 * jnp.sum(jnp.log(2.0 * jnp.pi * params.var), -1)  # [C]
    sq = jnp.sum(jnp.square(x[:, None, :] - params.mean) / params.var, -1)
    return log_norm - 0.5 * sq + params.log_prior
  raise TypeError(f'not naive Bayes parameters: {type(params).__name__}')


def log_joint(params: NBParams, x: jax.Array) -> jax.Array:
  """log p(x, y) = log p(y) + sum_d log p(x_d | y) for every class.

  For the multinomial variant the multinomial coefficient (which does not
  depend on y) is left out, as in scikit-learn: it is the log-probability of
  the word sequence, not of the count vector.

  Args:
    params: any naive Bayes parameters from a `fit_*_nb` function.
    x: [N, D] features on the variant's support.

  Returns:
    [N, C] joint log-probabilities.
  """
  _checks.check_matrix(x, 'x')
  if jnp.shape(x)[1] != _num_features(params):
    raise ValueError(f'x must have D = {_num_features(params)} features, got shape {jnp.shape(x)}')
  kind = {
    BernoulliNBParams: 'bernoulli',
    MultinomialNBParams: 'multinomial',
    CategoricalNBParams: 'categorical',
    GaussianNBParams: 'gaussian',
  }.get(type(params))
  if kind is None:
    raise TypeError(f'not naive Bayes parameters: {type(params).__name__}')
  if kind == 'categorical':
    if not jnp.issubdtype(jnp.asarray(x).dtype, jnp.integer):
      raise ValueError(f'x must be integer categories, got dtype {jnp.asarray(x).dtype}')
    _check_values(x, kind, cast(CategoricalNBParams, params).log_prob.shape[-1])
  else:
    _check_values(x, kind)
  return _log_joint(params, x)


def predict_log_proba(params: NBParams, x: jax.Array) -> jax.Array:
  """Bayes' rule: log p(y | x) = log p(x, y) - logsumexp_y log p(x, y).

  Args:
    params: naive Bayes parameters.
    x: [N, D].

  Returns:
    [N, C] log posterior class probabilities.
  """
  joint = log_joint(params, x)
  return joint - jax.nn.logsumexp(joint, axis=-1, keepdims=True)


def log_marginal(params: NBParams, x: jax.Array) -> jax.Array:
  """log p(x) = logsumexp_y log p(x, y): the model's density/mass of x.

  Exact (no bound) for every variant; for the multinomial variant it is the
  probability of the word sequence (see `log_joint`).

  Args:
    params: naive Bayes parameters.
    x: [N, D].

  Returns:
    [N] log p(x).
  """
  return jax.nn.logsumexp(log_joint(params, x), axis=-1)


def predict(params: NBParams, x: jax.Array) -> jax.Array:
  """Most probable class, [N] int32 (`logistic_regression.logreg_predict` for LR)."""
  return jnp.argmax(log_joint(params, x), axis=-1)


def _categorical(key, log_probs, shape):
  """Inverse-CDF draws from categorical rows of `log_probs` [..., K], int32 `shape`.

  `shape` must end with `log_probs.shape[:-1]`. (Cheaper to compile and run on
  CPU than `jax.random.categorical`'s Gumbel-max for these small K.)
  """
  cdf = jnp.cumsum(jnp.exp(log_probs), axis=-1)
  u = jax.random.uniform(key, tuple(shape) + (1,), dtype=cdf.dtype)
  # Count of interior CDF values below u, so the result lies in [0, K - 1] even
  # when rounding leaves cdf[-1] slightly below 1.
  return jnp.sum(u > cdf[..., :-1], axis=-1).astype(jnp.int32)


@functools.partial(jax.jit, static_argnames=('num', 'num_trials'))
def _sample(params, key, label, *, num, num_trials):
  if isinstance(params, BernoulliNBParams):
    p = jnp.exp(params.log_prob[label])
    return jax.random.bernoulli(key, p, (num, p.shape[-1])).astype(jnp.int32)
  if isinstance(params, CategoricalNBParams):
    log_probs = params.log_prob[label]  # [D, K]
    return _categorical(key, log_probs, (num, log_probs.shape[0]))
  if isinstance(params, MultinomialNBParams):
    log_probs = params.log_prob[label]  # [D]
    words = _categorical(key, log_probs, (num, num_trials))
    return jax.vmap(lambda w: jnp.bincount(w, length=log_probs.shape[0]))(words)
  if isinstance(params, GaussianNBParams):
    mean, var = params.mean[label], params.var[label]
    return mean + jnp.sqrt(var) * jax.random.normal(key, (num,) + mean.shape, mean.dtype)
  raise TypeError(f'not naive Bayes parameters: {type(params).__name__}')


def sample(
  params: NBParams, key: jax.Array, *, label, num: int, num_trials: int | None = None
) -> jax.Array:
  """Draws x ~ p(x | y = label): what a generative classifier can do and LR cannot.

  Args:
    params: naive Bayes parameters.
    key: PRNG key.
    label: scalar int class (may be traced, so `vmap` over labels works).
    num: number of samples.
    num_trials: document length (total count), multinomial variant only.

  Returns:
    [num, D] samples: int32 0/1 (Bernoulli), int32 categories (categorical),
    int32 counts summing to `num_trials` (multinomial), floats (Gaussian).
  """
  _checks.check_positive_int(num, 'num')
  num_classes = params.log_prior.shape[-1]
  if jnp.ndim(label) != 0:
    raise ValueError(f'label must be a scalar, got shape {jnp.shape(label)}')
  if _concrete(label) and not 0 <= int(label) < num_classes:
    raise ValueError(f'label must lie in [0, {num_classes}), got {label}')
  if isinstance(params, MultinomialNBParams):
    if not isinstance(num_trials, (int, np.integer)) or num_trials < 1:
      raise ValueError(f'num_trials must be a positive int for multinomial NB, got {num_trials!r}')
  elif num_trials is not None:
    raise ValueError('num_trials is only used by multinomial naive Bayes')
  return _sample(params, key, label, num=num, num_trials=num_trials)


def nb_from_name(name: str):
  """Maps 'bernoulli' / 'multinomial' / 'categorical' / 'gaussian' to its fit."""
  fits = {
    'bernoulli': fit_bernoulli_nb,
    'multinomial': fit_multinomial_nb,
    'categorical': fit_categorical_nb,
    'gaussian': fit_gaussian_nb,
  }
  if name not in fits:
    raise ValueError(f'naive Bayes variant must be one of {sorted(fits)}, got {name!r}')
  return fits[name]
