"""VAE / CVAE: likelihoods normalise, IWAE against brute-force integration, chunking."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import special
from scipy import stats

from gm_jax import losses
from gm_jax.models import vae as vae_lib


def _perturbed(params, key, scale=0.5):
  leaves, tree = jax.tree.flatten(params)
  keys = jax.random.split(key, len(leaves))
  return jax.tree.unflatten(
    tree, [l + scale * jax.random.normal(k, l.shape) for l, k in zip(leaves, keys)]
  )


def _tiny(
  likelihood='categorical', levels=3, latent=1, classes=0, arch='mlp', shape=(2, 2, 1), scale=0.5
):
  cls = vae_lib.ConditionalVAE if classes else vae_lib.VAE
  kw = dict(num_classes=classes) if classes else {}
  model = cls(
    image_shape=shape,
    num_levels=levels,
    latent_dim=latent,
    hidden=(16,),
    architecture=arch,
    likelihood=likelihood,
    **kw,
  )
  x = jnp.zeros((1,) + shape, jnp.int32)
  labels = jnp.zeros((1,), jnp.int32) if classes else None
  # one jitted program (eager init compiled every op on its own for every model's shapes)
  init = jax.jit(
    lambda x, labels: _perturbed(model.init(jax.random.key(0), x, labels), jax.random.key(1), scale)
  )
  return model, init(x, labels)


@pytest.mark.parametrize(
  'likelihood,levels', [('categorical', 3), ('bernoulli', 2), ('discretized_logistic', 4)]
)
def test_decoder_likelihood_sums_to_one_over_all_images(likelihood, levels):
  model, params = _tiny(likelihood, levels)
  images = jnp.array(list(itertools.product(range(levels), repeat=4)), jnp.int32).reshape(
    -1, 2, 2, 1
  )
  z = jnp.full((images.shape[0], 1), 0.3)
  log_p = jax.jit(
    lambda p, z, x: model.log_likelihood(model.apply(p, z, method=vae_lib.VAE.decode), x)
  )(params, z, images)
  np.testing.assert_allclose(
    float(special.logsumexp(np.asarray(log_p, np.float64))), 0.0, atol=2e-5
  )


def test_iwae_matches_brute_force_marginal_likelihood():
  model, params = _tiny('categorical', 3, latent=1)
  x = jnp.array([[[[0], [2]], [[1], [1]]], [[[2], [2]], [[0], [0]]]], jnp.int32)
  # log p(x) = log \int p(x|z) N(z; 0, 1) dz by quadrature over a fine grid.
  grid = np.linspace(-9, 9, 6001)

  @jax.jit
  def log_likelihoods(params, z, x):  # [2, len(grid)]: log p(x_i | z) on the grid
    out = model.apply(params, z, method=vae_lib.VAE.decode)
    return jnp.stack(
      [model.log_likelihood(out, jnp.broadcast_to(xi, (len(z),) + xi.shape)) for xi in x]
    )

  log_pxs = np.asarray(
    log_likelihoods(params, jnp.asarray(grid[:, None], jnp.float32), x), np.float64
  )
  exact = []
  for i in range(2):
    log_px = log_pxs[i]
    exact.append(special.logsumexp(log_px + stats.norm.logpdf(grid)) + np.log(grid[1] - grid[0]))
  exact = np.array(exact)
  k = 20000
  iwae = np.asarray(
    vae_lib.iwae_estimate(
      model, params, x, None, jax.random.key(2), num_samples=k, chunk_size=4096
    ),
    np.float64,
  )
  log_px, log_pz, log_qz = vae_lib.iwae_log_weights(model, params, x, None, jax.random.key(2), k)
  log_w = np.asarray(log_px + log_pz - log_qz, np.float64)  # [K, B]
  np.testing.assert_allclose(iwae, special.logsumexp(log_w, axis=0) - np.log(k), atol=1e-4)
  # Delta-method standard error of log(mean w): std(w) / (mean(w) sqrt(K)).
  w = np.exp(log_w - log_w.max(axis=0))
  se = w.std(axis=0) / (w.mean(axis=0) * np.sqrt(k))
  assert np.all(se < 0.05)
  assert np.all(np.abs(iwae - exact) < 4 * se + 1e-3), (iwae, exact, se)
  # The average single-sample ELBO is a lower bound, and IWAE is tighter.
  mean_elbo = log_w.mean(axis=0)
  assert np.all(mean_elbo <= exact + 1e-3)
  assert np.all(iwae >= mean_elbo)


def test_mean_log_weight_equals_analytic_kl_elbo():
  model, params = _tiny('categorical', 3, latent=2)
  x = jnp.array([[[[0], [2]], [[1], [1]]]], jnp.int32)
  log_px, log_pz, log_qz = vae_lib.iwae_log_weights(
    model, params, x, None, jax.random.key(0), 20000
  )
  mc = np.asarray(log_px + log_pz - log_qz, np.float64)[:, 0]
  mean, log_var = model.apply(params, x, None, method=vae_lib.VAE.encode)
  # Analytic ELBO = E_q[log p(x|z)] - KL; KL in closed form from numpy.
  m, lv = np.asarray(mean, np.float64)[0], np.asarray(log_var, np.float64)[0]
  kl = 0.5 * np.sum(np.exp(lv) + m**2 - 1 - lv)
  expected = np.mean(np.asarray(log_px, np.float64)[:, 0]) - kl
  assert abs(mc.mean() - expected) < 4 * mc.std() / np.sqrt(len(mc)) + 1e-4


def test_iwae_chunking_does_not_change_the_estimate():
  model, params = _tiny('categorical', 3, latent=2)
  x = jnp.array([[[[0], [2]], [[1], [1]]], [[[2], [2]], [[0], [0]]]], jnp.int32)
  whole = vae_lib.iwae_estimate(
    model, params, x, None, jax.random.key(5), num_samples=300, chunk_size=300
  )
  chunked = vae_lib.iwae_estimate(
    model, params, x, None, jax.random.key(5), num_samples=300, chunk_size=7
  )
  np.testing.assert_allclose(np.asarray(whole), np.asarray(chunked), rtol=1e-5)
  one = vae_lib.iwae_estimate(model, params, x, None, jax.random.key(5), num_samples=1)
  lw = vae_lib.iwae_log_weights(model, params, x, None, jax.random.key(5), 1)
  np.testing.assert_allclose(np.asarray(one), np.asarray(lw[0] + lw[1] - lw[2])[0], rtol=1e-6)


def test_elbo_gradients_are_finite_for_all_likelihoods_and_architectures():
  for likelihood, arch in [('categorical', 'conv'), ('discretized_logistic', 'mlp')]:
    for levels in (17,):
      model, params = _tiny(likelihood, levels, latent=4, arch=arch, shape=(8, 8, 1), scale=0.05)
      x = jax.random.randint(jax.random.key(0), (3, 8, 8, 1), 0, levels)

      def loss(p, model=model, x=x):  # binds this iteration's model and batch (B023)
        return -jnp.mean(
          vae_lib.elbo_terms(model, p, x, None, jax.random.key(1), train=True)['elbo']
        )

      value, grads = jax.jit(jax.value_and_grad(loss))(params)
      assert np.isfinite(float(value))
      assert all(np.isfinite(np.asarray(g)).all() for g in jax.tree.leaves(grads))


def test_cvae_conditions_on_the_label():
  model, params = _tiny('categorical', 3, latent=2, classes=4)
  z = jnp.zeros((2, 2))
  out = model.apply(params, z, jnp.array([0, 3]), method=vae_lib.VAE.decode)
  assert not np.allclose(np.asarray(out[0]), np.asarray(out[1]))
  with pytest.raises(ValueError, match='needs labels'):
    model.apply(params, z, None, method=vae_lib.VAE.decode)
  samples = vae_lib.sample_prior(model, params, jax.random.key(0), 5, jnp.arange(5) % 4)
  assert samples.shape == (5, 2, 2, 1) and samples.dtype == jnp.int32
  assert int(samples.min()) >= 0 and int(samples.max()) < 3


@pytest.mark.parametrize(
  'kwargs,match',
  [
    (dict(likelihood='gaussian'), 'likelihood must be one of'),
    (dict(architecture='resnet'), 'architecture must be one of'),
    (dict(likelihood='bernoulli', num_levels=17), 'binary data'),
    (dict(architecture='conv', image_shape=(6, 6, 1)), 'divisible by 4'),
  ],
)
def test_bad_model_settings_are_named(kwargs, match):
  base = dict(image_shape=(8, 8, 1), num_levels=17)
  base.update(kwargs)
  with pytest.raises(ValueError, match=match):
    vae_lib.VAE(**base)


def test_bernoulli_decoder_matches_scipy():
  model, params = _tiny('bernoulli', 2)
  x = jnp.array([[[[0], [1]], [[1], [0]]]], jnp.int32)
  out = model.apply(params, jnp.array([[0.2]]), method=vae_lib.VAE.decode)
  p = 1 / (1 + np.exp(-np.asarray(out[..., 0], np.float64)))
  expected = stats.bernoulli.logpmf(np.asarray(x), p).sum()
  np.testing.assert_allclose(float(model.log_likelihood(out, x)[0]), expected, rtol=1e-5)
  np.testing.assert_allclose(
    float(losses.bits_per_dim(model.log_likelihood(out, x), num_dims=4)[0]),
    expected / 4 / np.log(2),
    rtol=1e-5,
  )


def test_wrong_image_shape_is_named():
  model, params = _tiny('categorical', 3)
  with pytest.raises(ValueError, match=r'built for images of shape \(2, 2, 1\)'):
    model.apply(params, jnp.zeros((1, 3, 3, 1), jnp.int32), method=vae_lib.VAE.encode)


# --- decoder output bias at the data's marginals (Burda et al. 2016's initialisation) ---


def _zero_decoder_weights(params):
  """Every decoder kernel set to 0: the output is the last bias whatever z is."""
  dec = params['params']['decoder']
  dec = {name: dict(layer, kernel=jnp.zeros_like(layer['kernel'])) for name, layer in dec.items()}
  return dict(params, params=dict(params['params'], decoder=dec))


def test_marginal_bias_bernoulli_decoder_gives_the_clipped_pixel_means():
  rng = np.random.default_rng(0)
  images = (rng.random((40, 2, 3, 1)) < [[[0.9], [0.1], [0.5]], [[0.0], [1.0], [0.3]]]).astype(
    np.uint8
  )
  marg = vae_lib.pixel_marginals(images, num_levels=2, likelihood='bernoulli')
  np.testing.assert_allclose(marg, images.mean(0))
  bias = vae_lib.marginal_output_bias(marg, likelihood='bernoulli')
  assert bias.shape == (6,) and bias.dtype == np.float32
  model = vae_lib.VAE(
    image_shape=(2, 3, 1),
    num_levels=2,
    latent_dim=2,
    hidden=(8, 8),
    likelihood='bernoulli',
    activation='tanh',
  )
  params = model.init(jax.random.key(0), jnp.zeros((1, 2, 3, 1), jnp.int32))
  params = _zero_decoder_weights(vae_lib.with_output_bias(model, params, bias))
  z = jax.random.normal(jax.random.key(1), (5, 2))
  out = model.apply(params, z, method=vae_lib.VAE.decode)
  p = np.clip(images.mean(0), 1e-3, 1 - 1e-3)  # Burda et al.'s clip, independently
  np.testing.assert_allclose(
    np.asarray(vae_lib.decoder_mean(out, likelihood='bernoulli', num_levels=2)),
    np.broadcast_to(p, (5, 2, 3, 1)),
    rtol=1e-5,
  )
  x = images[:5].astype(np.int32)
  np.testing.assert_allclose(
    np.asarray(model.log_likelihood(out, x)), stats.bernoulli.logpmf(x, p).sum((1, 2, 3)), rtol=1e-5
  )


def test_marginal_bias_with_probabilities_is_the_mean_intensity():
  """Dynamic binarisation: the marginal is the mean Bernoulli probability, not one draw."""
  grey = np.array([[[[0]], [[255]]], [[[51]], [[255]]]], np.uint8)  # [2, 2, 1, 1]
  marg = vae_lib.pixel_marginals(
    np.zeros_like(grey), num_levels=2, likelihood='bernoulli', probabilities=grey / 255.0
  )
  np.testing.assert_allclose(marg[:, 0, 0], [0.1, 1.0])
  np.testing.assert_allclose(
    special.expit(vae_lib.marginal_output_bias(marg, likelihood='bernoulli')),
    [0.1, 0.999],
    rtol=1e-6,
  )


def test_marginal_bias_categorical_decoder_gives_the_level_frequencies():
  images = np.array([0, 1, 1, 2, 2, 2, 2, 2], np.int32).reshape(8, 1, 1, 1)
  images = np.concatenate([images, np.zeros_like(images)], axis=2)  # pixel 2: always level 0
  marg = vae_lib.pixel_marginals(images, num_levels=3, likelihood='categorical')
  assert marg.shape == (1, 2, 1, 3)
  np.testing.assert_allclose(marg.sum(-1), 1.0)
  model = vae_lib.VAE(image_shape=(1, 2, 1), num_levels=3, latent_dim=1, hidden=(4,))
  params = model.init(jax.random.key(0), jnp.zeros((1, 1, 2, 1), jnp.int32))
  params = _zero_decoder_weights(
    vae_lib.with_output_bias(
      model, params, vae_lib.marginal_output_bias(marg, likelihood='categorical')
    )
  )
  out = model.apply(params, jnp.zeros((1, 1)), method=vae_lib.VAE.decode)
  probs = np.asarray(jax.nn.softmax(out, -1))[0]
  np.testing.assert_allclose(probs[0, 0, 0], [1 / 8, 2 / 8, 5 / 8], rtol=1e-5)
  want = np.array([1.0, 1e-3, 1e-3]) / (1 + 2e-3)  # zero frequencies clipped at 1e-3
  np.testing.assert_allclose(probs[0, 1, 0], want, rtol=1e-5)


def test_marginal_bias_bad_inputs_are_named():
  with pytest.raises(ValueError, match="'bernoulli' or 'categorical'"):
    vae_lib.pixel_marginals(np.zeros((2, 1, 1, 1)), num_levels=4, likelihood='discretized_logistic')
  with pytest.raises(ValueError, match=r'needs binary images \(num_levels=2\)'):
    vae_lib.pixel_marginals(np.zeros((2, 1, 1, 1)), num_levels=4, likelihood='bernoulli')
  with pytest.raises(ValueError, match=r'non-empty \[N, H, W, C\]'):
    vae_lib.pixel_marginals(np.zeros((0, 1, 1, 1)), num_levels=2, likelihood='bernoulli')
  conv = vae_lib.VAE(
    image_shape=(4, 4, 1), num_levels=2, architecture='conv', likelihood='bernoulli'
  )
  with pytest.raises(ValueError, match="needs architecture='mlp'"):
    vae_lib.with_output_bias(conv, {}, np.zeros(16, np.float32))  # refused before params
  mlp, params = _tiny('bernoulli', 2)
  with pytest.raises(ValueError, match=r'has shape \(4,\), got \(5,\)'):
    vae_lib.with_output_bias(mlp, params, np.zeros(5, np.float32))
