"""Calibration of a classifier's predicted probabilities.

Expected calibration error (ECE) with equal-width confidence bins, as in
Naeini et al. (2015) and Guo et al., "On Calibration of Modern Neural Networks"
(ICML 2017), eq. (3):

  ECE = sum_b |B_b| / N * |acc(B_b) - conf(B_b)|,

where an example's confidence is its top predicted probability, its prediction
the arg-max class, and bin b holds the confidences in the half-open interval
(b / M, (b + 1) / M] (M = `num_bins`; a confidence of exactly 0 goes to bin 0).
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp

from gm_jax import _checks


class ReliabilityBins(NamedTuple):
  """Per-bin statistics of a reliability diagram.

  Attributes:
    count: [num_bins] number of examples whose confidence falls in the bin.
    accuracy: [num_bins] mean accuracy in the bin (0 for an empty bin).
    confidence: [num_bins] mean confidence in the bin (0 for an empty bin).
    edges: [num_bins + 1] bin edges, 0 to 1.
  """

  count: jax.Array  # type: ignore[assignment]  # the public field name shadows tuple.count
  accuracy: jax.Array
  confidence: jax.Array
  edges: jax.Array


def _check(probs, labels, num_bins):
  """Validates at the boundary (`gm_jax._checks`); errors name the argument."""
  _checks.check_positive_int(num_bins, 'num_bins')
  _checks.check_matrix(probs, 'probs', '[N, num_classes]')
  _checks.check_labels(
    labels, probs, name='labels', rows_name='probs', num_classes=jnp.shape(probs)[1]
  )


def reliability_bins(probs: jax.Array, labels: jax.Array, *, num_bins: int = 15) -> ReliabilityBins:
  """Counts, accuracy and mean confidence per equal-width confidence bin.

  Args:
    probs: [N, num_classes] predicted class probabilities (rows sum to 1).
    labels: [N] integer true labels.
    num_bins: number of equal-width bins on [0, 1].

  Returns:
    `ReliabilityBins` with [num_bins] arrays.
  """
  _check(probs, labels, num_bins)
  probs = jnp.asarray(probs)
  confidence = jnp.max(probs, axis=-1)
  correct = (jnp.argmax(probs, axis=-1) == labels).astype(probs.dtype)
  edges = jnp.linspace(0.0, 1.0, num_bins + 1, dtype=probs.dtype)
  # side='left' on the interior edges puts c in bin b iff edges[b] < c <= edges[b+1].
  bin_index = jnp.searchsorted(edges[1:-1], confidence, side='left')
  count = jax.ops.segment_sum(jnp.ones_like(confidence), bin_index, num_segments=num_bins)
  sum_correct = jax.ops.segment_sum(correct, bin_index, num_segments=num_bins)
  sum_conf = jax.ops.segment_sum(confidence, bin_index, num_segments=num_bins)
  safe = jnp.maximum(count, 1.0)
  return ReliabilityBins(
    count=count, accuracy=sum_correct / safe, confidence=sum_conf / safe, edges=edges
  )


def expected_calibration_error(
  probs: jax.Array, labels: jax.Array, *, num_bins: int = 15
) -> jax.Array:
  """Expected calibration error with equal-width bins (Guo et al. 2017, eq. 3).

  Args:
    probs: [N, num_classes] predicted class probabilities (rows sum to 1).
    labels: [N] integer true labels.
    num_bins: number of equal-width bins on [0, 1].

  Returns:
    Scalar ECE in [0, 1].
  """
  bins = reliability_bins(probs, labels, num_bins=num_bins)
  weight = bins.count / jnp.sum(bins.count)
  return jnp.sum(weight * jnp.abs(bins.accuracy - bins.confidence))


def classification_metrics(log_probs: jax.Array, labels: jax.Array, *, num_bins: int = 15) -> dict:
  """Accuracy, log-loss and ECE of predicted log-probabilities, as floats.

  Args:
    log_probs: [N, num_classes] predicted log p(y | x).
    labels: [N] integer true labels.
    num_bins: ECE bins.

  Returns:
    `{'accuracy', 'log_loss', 'ece'}`; log-loss is the mean of
    -log p(y_n | x_n) in nats.
  """
  log_probs = jnp.asarray(log_probs)
  _check(log_probs, labels, num_bins)
  accuracy, log_loss, ece = _classification_metrics(
    log_probs, jnp.asarray(labels), num_bins=num_bins
  )
  return {'accuracy': float(accuracy), 'log_loss': float(log_loss), 'ece': float(ece)}


@functools.partial(jax.jit, static_argnames=('num_bins',))
def _classification_metrics(log_probs, labels, *, num_bins):
  nll = -jnp.take_along_axis(log_probs, labels[:, None], axis=-1)[:, 0]
  accuracy = jnp.mean(jnp.argmax(log_probs, -1) == labels)
  ece = expected_calibration_error(jnp.exp(log_probs), labels, num_bins=num_bins)
  return accuracy, jnp.mean(nll), ece
