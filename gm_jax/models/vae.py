"""Variational autoencoders (Kingma & Welling 2014) and the conditional VAE (Sohn et al. 2015).

The model is a Flax module (`gm_jax.models.vae_net`, re-exported here) with separate
`encode`, `decode` and `log_likelihood` methods; the objectives (ELBO, IWAE) are composed
from `gm_jax.losses` by the pure functions of this file, which take explicit PRNG keys:

    mean, log_var = encoder(x)                      # q(z|x) = N(mean, diag exp(log_var))
    z = mean + exp(log_var / 2) * eps, eps ~ N(0,I) # reparameterisation trick
    ELBO = log p(x|z) - KL(q(z|x) || N(0, I))       # Kingma & Welling 2014, eq. 10
    IWAE_K = logsumexp_k [log p(x|z_k) + log p(z_k) - log q(z_k|x)] - log K
                                                     # Burda et al. 2016, eq. 8

Images are integers `[B, H, W, C]` on the level grid `[0, num_levels)`. Decoder
likelihoods: `categorical` (a softmax over the `num_levels` values of every
sub-pixel), `bernoulli` (binary data, `num_levels == 2`) and `discretized_logistic`
(PixelCNN++ bins). All three are distributions over the discrete data, so their
negative log-likelihood in bits/dim is directly comparable across the project.

The building blocks (convolutional encoder and decoder, the second stochastic layer, the
three likelihoods) live in `gm_jax.models.vae_blocks` and are importable from here.
"""

from __future__ import annotations

import math
from typing import Any, cast

import jax
import jax.numpy as jnp
import numpy as np

from gm_jax import losses
from gm_jax.models import latent
from gm_jax.models.vae_blocks import ACTIVATIONS
from gm_jax.models.vae_blocks import ARCHITECTURES
from gm_jax.models.vae_blocks import ConvDecoder
from gm_jax.models.vae_blocks import ConvEncoder
from gm_jax.models.vae_blocks import decoder_log_likelihood
from gm_jax.models.vae_blocks import decoder_mean
from gm_jax.models.vae_blocks import LIKELIHOODS
from gm_jax.models.vae_blocks import sample_decoder
from gm_jax.models.vae_blocks import TopLayer
from gm_jax.models.vae_net import ConditionalVAE
from gm_jax.models.vae_net import POSTERIORS
from gm_jax.models.vae_net import VAE
from gm_jax.nn import iaf as iaf_lib
from gm_jax.nn.layers import MLP_OUTPUT

# The building blocks (`gm_jax.models.vae_blocks`) are part of this module's interface.
__all__ = (
  'ACTIVATIONS',
  'ARCHITECTURES',
  'ConditionalVAE',
  'ConvDecoder',
  'ConvEncoder',
  'LIKELIHOODS',
  'MARGINAL_BIAS_CLIP',
  'POSTERIORS',
  'TopLayer',
  'VAE',
  'decoder_log_likelihood',
  'decoder_mean',
  'elbo_terms',
  'iwae_estimate',
  'iwae_log_weights',
  'marginal_output_bias',
  'pixel_marginals',
  'sample_decoder',
  'sample_prior',
  'with_output_bias',
)


def _top_layer_terms(model: VAE, params, z, eps2):
  """Second-layer terms for z `[N, D]`, noise eps2 `[N, D2]` -> (log prior, log q), `[N]`.

  log prior = log p(z | z2) + log N(z2; 0, I); log q = log q(z2 | z), z2 = mean + sd * eps2.
  """
  mean2, log_var2 = cast(Any, model.apply(params, z, method=VAE.encode_top))
  z2 = mean2 + jnp.exp(0.5 * log_var2) * eps2
  prior_mean, prior_log_var = model.apply(params, z2, method=VAE.prior)
  zeros = jnp.zeros_like(z2)
  log_prior = losses.gaussian_log_prob(z, prior_mean, prior_log_var) + losses.gaussian_log_prob(
    z2, zeros, zeros
  )
  return log_prior, losses.gaussian_log_prob(z2, mean2, log_var2)


