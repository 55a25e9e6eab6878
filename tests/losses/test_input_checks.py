"""Every public loss refuses per-example inputs that would broadcast silently (#40, part 7).

The checks run on static shapes, so they hold under `jax.jit` as well as eagerly.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import special

from gm_jax import losses

B = 4
_z = lambda *shape: jnp.zeros(shape, jnp.float32)

# (loss, args with one per-example input of the wrong shape, the argument to be named).
MISMATCHES = {
  'elbo_b_vs_b1': (losses.elbo, (_z(B), _z(B, 1)), 'kl'),
  'elbo_8_vs_4': (losses.elbo, (_z(8), _z(4)), 'kl'),
  'iwae_bound': (losses.iwae_bound, (_z(2, B), _z(2, B), _z(2, B + 1)), 'log_qz_given_x'),
  'gaussian_kl': (losses.gaussian_kl, (_z(B), _z(B, 1)), 'log_var'),
  'gaussian_log_prob': (losses.gaussian_log_prob, (_z(B), _z(B, 1), _z(B)), 'mean'),
  'bernoulli_log_prob': (losses.bernoulli_log_prob, (_z(B), _z(B, 1)), 'x'),
  'categorical_log_prob': (
    losses.categorical_log_prob,
    (_z(B, 3), jnp.zeros((B + 1,), jnp.int32)),
    'labels',
  ),
  'autoregressive_nll': (
    losses.autoregressive_nll,
    (_z(B, 5, 3), jnp.zeros((B, 4), jnp.int32)),
    'labels',
  ),
  'flow_nll': (losses.flow_nll, (_z(B, 2), _z(B, 1)), 'log_det'),
  'discretized_logistic_log_prob': (
    lambda x, m, s: losses.discretized_logistic_log_prob(x, m, s, num_levels=4),
    (_z(B), _z(B, 1), _z(B)),
    'mean',
  ),
  'discretized_logistic_mixture_log_prob': (
    lambda x, w, m, s: losses.discretized_logistic_mixture_log_prob(x, w, m, s, num_levels=4),
    (_z(B, 2), _z(B, 2, 3), _z(B, 2, 3), _z(B + 1, 2, 3)),
    'log_scales',
  ),
  'discriminator_loss': (losses.discriminator_loss, (_z(B), _z(B + 1)), 'fake_logits'),
  'lsgan_discriminator_loss': (losses.lsgan_discriminator_loss, (_z(B), _z(B + 1)), 'fake_out'),
  'cycle_consistency_loss': (losses.cycle_consistency_loss, (_z(B, 2), _z(B, 1)), 'x_cycled'),
  'diffusion_loss': (losses.diffusion_loss, (_z(B, 2), _z(B, 2), _z(B, 1), _z(B)), 'noise'),
  'diffusion_loss_log_snr': (
    losses.diffusion_loss,
    (_z(B, 2), _z(B, 2), _z(B, 2), _z(B, 1)),
    'log_snr',
  ),
  'flow_matching_loss': (losses.flow_matching_loss, (_z(B, 2), _z(B, 2), _z(B + 1, 2)), 'velocity'),
}


@pytest.mark.parametrize('case', sorted(MISMATCHES))
@pytest.mark.parametrize('jitted', [False, True], ids=['eager', 'jit'])
def test_mismatched_per_example_inputs_name_the_argument(case, jitted):
  fn, args, name = MISMATCHES[case]
  with pytest.raises(ValueError, match=name):
    (jax.jit(fn) if jitted else fn)(*args)


def test_elbo_of_matching_shapes_is_unchanged():
  log_px, kl = np.array([-3.0, -1.5]), np.array([0.5, 2.0])
  np.testing.assert_allclose(jax.jit(losses.elbo)(log_px, kl), log_px - kl)


def test_gaussian_kl_still_takes_a_shared_log_var():
  mean, log_var = np.array([[0.3, -1.0], [2.0, 0.1]]), np.array([0.2, -0.4])
  expected = 0.5 * np.sum(np.exp(log_var) + mean**2 - 1 - log_var, axis=1)
  np.testing.assert_allclose(jax.jit(losses.gaussian_kl)(mean, log_var), expected, rtol=1e-5)


@pytest.mark.parametrize('bad', [3, -1])
def test_categorical_labels_out_of_range_are_an_error_outside_jit(bad):
  logits = jnp.zeros((2, 3))
  with pytest.raises(ValueError, match=rf'\[0, 3\); got a label {bad}'):
    losses.categorical_log_prob(logits, jnp.array([0, bad]))
  with pytest.raises(ValueError, match=str(bad)):
    losses.autoregressive_nll(jnp.zeros((2, 1, 3)), jnp.array([[0], [bad]]))


def test_categorical_labels_out_of_range_give_nan_under_jit():
  logits = np.array([[0.5, -1.0, 2.0], [1.0, 0.0, -2.0]], np.float32)
  out = np.asarray(jax.jit(losses.categorical_log_prob)(logits, jnp.array([2, 3])))
  assert np.isnan(out[1])
  np.testing.assert_allclose(out[0], logits[0, 2] - special.logsumexp(logits[0]), rtol=1e-6)


def test_iwae_bound_with_no_samples_names_k():
  with pytest.raises(ValueError, match='K >= 1.*K = 0'):
    losses.iwae_bound(_z(0, B), _z(0, B), _z(0, B))


def test_uint8_labels_over_all_256_levels_stay_finite_under_jit():
  # Regression: the traced range check compared uint8 labels with 256, which wraps to 0,
  # and turned every log-probability of 8-bit images into NaN.
  logits = jnp.zeros((2, 3, 256))
  labels = jnp.asarray([[0, 128, 255], [1, 2, 254]], jnp.uint8)
  got = jax.jit(losses.categorical_log_prob)(logits, labels)
  np.testing.assert_allclose(np.asarray(got), np.full(2, 3 * -np.log(256.0)), rtol=1e-6)
