"""gm_jax.models.logistic_regression against NumPy and scikit-learn, and against naive Bayes."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import special
from sklearn import linear_model

from gm_jax.models import logistic_regression as lr
from gm_jax.models import naive_bayes as nb

NUM_CLASSES = 10


# ---------------------------------------------------------------------------
# Logistic regression.


@pytest.fixture(scope='module')
def scaled(digits):
  xtr, ytr, xte, yte = digits
  return (xtr / 16).astype(np.float32), ytr, (xte / 16).astype(np.float32), yte


def test_logreg_objective_matches_numpy(scaled):
  x, y, _, _ = scaled
  rng = np.random.default_rng(0)
  params = lr.LogRegParams(
    weight=jnp.asarray(rng.normal(size=(64, 10)), jnp.float32),
    bias=jnp.asarray(rng.normal(size=10), jnp.float32),
  )
  logits = x.astype(np.float64) @ np.asarray(params.weight, np.float64) + np.asarray(
    params.bias, np.float64
  )
  ce = special.logsumexp(logits, axis=1) - logits[np.arange(len(y)), y]
  w = rng.uniform(size=len(y))
  want = (w * ce).sum() / w.sum() + 0.5 * 0.01 * np.sum(np.asarray(params.weight) ** 2)
  got = lr.logreg_objective(params, x, y, l2=0.01, sample_weight=w.astype(np.float32))
  np.testing.assert_allclose(got, want, rtol=1e-5)
  np.testing.assert_allclose(lr.logreg_loss(params, x, y), ce, rtol=1e-4, atol=1e-5)


def _np_objective(weight, bias, x, y, l2, sample_weight=None):
  """sklearn's penalised objective / (C * N) in float64 NumPy: mean CE + l2/2 |W|^2."""
  logits = x.astype(np.float64) @ np.asarray(weight, np.float64) + np.asarray(bias, np.float64)
  ce = special.logsumexp(logits, axis=1) - logits[np.arange(len(y)), y]
  w = np.ones(len(y)) if sample_weight is None else np.asarray(sample_weight, np.float64)
  return (w * ce).sum() / w.sum() + 0.5 * l2 * np.sum(np.asarray(weight, np.float64) ** 2)


def _np_log_loss(weight, bias, x, y):
  logits = x.astype(np.float64) @ np.asarray(weight, np.float64) + np.asarray(bias, np.float64)
  return np.mean(special.logsumexp(logits, axis=1) - logits[np.arange(len(y)), y])


# These compare quantities that do not depend on where scikit-learn's L-BFGS stopped
# (its stopping point moves between releases: 1.9.1 moved one test probability by 0.02):
# the penalised objective at both solutions, evaluated by one NumPy formula, and the
# first-order optimality of ours. Held-out accuracy and log-loss of two near-optimal
# solutions of a strictly convex objective agree loosely.
@pytest.mark.parametrize('inverse_c', [1.0, 100.0])
def test_logreg_reaches_sklearns_objective(scaled, inverse_c):
  x, y, xte, yte = scaled
  l2 = inverse_c / len(y)
  sk = linear_model.LogisticRegression(C=1 / inverse_c, max_iter=2000, tol=1e-8).fit(x, y)
  # sklearn minimises C * sum CE + |W|^2 / 2, i.e. (C N) * (mean CE + |W|^2 / (2 C N)).
  params, objective = lr.fit_logreg(x, y, num_classes=NUM_CLASSES, l2=l2, num_steps=150)
  assert objective[-1] < objective[0]
  ours = _np_objective(params.weight, params.bias, x, y, l2)
  theirs = _np_objective(sk.coef_.T, sk.intercept_, x, y, l2)
  # At least as low as sklearn's solution, up to float32 rounding of our parameters.
  assert ours <= theirs + 1e-5 * max(1.0, abs(theirs))
  # First-order optimality of the regularised objective.
  grad = jax.grad(lr.logreg_objective)(params, x, y, l2=l2)
  assert max(float(jnp.abs(g).max()) for g in jax.tree.leaves(grad)) < 1e-3
  acc = np.mean(np.asarray(lr.logreg_predict(params, xte)) == yte)
  assert abs(acc - sk.score(xte, yte)) <= 0.02
  assert (
    abs(
      _np_log_loss(params.weight, params.bias, xte, yte)
      - _np_log_loss(sk.coef_.T, sk.intercept_, xte, yte)
    )
    <= 0.02
  )


