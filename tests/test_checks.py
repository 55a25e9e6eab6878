"""gm_jax._checks: the classifiers' and calibration's input checks name the argument."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gm_jax import _checks


@pytest.mark.parametrize(
  'labels,match',
  [
    (np.zeros(4, np.int32), r'labels must be \[N\] = \(3,\) like probs'),
    (np.zeros(3, np.float32), 'labels must hold integer labels'),
    (np.array([0, 2, 1], np.int32), r'labels must lie in \[0, num_classes=2\), got range \[0, 2\]'),
    (np.array([-1, 0, 1], np.int32), r'got range \[-1, 1\]'),
  ],
)
def test_bad_labels_are_named(labels, match):
  with pytest.raises(ValueError, match=match):
    _checks.check_labels(labels, np.ones((3, 2)), name='labels', rows_name='probs', num_classes=2)


def test_good_labels_pass_and_traced_values_are_not_read():
  _checks.check_labels(np.array([0, 1, 1], np.int32), np.ones((3, 2)), num_classes=2)
  # Under jit the range cannot be read: only shape and dtype are checked.
  jax.jit(lambda y: _checks.check_labels(y, np.ones((3, 2)), num_classes=2))(
    np.array([0, 5, 1], np.int32)
  )


def test_matrix_positive_int_and_positive_values():
  with pytest.raises(ValueError, match=r'probs must be \[N, C\], got shape \(3,\)'):
    _checks.check_matrix(np.ones(3), 'probs', '[N, C]')
  for bad in (0, -2, 1.5, '3'):
    with pytest.raises(ValueError, match='num_bins must be a positive int'):
      _checks.check_positive_int(bad, 'num_bins')
  _checks.check_positive_int(np.int64(4), 'num_bins')
  with pytest.raises(ValueError, match='alpha must be > 0'):
    _checks.check_positive(np.array([1.0, 0.0]), 'alpha')
  _checks.check_positive(0.5, 'alpha')
  assert _checks.as_float(np.arange(3)).dtype == jnp.result_type(float)
