"""Frechet distance in a small classifier's feature space, and class coverage.

FID (Heusel et al. 2017, "GANs Trained by a Two Time-Scale Update Rule", eq. 6):
fit Gaussians `N(mu_1, S_1)`, `N(mu_2, S_2)` to two sets of features and report

    ||mu_1 - mu_2||^2 + tr(S_1) + tr(S_2) - 2 tr((S_1 S_2)^{1/2}).

Inception features mean nothing on 8x8 digits, so the features are the penultimate
layer of a classifier that this module trains deterministically on the dataset's own
training split (`train_feature_classifier`; seed, data order and step count are
fixed, no weights file is needed). Numbers are comparable only within one dataset,
one classifier and one sample count; `fid_floor` (real train vs real test) says how
far from 0 a perfect generator can get.

The trace term is computed stably: `S_1 S_2` is not symmetric, so instead of a general
matrix square root (`scipy.linalg.sqrtm`, which can return complex noise) we use
`tr((S_1 S_2)^{1/2}) = tr((S_1^{1/2} S_2 S_1^{1/2})^{1/2})`, whose argument is
symmetric positive semi-definite: two `eigh` calls in float64, eigenvalues clipped at 0.
"""

from __future__ import annotations

from collections.abc import Sequence
import dataclasses
import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from gm_jax.nn.layers import images_to_unit


def gaussian_stats(features) -> tuple[np.ndarray, np.ndarray]:
  """Mean `[D]` and unbiased covariance `[D, D]` (float64) of `features: [N, D]`."""
  f = np.asarray(features, np.float64)
  if f.ndim != 2 or f.shape[0] < 2:
    raise ValueError(f'features must be [N >= 2, D], got shape {f.shape}')
  return f.mean(0), np.cov(f, rowvar=False)