def _posterior_sample(model: VAE, params, mean, log_var, context, eps):
  """z ~ q(z|x) from the noise eps `[N, D]` and its log-density -> (z `[N, D]`, log q `[N]`).

  Diagonal: z = mean + exp(log_var / 2) eps. IAF: that z0 through the flow, and
  log q = sum log N(eps) - sum log_std - log |det dz / dz0| (`iaf.iaf_log_q`).
  """
  z0 = mean + jnp.exp(0.5 * log_var) * eps
  if model.posterior != 'iaf':
    return z0, losses.gaussian_log_prob(z0, mean, log_var)
  z, log_det = cast(Any, model.apply(params, z0, context, method=VAE.flow))
  return z, iaf_lib.iaf_log_q(eps, 0.5 * log_var, log_det)


# ---------------------------------------------------------------------------------------
# Objectives: pure functions of (model, params, data, key).


def elbo_terms(model: VAE, params, x, labels, key, *, train: bool = False, beta: float = 1.0):
  """Single-sample ELBO per example.

  Returns:
    dict of `[B]` arrays: `elbo`, `log_px_given_z` (reconstruction) and `kl`.
  """
  dropout_key, eps_key = jax.random.split(key)
  rngs = {'dropout': dropout_key}
  mean, log_var, context = cast(
    Any, model.apply(params, x, labels, train=train, method=VAE.encode_with_context, rngs=rngs)
  )
  eps = jax.random.normal(eps_key, mean.shape, mean.dtype)
  z, log_q = _posterior_sample(model, params, mean, log_var, context, eps)
  out = model.apply(
    params,
    z,
    labels,
    train=train,
    method=VAE.decode,
    rngs={'dropout': jax.random.fold_in(dropout_key, 1)},
  )
  log_px = model.log_likelihood(out, x)
  if model.top_latent_dim:
    # No closed form: the KL term is the one-sample estimate log q(z, z2 | x) - log p(z, z2).
    eps2 = jax.random.normal(
      jax.random.fold_in(eps_key, 1), (z.shape[0], model.top_latent_dim), z.dtype
    )
    log_prior, log_q2 = _top_layer_terms(model, params, z, eps2)
    kl = log_q + log_q2 - log_prior
  elif model.posterior == 'iaf':
    # No closed form either: the one-sample estimate log q(z | x) - log N(z; 0, I).
    kl = log_q - losses.gaussian_log_prob(z, jnp.zeros_like(z), jnp.zeros_like(z))
  else:
    kl = losses.gaussian_kl(mean, log_var)
  return {'elbo': losses.elbo(log_px, kl, beta=beta), 'log_px_given_z': log_px, 'kl': kl}


def iwae_log_weights(model: VAE, params, x, labels, key, num_samples: int, start=0):
  """log p(x|z_k), log p(z_k), log q(z_k|x) for draws k = start..start+K-1 -> three `[K, B]`.

  Draw k uses the noise `normal(fold_in(key, k))`, so splitting K draws into chunks
  gives exactly the same weights as computing them at once.
  """
  mean, log_var, context = cast(Any, model.apply(params, x, labels, method=VAE.encode_with_context))
  k, b, d = num_samples, mean.shape[0], mean.shape[1]
  eps = jax.vmap(lambda i: jax.random.normal(jax.random.fold_in(key, i), (b, d), mean.dtype))(
    start + jnp.arange(k)
  )
  tile = lambda a: None if a is None else jnp.tile(a, (k, 1))
  z_flat, log_qz = _posterior_sample(
    model, params, tile(mean), tile(log_var), tile(context), eps.reshape(k * b, d)
  )
  log_qz = log_qz.reshape(k, b)
  rep_labels = None if labels is None else jnp.tile(labels, k)
  out = model.apply(params, z_flat, rep_labels, method=VAE.decode)
  x_rep = jnp.tile(x, (k, 1, 1, 1))
  log_px = model.log_likelihood(out, x_rep).reshape(k, b)
  if not model.top_latent_dim:
    zeros = jnp.zeros_like(z_flat)
    log_pz = losses.gaussian_log_prob(z_flat, zeros, zeros).reshape(k, b)
    return log_px, log_pz, log_qz
  # z2 of draw k: noise normal(fold_in(fold_in(key, k), 1)), so chunks stay exact too.
  eps2 = jax.vmap(
    lambda i: jax.random.normal(
      jax.random.fold_in(jax.random.fold_in(key, i), 1), (b, model.top_latent_dim), mean.dtype
    )
  )(start + jnp.arange(k)).reshape(k * b, model.top_latent_dim)
  log_prior, log_q2 = _top_layer_terms(model, params, z_flat, eps2)
  return log_px, log_prior.reshape(k, b), log_qz + log_q2.reshape(k, b)