def test_logreg_adam_vmap_over_l2_with_zero_weight_padding(scaled):
  # A 300-example fit padded to 1,437 rows with zero weights, vmapped over two
  # penalties: the same fit as on the 300 examples alone, and as good an optimum of
  # the 300-example objective as sklearn's.
  x, y, xte, yte = scaled
  n = 300
  w = (np.arange(len(y)) < n).astype(np.float32)
  l2s = jnp.array([1e-2, 1e-3])
  fit = lambda l2: lr.fit_logreg(
    x,
    y,
    num_classes=NUM_CLASSES,
    l2=l2,
    solver='adam',
    learning_rate=0.1,
    sample_weight=w,
    num_steps=1000,
  )
  batched, traces = jax.vmap(fit)(l2s)
  chex.assert_shape(batched.weight, (2, 64, NUM_CLASSES))
  for i, l2 in enumerate(np.asarray(l2s)):
    params = jax.tree.map(lambda a, i=i: a[i], batched)
    # The padded objective is the 300-example objective: the same trajectory while it
    # descends. Not to float precision: Adam divides each gradient by its own scale, so
    # the rounding noise of a feature that is zero on every image moves its weight by
    # the full step (then pulled back by the penalty); later, at a constant step, Adam
    # hovers and rounding decides where.
    _, alone = lr.fit_logreg(
      x[:n],
      y[:n],
      num_classes=NUM_CLASSES,
      l2=float(l2),
      solver='adam',
      learning_rate=0.1,
      num_steps=50,
    )
    np.testing.assert_allclose(traces[i, :50], alone, rtol=5e-3)
    sk = linear_model.LogisticRegression(C=1 / (float(l2) * n), max_iter=2000, tol=1e-8).fit(
      x[:n], y[:n]
    )
    ours = _np_objective(params.weight, params.bias, x, y, l2, sample_weight=w)
    theirs = _np_objective(sk.coef_.T, sk.intercept_, x[:n], y[:n], l2)
    # Adam with a constant step hovers near the optimum: within 0.5% of sklearn's.
    assert ours <= theirs * 1.005 + 1e-4
    acc = np.mean(np.asarray(lr.logreg_predict(params, xte)) == yte)
    assert abs(acc - sk.score(xte, yte)) <= 0.02


# ---------------------------------------------------------------------------
# Double counting: the point of the generative / discriminative comparison.


def test_duplicated_features_are_counted_k_times_by_nb_not_by_logreg(scaled, digits):
  xtr, ytr, xte, _ = digits
  k = 3
  nb1 = nb.fit_categorical_nb(xtr, ytr, num_classes=NUM_CLASSES, num_categories=17)
  nbk = nb.fit_categorical_nb(np.tile(xtr, k), ytr, num_classes=NUM_CLASSES, num_categories=17)
  # Naive Bayes: the class-conditional log-likelihood is multiplied by k exactly.
  lik1 = nb.log_joint(nb1, xte) - nb1.log_prior
  likk = nb.log_joint(nbk, np.tile(xte, k)) - nbk.log_prior
  np.testing.assert_allclose(likk, k * lik1, rtol=1e-5)
  conf1 = np.exp(nb.predict_log_proba(nb1, xte)).max(1).mean()
  confk = np.exp(nb.predict_log_proba(nbk, np.tile(xte, k))).max(1).mean()
  assert confk > conf1
  # Logistic regression: k copies with penalty l2 give the same predictor as
  # one copy with l2 / k (the weight is split evenly between the copies).
  x, y, xt, _ = scaled
  l2 = 1e-2
  lrk, _ = lr.fit_logreg(np.tile(x, k), y, num_classes=NUM_CLASSES, l2=l2, num_steps=150)
  lr1, _ = lr.fit_logreg(x, y, num_classes=NUM_CLASSES, l2=l2 / k, num_steps=150)
  np.testing.assert_allclose(
    np.exp(lr.logreg_predict_log_proba(lrk, np.tile(xt, k))),
    np.exp(lr.logreg_predict_log_proba(lr1, xt)),
    atol=2e-3,
  )


# ---------------------------------------------------------------------------
# Bad input.


@pytest.mark.parametrize(
  'call,field',
  [
    (lambda x, y: lr.fit_logreg(x, y, num_classes=10, l2=0.1, solver='newton'), 'solver'),
    (lambda x, y: lr.fit_logreg(x, y, num_classes=10, l2=0.1, solver='adam'), 'learning_rate'),
    (lambda x, y: lr.fit_logreg(x, y, num_classes=10, l2=-1.0), 'l2'),
    (
      lambda x, y: lr.fit_logreg(x, y, num_classes=10, l2=0.1, sample_weight=np.ones(3)),
      'sample_weight',
    ),
  ],
)
def test_bad_input_names_the_field(digits, call, field):
  x, y = digits[0][:50], digits[1][:50]
  with pytest.raises(ValueError, match=field):
    call(x, y)
