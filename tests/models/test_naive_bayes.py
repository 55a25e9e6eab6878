"""gm_jax.models.naive_bayes against scikit-learn, SciPy and brute force."""

import itertools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import special
from scipy import stats
from sklearn import datasets
from sklearn import naive_bayes

from gm_jax.models import naive_bayes as nb

NUM_CLASSES = 10


def _assert_matches(params, sk, x, x64):
  """predict_log_proba within 1e-4 of sklearn in float64.

  In float32 the joint log-probabilities of digits reach -500, where one ulp is
  3e-5 and a 64-term sum loses ~1e-4; there we check the joint to 2e-6
  relative and the posterior to 1e-3 absolute.
  """
  with jax.enable_x64(x64):
    joint = nb.log_joint(params, x)
    got = nb.predict_log_proba(params, x)
  chex.assert_shape(got, (len(x), len(sk.classes_)))
  want = sk.predict_log_proba(x)
  if x64:
    np.testing.assert_allclose(got, want, atol=1e-4, rtol=0)
  else:
    np.testing.assert_allclose(joint, sk.predict_joint_log_proba(x), atol=1e-4, rtol=2e-6)
    np.testing.assert_allclose(got, want, atol=1e-3, rtol=0)


# ---------------------------------------------------------------------------
# Naive Bayes vs scikit-learn.


@pytest.mark.parametrize('x64', [False, True])
def test_bernoulli_matches_sklearn(digits, x64):
  xtr, ytr, xte, _ = digits
  btr, bte = (xtr > 0).astype(np.int32), (xte > 0).astype(np.int32)
  sk = naive_bayes.BernoulliNB(alpha=0.5, binarize=None).fit(btr, ytr)
  with jax.enable_x64(x64):
    params = nb.fit_bernoulli_nb(btr, ytr, num_classes=NUM_CLASSES, alpha=0.5)
  np.testing.assert_allclose(params.log_prob, sk.feature_log_prob_, atol=1e-6)
  np.testing.assert_allclose(params.log_prior, sk.class_log_prior_, atol=1e-6)
  _assert_matches(params, sk, bte, x64)


@pytest.mark.parametrize('x64', [False, True])
def test_multinomial_matches_sklearn(digits, x64):
  xtr, ytr, xte, _ = digits
  sk = naive_bayes.MultinomialNB(alpha=1.0).fit(xtr, ytr)
  with jax.enable_x64(x64):
    params = nb.fit_multinomial_nb(xtr, ytr, num_classes=NUM_CLASSES)
  np.testing.assert_allclose(params.log_prob, sk.feature_log_prob_, atol=1e-6)
  _assert_matches(params, sk, xte, x64)


@pytest.mark.parametrize('x64', [False, True])
def test_categorical_matches_sklearn(digits, x64):
  xtr, ytr, xte, _ = digits
  sk = naive_bayes.CategoricalNB(alpha=1.0, min_categories=17).fit(xtr, ytr)
  with jax.enable_x64(x64):
    params = nb.fit_categorical_nb(xtr, ytr, num_classes=NUM_CLASSES, num_categories=17)
  chex.assert_shape(params.log_prob, (NUM_CLASSES, 64, 17))
  np.testing.assert_allclose(params.log_prob, np.stack(sk.feature_log_prob_, 1), atol=1e-6)
  _assert_matches(params, sk, xte, x64)


def test_gaussian_matches_sklearn_on_digits_in_float64(digits):
  # Pixels that are constant within a class get variance ~1e-9 * 40, so log
  # probabilities reach -5e9: only float64 can hold them to 1e-4 relative.
  xtr, ytr, xte, _ = digits
  sk = naive_bayes.GaussianNB().fit(xtr, ytr)
  with jax.enable_x64(True):
    params = nb.fit_gaussian_nb(xtr, ytr, num_classes=NUM_CLASSES)
    got = nb.predict_log_proba(params, xte)
  np.testing.assert_allclose(params.mean, sk.theta_, rtol=1e-12)
  np.testing.assert_allclose(params.var, sk.var_, rtol=1e-10)
  np.testing.assert_allclose(got, sk.predict_log_proba(xte), atol=1e-4, rtol=1e-12)


@pytest.mark.parametrize('x64', [False, True])
def test_gaussian_matches_sklearn_on_iris(x64):
  x, y = datasets.load_iris(return_X_y=True)
  perm = np.random.default_rng(0).permutation(len(y))
  x, y = x[perm], y[perm].astype(np.int32)
  sk = naive_bayes.GaussianNB().fit(x[:100], y[:100])
  with jax.enable_x64(x64):
    params = nb.fit_gaussian_nb(x[:100], y[:100], num_classes=3)
  _assert_matches(params, sk, x[100:], x64)