def iwae_estimate(
  model: VAE,
  params,
  x,
  labels,
  key,
  *,
  num_samples: int,
  chunk_size: int | None = None,
  memory_budget_bytes: int = 256 << 20,
):
  """IWAE log-likelihood lower bound per example, computed in chunks of samples.

  K = 5,000 fits in memory because only `chunk_size` decoder outputs exist at once;
  the per-chunk log-weights (`[chunk, B]` floats) are all that is kept.

  Args:
    x: int `[B, H, W, C]`; labels: int `[B]` or None.
    num_samples: K.
    chunk_size: samples per chunk; by default as many as fit `memory_budget_bytes` of
      decoder output.

  Returns:
    `[B]` IWAE-K bound on log p(x) in nats (equals the ELBO when K = 1).
  """
  if chunk_size is None:
    bytes_per_draw = x.shape[0] * math.prod(model.image_shape) * model._out_per_subpixel * 4 * 3
    chunk_size = latent.chunk_size_for(bytes_per_draw, num_samples, memory_budget_bytes)
  log_weights = lambda p, inputs, k, n, start: iwae_log_weights(
    model, p, inputs[0], inputs[1], k, n, start
  )
  return latent.iwae_estimate(
    log_weights,
    params,
    (x, labels),
    key,
    num_samples=num_samples,
    chunk_size=chunk_size,
    cache_key=model,
  )


def sample_prior(model: VAE, params, key, num: int, labels=None):
  """Ancestral samples z ~ N(0, I) (two layers: z2 ~ N(0, I), z ~ p(z|z2)), x ~ p(x|z).

  Returns int32 `[num, H, W, C]`.
  """
  z_key, x_key = jax.random.split(key)
  if model.top_latent_dim:  # z2 ~ N(0, I), z ~ p(z | z2)
    z2 = jax.random.normal(z_key, (num, model.top_latent_dim))
    mean, log_var = cast(Any, model.apply(params, z2, method=VAE.prior))
    z = mean + jnp.exp(0.5 * log_var) * jax.random.normal(
      jax.random.fold_in(z_key, 1), mean.shape, mean.dtype
    )
  else:
    z = jax.random.normal(z_key, (num, model.latent_dim))
  out = model.apply(params, z, labels, method=VAE.decode)
  return sample_decoder(out, x_key, likelihood=model.likelihood, num_levels=model.num_levels)


# ---------------------------------------------------------------------------------------
# Starting the decoder at the data's per-pixel marginals (Burda et al. 2016's code).

MARGINAL_BIAS_CLIP = 1e-3  # Burda et al. clip the training mean to [0.001, 0.999]