def sqrtm_psd(a) -> np.ndarray:
  """Symmetric square root of a symmetric PSD matrix (negative eigenvalues clipped)."""
  a = np.asarray(a, np.float64)
  w, v = np.linalg.eigh((a + a.T) / 2)
  return (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T


def trace_sqrt_product(s1, s2) -> float:
  """`tr((S_1 S_2)^{1/2})` for symmetric PSD `S_1`, `S_2` (see the module docstring)."""
  r1 = sqrtm_psd(s1)
  m = r1 @ np.asarray(s2, np.float64) @ r1
  w = np.linalg.eigvalsh((m + m.T) / 2)
  return float(np.sum(np.sqrt(np.clip(w, 0.0, None))))


def frechet_distance(mu1, sigma1, mu2, sigma2) -> float:
  """Frechet (2-Wasserstein) distance between `N(mu1, sigma1)` and `N(mu2, sigma2)`."""
  mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
  if mu1.shape != mu2.shape or np.shape(sigma1) != np.shape(sigma2):
    raise ValueError(
      f'mismatched statistics: mu {mu1.shape} vs {mu2.shape}, '
      f'sigma {np.shape(sigma1)} vs {np.shape(sigma2)}'
    )
  diff = mu1 - mu2
  value = (
    diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * trace_sqrt_product(sigma1, sigma2)
  )
  return float(max(value, 0.0))


def fid_from_features(features_a, features_b) -> float:
  """FID between two feature sets `[N_a, D]`, `[N_b, D]`."""
  return frechet_distance(*gaussian_stats(features_a), *gaussian_stats(features_b))


def class_coverage(predicted, num_classes: int, *, min_share: float = 0.02) -> dict:
  """Mode-collapse signals from the classes a classifier assigns to samples.

  Args:
    predicted: `[N]` int class predictions for generated samples.
    num_classes: number of classes.
    min_share: a class counts as covered when it receives at least this fraction
      of the samples (0.02 = a fifth of the uniform share of 10 classes), so a few
      stray samples do not hide a collapse.

  Returns:
    `class_coverage` (covered classes), `class_entropy_nats` (entropy of the
    predicted-class histogram; `log(num_classes)` when uniform) and
    `class_histogram` (fractions).
  """
  predicted = np.asarray(predicted)
  hist = np.bincount(predicted, minlength=num_classes)[:num_classes] / max(len(predicted), 1)
  nz = hist[hist > 0]
  return {
    'class_coverage': int(np.sum(hist >= min_share)),
    'class_entropy_nats': float(-np.sum(nz * np.log(nz))),
    'class_histogram': [round(float(h), 4) for h in hist],
  }


class FeatureNet(nn.Module):
  """MLP classifier; `__call__` returns `(logits [B, K], features [B, F])`.

  An MLP rather than a CNN: on 8x8 digits it is as accurate (~0.95-0.97) and it
  compiles and trains in seconds on a CPU, which keeps evaluation cheap.
  """

  num_classes: int
  hidden: Sequence[int] = (256,)
  feature_dim: int = 64

  @nn.compact
  def __call__(self, x):
    x = x.reshape((x.shape[0], -1))
    for width in self.hidden:
      x = nn.relu(nn.Dense(width)(x))
    features = nn.relu(nn.Dense(self.feature_dim)(x))
    return nn.Dense(self.num_classes)(features), features


@dataclasses.dataclass(frozen=True)
class FeatureClassifier:
  """A trained `FeatureNet` and the level grid of the images it takes."""

  net: FeatureNet
  params: dict
  num_levels: int

  @functools.cached_property
  def _apply(self):
    return jax.jit(lambda p, x: self.net.apply(p, images_to_unit(x, self.num_levels)))

  def logits_and_features(self, images, batch_size: int = 512) -> tuple[np.ndarray, np.ndarray]:
    """uint8 `images [N, H, W, C]` -> `(logits [N, K], features [N, F])` as NumPy."""
    logits, feats = [], []
    for i in range(0, len(images), batch_size):
      lo, fe = self._apply(self.params, jnp.asarray(images[i : i + batch_size]))
      logits.append(np.asarray(lo))
      feats.append(np.asarray(fe))
    return np.concatenate(logits), np.concatenate(feats)

  def accuracy(self, images, labels) -> float:
    logits, _ = self.logits_and_features(images)
    return float(np.mean(np.argmax(logits, -1) == np.asarray(labels)))


def train_feature_classifier(
  images,
  labels,
  *,
  num_levels: int,
  num_classes: int,
  seed: int = 0,
  num_steps: int = 1000,
  batch_size: int = 128,
  learning_rate: float = 1e-3,
) -> FeatureClassifier:
  """Trains a `FeatureNet` deterministically (fixed seed, data order and steps).

  Args:
    images: uint8 `[N, H, W, C]` on `[0, num_levels)`.
    labels: int `[N]` in `[0, num_classes)`.
  """
  images = np.asarray(images)
  labels = np.asarray(labels, np.int32)
  net = FeatureNet(num_classes=num_classes)
  params = jax.jit(net.init)(jax.random.key(seed), jnp.asarray(images[:1]))
  tx = optax.adam(learning_rate)
  rng = np.random.default_rng(seed)
  batch = min(batch_size, len(images))
  order = np.concatenate(
    [rng.permutation(len(images)) for _ in range(num_steps * batch // len(images) + 1)]
  )
  idx = order[: num_steps * batch].reshape(num_steps, batch)
  x_all, y_all = jnp.asarray(images), jnp.asarray(labels)

  def step(carry, rows):
    p, s = carry
    x = images_to_unit(x_all[rows], num_levels)

    def loss_fn(p):
      logits, _ = net.apply(p, x)
      return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, y_all[rows]))

    grads = jax.grad(loss_fn)(p)
    updates, s = tx.update(grads, s, p)
    return (optax.apply_updates(p, updates), s), None

  (params, _), _ = jax.jit(lambda c, i: jax.lax.scan(step, c, i))(
    (params, tx.init(params)), jnp.asarray(idx)
  )
  return FeatureClassifier(net=net, params=params, num_levels=num_levels)


_CLASSIFIERS: dict = {}


def classifier_for(splits, *, seed: int = 0) -> FeatureClassifier:
  """The feature classifier of a labelled image dataset, trained once per process.

  Trained on `splits.train` only (never on test), so the real-train vs real-test
  FID floor is not flattered by memorisation of the test split.
  """
  info = splits.info
  if not info.num_classes:
    raise ValueError(
      f'FID needs a labelled dataset to train its feature classifier; {info.name!r} has no labels'
    )
  train = splits.train
  key = (info.name, len(train['label']), int(np.sum(train['label'])), seed)
  if key not in _CLASSIFIERS:
    _CLASSIFIERS[key] = train_feature_classifier(
      train['image'],
      train['label'],
      num_levels=info.num_levels,
      num_classes=info.num_classes,
      seed=seed,
    )
  return _CLASSIFIERS[key]


def sample_quality(classifier: FeatureClassifier, samples, splits, *, num_classes: int) -> dict:
  """FID of `samples` against real test, the real-train floor, class coverage.

  `samples` should have as many images as `splits.train` so that the FID and its
  floor use the same sample size (FID is biased upwards for small samples).
  """
  _, test_f = classifier.logits_and_features(splits.test['image'])
  _, train_f = classifier.logits_and_features(splits.train['image'])
  logits, sample_f = classifier.logits_and_features(samples)
  out = {
    'fid': fid_from_features(sample_f, test_f),
    'fid_floor': fid_from_features(train_f, test_f),
    'fid_num_samples': int(len(samples)),
    'fid_classifier_test_accuracy': classifier.accuracy(splits.test['image'], splits.test['label']),
  }
  out.update(class_coverage(np.argmax(logits, -1), num_classes))
  return out