def test_gaussian_log_joint_matches_scipy():
  rng = np.random.default_rng(1)
  x = rng.normal(size=(50, 4)).astype(np.float32)
  y = rng.integers(0, 3, 50).astype(np.int32)
  params = nb.fit_gaussian_nb(x, y, num_classes=3)
  want = stats.norm.logpdf(x[:, None, :], params.mean, np.sqrt(params.var)).sum(-1) + np.asarray(
    params.log_prior
  )
  np.testing.assert_allclose(nb.log_joint(params, x), want, rtol=1e-5)


# ---------------------------------------------------------------------------
# Generative model: normalisation by brute force over all states, sampling.


def _toy(seed, n, d, k, c):
  rng = np.random.default_rng(seed)
  return (rng.integers(0, k, (n, d)).astype(np.int32), rng.integers(0, c, n).astype(np.int32))


def test_categorical_marginal_sums_to_one_over_all_states():
  x, y = _toy(0, 40, 3, 4, 2)
  params = nb.fit_categorical_nb(x, y, num_classes=2, num_categories=4, alpha=0.3)
  states = np.array(list(itertools.product(range(4), repeat=3)), np.int32)
  total = special.logsumexp(np.asarray(nb.log_marginal(params, states), np.float64))
  np.testing.assert_allclose(total, 0.0, atol=1e-5)
  # Summing the joint over x gives back the class prior.
  joint = np.asarray(nb.log_joint(params, states), np.float64)
  np.testing.assert_allclose(special.logsumexp(joint, axis=0), params.log_prior, atol=1e-5)


def test_bernoulli_marginal_sums_to_one_over_all_states():
  x, y = _toy(1, 60, 5, 2, 3)
  params = nb.fit_bernoulli_nb(x, y, num_classes=3)
  states = np.array(list(itertools.product(range(2), repeat=5)), np.int32)
  total = special.logsumexp(np.asarray(nb.log_marginal(params, states), np.float64))
  np.testing.assert_allclose(total, 0.0, atol=1e-5)


def test_multinomial_is_a_distribution_over_word_sequences():
  # Summing multinomial-coefficient * p(sequence) over all count vectors with
  # a fixed total L must give 1.
  x, y = _toy(2, 30, 4, 5, 2)
  params = nb.fit_multinomial_nb(x, y, num_classes=2)
  length = 4
  counts = np.array(
    [c for c in itertools.product(range(length + 1), repeat=4) if sum(c) == length], np.int32
  )
  log_coef = special.gammaln(length + 1) - special.gammaln(counts + 1).sum(-1)
  total = special.logsumexp(log_coef + np.asarray(nb.log_marginal(params, counts)))
  np.testing.assert_allclose(total, 0.0, atol=1e-5)


def test_categorical_samples_match_fitted_frequencies(digits):
  xtr, ytr, _, _ = digits
  params = nb.fit_categorical_nb(xtr, ytr, num_classes=NUM_CLASSES, num_categories=17)
  num = 4000
  samples = nb.sample(params, jax.random.key(0), label=3, num=num)
  chex.assert_shape(samples, (num, 64))
  assert samples.dtype == jnp.int32
  freq = np.asarray(jax.nn.one_hot(samples, 17).mean(0))  # [64, 17]
  p = np.exp(np.asarray(params.log_prob[3]))
  # Binomial standard error; 5 sigma over 64*17 cells.
  np.testing.assert_array_less(np.abs(freq - p), 5 * np.sqrt(p * (1 - p) / num) + 1e-3)
  # Samples of class 3 are classified as 3 by the same model most of the time.
  assert np.mean(np.asarray(nb.predict(params, samples)) == 3) > 0.9


def test_sample_other_variants_and_vmap_over_labels():
  rng = np.random.default_rng(3)
  y = rng.integers(0, 3, 300).astype(np.int32)
  key = jax.random.key(1)
  # Bernoulli: frequencies.
  xb = (rng.uniform(size=(300, 6)) < (y[:, None] + 1) / 4).astype(np.int32)
  pb = nb.fit_bernoulli_nb(xb, y, num_classes=3)
  sb = jax.vmap(lambda l: nb.sample(pb, key, label=l, num=5000))(jnp.arange(3))
  chex.assert_shape(sb, (3, 5000, 6))
  np.testing.assert_allclose(sb.mean(1), np.exp(pb.log_prob), atol=0.03)
  # Multinomial: every document has num_trials words; mean = L p.
  pm = nb.fit_multinomial_nb(rng.integers(0, 5, (300, 6)), y, num_classes=3)
  sm = nb.sample(pm, key, label=1, num=5000, num_trials=20)
  np.testing.assert_array_equal(sm.sum(-1), 20)
  np.testing.assert_allclose(sm.mean(0), 20 * np.exp(pm.log_prob[1]), atol=0.15)
  # Gaussian: moments.
  pg = nb.fit_gaussian_nb(rng.normal(size=(300, 6)) + y[:, None], y, num_classes=3)
  sg = nb.sample(pg, key, label=2, num=20000)
  np.testing.assert_allclose(sg.mean(0), pg.mean[2], atol=0.05)
  np.testing.assert_allclose(sg.var(0), pg.var[2], rtol=0.05)