def pixel_marginals(images, *, num_levels: int, likelihood: str, probabilities=None):
  """Per-pixel marginal distribution of a training set, for `marginal_output_bias`.

  Args:
    images: integer `[N, H, W, C]` on `[0, num_levels)`.
    num_levels: levels of `images` (2 for binary images).
    likelihood: 'bernoulli' or 'categorical'.
    probabilities: optional float `[N, H, W, C]` Bernoulli probabilities that replace
      the binary `images` (dynamic binarisation: the grey level / (levels - 1), whose
      mean is the expected frequency of ones over the draws).

  Returns:
    float64 `[H, W, C]` (P(x = 1), 'bernoulli') or `[H, W, C, num_levels]` (level
    frequencies, 'categorical').

  Raises:
    ValueError: an empty set, a likelihood without a marginal bias, images that are
      not `[N, H, W, C]`.
  """
  images = np.asarray(images)
  if images.ndim != 4 or not len(images):
    raise ValueError(
      f'pixel_marginals needs a non-empty [N, H, W, C] image array, got shape {images.shape}'
    )
  if likelihood == 'bernoulli':
    if probabilities is None and num_levels != 2:
      raise ValueError(
        f'a Bernoulli marginal needs binary images (num_levels=2) or '
        f'probabilities=..., got num_levels={num_levels}'
      )
    source = images if probabilities is None else np.asarray(probabilities)
    return source.mean(axis=0, dtype=np.float64)
  if likelihood == 'categorical':
    counts = np.stack([(images == level).sum(axis=0) for level in range(num_levels)], -1)
    return counts / float(len(images))
  raise ValueError(
    f"a marginal decoder bias needs likelihood 'bernoulli' or 'categorical', got {likelihood!r}"
  )


def marginal_output_bias(
  marginals, *, likelihood: str, clip: float = MARGINAL_BIAS_CLIP
) -> np.ndarray:
  """Decoder output bias whose p(x | z) is the per-pixel marginal when the weights are 0.

  Burda et al. 2016's code initialises the Bernoulli decoder's last bias to
  `logit(clip(mean of the training images, 0.001, 0.999))`. A decoder that starts at
  zero logits must first learn those marginals through its hidden layers; with tanh
  MLPs of width 100-200 this is a plateau at the independent-pixel likelihood (~205
  nats on MNIST) for ~1,000 steps, during which the KL term switches latent units off
  (see benchmarks/results/papers.md).

  Args:
    marginals: `pixel_marginals(...)`: `[H, W, C]` P(x = 1) or `[H, W, C, L]` level
      frequencies.
    likelihood: 'bernoulli' (logit of the clipped probability) or 'categorical' (log of
      the frequencies clipped below at `clip`; the softmax renormalises them).
    clip: probabilities are kept inside `[clip, 1 - clip]`.

  Returns:
    float32 `[H * W * C * P]` in the decoder's output order (P = 1 or L).
  """
  m = np.asarray(marginals, np.float64)
  if likelihood == 'bernoulli':
    p = np.clip(m, clip, 1.0 - clip)
    bias = np.log(p) - np.log1p(-p)
  elif likelihood == 'categorical':
    bias = np.log(np.clip(m, clip, 1.0))
  else:
    raise ValueError(
      f"a marginal decoder bias needs likelihood 'bernoulli' or 'categorical', got {likelihood!r}"
    )
  return bias.reshape(-1).astype(np.float32)


def with_output_bias(model: VAE, params, bias):
  """`params` with the MLP decoder's last bias replaced by `bias` `[H * W * C * P]`.

  Raises:
    ValueError: a conv decoder (its last bias is per channel, not per pixel) or a
      `bias` of the wrong size.
  """
  if model.architecture != 'mlp':
    raise ValueError(
      f"a per-pixel decoder bias needs architecture='mlp', got {model.architecture!r}"
    )
  name = MLP_OUTPUT  # the decoder MLP's named output layer
  old = params['params']['decoder'][name]['bias']
  bias = jnp.asarray(bias, old.dtype)
  if bias.shape != old.shape:
    raise ValueError(f'the decoder output bias has shape {old.shape}, got {bias.shape}')
  decoder = dict(
    params['params']['decoder'], **{name: dict(params['params']['decoder'][name], bias=bias)}
  )
  return dict(params, params=dict(params['params'], decoder=decoder))