# ---------------------------------------------------------------------------
# jit / vmap.


def test_fit_and_predict_under_jit_and_vmap(digits):
  xtr, ytr, xte, _ = digits
  fit = jax.jit(nb.fit_categorical_nb, static_argnames=('num_classes', 'num_categories'))
  params = fit(xtr, ytr, num_classes=NUM_CLASSES, num_categories=17)
  eager = nb.fit_categorical_nb(xtr, ytr, num_classes=NUM_CLASSES, num_categories=17)
  chex.assert_trees_all_close(params, eager, atol=1e-6)
  # Per-example log_joint under vmap equals the batched one.
  per_example = jax.vmap(lambda xi: nb.log_joint(params, xi[None])[0])(xte)
  np.testing.assert_allclose(per_example, nb.log_joint(params, xte), atol=1e-4)
  # vmap over bootstrap resamples of the training set == separate fits.
  idx = np.random.default_rng(0).integers(0, 1437, (3, 1437))
  xj, yj = jnp.asarray(xtr, jnp.float32), jnp.asarray(ytr)
  batched = jax.vmap(lambda i: nb.fit_gaussian_nb(xj[i], yj[i], num_classes=NUM_CLASSES))(idx)
  for b in range(3):
    single = nb.fit_gaussian_nb(
      xtr[idx[b]].astype(np.float32), ytr[idx[b]], num_classes=NUM_CLASSES
    )
    chex.assert_trees_all_close(
      jax.tree.map(lambda a, b=b: a[b], batched), single, rtol=1e-5, atol=1e-6
    )
  jit_lp = jax.jit(nb.predict_log_proba)(params, xte)
  np.testing.assert_allclose(jit_lp, nb.predict_log_proba(params, xte), atol=1e-5)


# ---------------------------------------------------------------------------
# Bad input.


@pytest.mark.parametrize(
  'call,field',
  [
    (lambda x, y: nb.fit_categorical_nb(x[0], y, num_classes=10, num_categories=17), 'x'),
    (lambda x, y: nb.fit_categorical_nb(x, y[:-1], num_classes=10, num_categories=17), 'y'),
    (
      lambda x, y: nb.fit_categorical_nb(
        x, y.astype(np.float32), num_classes=10, num_categories=17
      ),
      'y',
    ),
    (lambda x, y: nb.fit_categorical_nb(x, y, num_classes=5, num_categories=17), 'y'),
    (lambda x, y: nb.fit_categorical_nb(x, y, num_classes=10, num_categories=16), 'x'),
    (lambda x, y: nb.fit_categorical_nb(x * 1.0, y, num_classes=10, num_categories=17), 'x'),
    (lambda x, y: nb.fit_categorical_nb(x, y, num_classes=0, num_categories=17), 'num_classes'),
    (
      lambda x, y: nb.fit_categorical_nb(x, y, num_classes=10, num_categories=17, alpha=0.0),
      'alpha',
    ),
    (lambda x, y: nb.fit_bernoulli_nb(x, y, num_classes=10), 'binary'),
    (lambda x, y: nb.fit_multinomial_nb(-x, y, num_classes=10), 'non-negative'),
    (lambda x, y: nb.fit_gaussian_nb(x, y, num_classes=10, var_smoothing=-1.0), 'var_smoothing'),
    (lambda x, y: nb.log_joint(nb.fit_multinomial_nb(x, y, num_classes=10), x[:, :5]), 'x'),
    (
      lambda x, y: nb.sample(
        nb.fit_multinomial_nb(x, y, num_classes=10), jax.random.key(0), label=0, num=2
      ),
      'num_trials',
    ),
    (
      lambda x, y: nb.sample(
        nb.fit_gaussian_nb(x, y, num_classes=10), jax.random.key(0), label=10, num=2
      ),
      'label',
    ),
    (
      lambda x, y: nb.sample(
        nb.fit_gaussian_nb(x, y, num_classes=10), jax.random.key(0), label=1, num=0
      ),
      'num',
    ),
    (lambda x, y: nb.nb_from_name('poisson'), 'variant'),
  ],
)
def test_bad_input_names_the_field(digits, call, field):
  x, y = digits[0][:50], digits[1][:50]
  with pytest.raises(ValueError, match=field):
    call(x, y)
