"""Variational autoencoders (Kingma & Welling 2014) and the conditional VAE (Sohn et al. 2015).

The model is a Flax module with separate `encode`, `decode` and `log_likelihood`
methods; the objectives (ELBO, IWAE) are composed from `gm_jax.losses` by the pure
functions at the bottom of this file, which take explicit PRNG keys:

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

from collections.abc import Sequence
import math
from typing import Any, cast

import flax.linen as nn
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
from gm_jax.nn import iaf as iaf_lib
from gm_jax.nn.layers import images_to_unit
from gm_jax.nn.layers import MLP
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


POSTERIORS = ('diagonal', 'iaf')


class VAE(nn.Module):
  """A VAE over integer images; with `num_classes > 0` it is a conditional VAE.

  Attributes:
    image_shape: `(H, W, C)`.
    num_levels: grey levels per sub-pixel (17 digits, 256 photos, 2 binarised).
    latent_dim: size of z.
    hidden: MLP widths (mirrored in the decoder) for `architecture='mlp'`.
    architecture: `'mlp'` or `'conv'` (H and W divisible by 4).
    likelihood: one of `LIKELIHOODS`.
    dropout_rate: dropout in encoder and decoder hidden layers.
    num_classes: 0 for an unconditional VAE; otherwise the label (one-hot) is an input
      of both the encoder and the decoder.
    activation: MLP nonlinearity, a key of `ACTIVATIONS` (`architecture='mlp'`).
    top_latent_dim: > 0 adds a second stochastic layer z2 above z (Burda et al. 2016's
      two-layer model): q(z2 | z) and p(z | z2) are diagonal Gaussians from MLPs of widths
      `top_hidden`, the prior N(0, I) moves to z2. MLP, unconditional models only.
    top_hidden: MLP widths between z and z2 (mirrored in p(z | z2)).
    posterior: 'diagonal' (q(z|x) a diagonal Gaussian) or 'iaf': the Gaussian sample
      goes through `iaf_steps` inverse autoregressive flow steps (Kingma et al. 2016,
      `gm_jax.nn.iaf.IAF`) with MADEs of widths `iaf_hidden`, conditioned on a context
      `h` of `latent_dim` units from the encoder; log q(z|x) by change of variables.
    iaf_steps, iaf_hidden: the IAF's steps and MADE widths (`posterior='iaf'`).
  """

  image_shape: Sequence[int]
  num_levels: int
  latent_dim: int = 16
  hidden: Sequence[int] = (512, 512)
  architecture: str = 'mlp'
  likelihood: str = 'categorical'
  dropout_rate: float = 0.0
  num_classes: int = 0
  activation: str = 'gelu'
  top_latent_dim: int = 0
  top_hidden: Sequence[int] = (50, 50)
  posterior: str = 'diagonal'
  iaf_steps: int = 2
  iaf_hidden: Sequence[int] = (64, 64)

  def __post_init__(self):
    if self.posterior not in POSTERIORS:
      raise ValueError(f'posterior must be one of {POSTERIORS}, got {self.posterior!r}')
    if self.posterior == 'iaf' and (
      not isinstance(self.iaf_steps, int) or self.iaf_steps < 1 or not self.iaf_hidden
    ):
      raise ValueError(
        f"posterior='iaf' needs iaf_steps >= 1 and non-empty iaf_hidden; got "
        f'iaf_steps={self.iaf_steps!r}, iaf_hidden={self.iaf_hidden!r}'
      )
    if self.top_latent_dim < 0:
      raise ValueError(f'top_latent_dim must be >= 0, got {self.top_latent_dim}')
    if self.top_latent_dim and (self.architecture != 'mlp' or self.num_classes):
      raise ValueError(
        'a second stochastic layer (top_latent_dim > 0) needs '
        "architecture='mlp' and an unconditional model (num_classes=0)"
      )
    if self.activation not in ACTIVATIONS:
      raise ValueError(f'activation must be one of {tuple(ACTIVATIONS)}, got {self.activation!r}')
    if self.likelihood not in LIKELIHOODS:
      raise ValueError(f'likelihood must be one of {LIKELIHOODS}, got {self.likelihood!r}')
    if self.architecture not in ARCHITECTURES:
      raise ValueError(f'architecture must be one of {ARCHITECTURES}, got {self.architecture!r}')
    if self.likelihood == 'bernoulli' and self.num_levels != 2:
      raise ValueError(
        f"likelihood='bernoulli' needs binary data (num_levels=2), got num_levels={self.num_levels}"
      )
    if len(self.image_shape) != 3:
      raise ValueError(f'image_shape must be (H, W, C), got {self.image_shape}')
    if self.architecture == 'conv' and (self.image_shape[0] % 4 or self.image_shape[1] % 4):
      raise ValueError(
        f"architecture='conv' needs H and W divisible by 4, "
        f'got image_shape={tuple(self.image_shape)}'
      )
    super().__post_init__()

  @property
  def _out_per_subpixel(self) -> int:
    return {'categorical': self.num_levels, 'bernoulli': 1, 'discretized_logistic': 2}[
      self.likelihood
    ]

  def setup(self):
    h, w, c = self.image_shape
    if self.architecture == 'mlp':
      act = ACTIVATIONS[self.activation]
      self.encoder = MLP(self.hidden, dropout_rate=self.dropout_rate, activation=act)
      self.decoder = MLP(
        tuple(reversed(self.hidden)),
        out_features=h * w * c * self._out_per_subpixel,
        dropout_rate=self.dropout_rate,
        activation=act,
      )
    else:
      self.encoder = ConvEncoder(dropout_rate=self.dropout_rate)
      self.decoder = ConvDecoder(
        self.image_shape, c * self._out_per_subpixel, dropout_rate=self.dropout_rate
      )
    self.to_mean = nn.Dense(self.latent_dim)
    self.to_log_var = nn.Dense(self.latent_dim)
    # The second stochastic layer, its own submodule (parameters under 'top').
    self.top = (
      TopLayer(
        self.latent_dim, self.top_latent_dim, tuple(self.top_hidden), ACTIVATIONS[self.activation]
      )
      if self.top_latent_dim
      else None
    )
    if self.posterior == 'iaf':
      self.to_context = nn.Dense(self.latent_dim)
      self.iaf = iaf_lib.IAF(self.iaf_steps, tuple(self.iaf_hidden))

  def _condition(self, h, labels):
    if not self.num_classes:
      return h
    if labels is None:
      raise ValueError('a conditional VAE (num_classes > 0) needs labels')
    return jnp.concatenate([h, jax.nn.one_hot(labels, self.num_classes, dtype=h.dtype)], -1)

  def encode(self, x, labels=None, *, train: bool = False):
    """x: int `[B, H, W, C]`, labels: int `[B]` -> (mean, log_var), each `[B, latent_dim]`."""
    return self.encode_with_context(x, labels, train=train)[:2]

  def encode_with_context(self, x, labels=None, *, train: bool = False):
    """As `encode`, plus the IAF's context `h` `[B, latent_dim]` (None: diagonal posterior)."""
    if x.ndim != 4 or tuple(x.shape[1:]) != tuple(self.image_shape):
      raise ValueError(
        f'{type(self).__name__} was built for images of shape '
        f'{tuple(self.image_shape)} ([B, H, W, C]); got x of shape {x.shape}'
      )
    if labels is not None and labels.shape != x.shape[:1]:
      raise ValueError(f'labels must have shape [B] = {x.shape[:1]}, got {labels.shape}')
    u = images_to_unit(x, self.num_levels)
    if self.architecture == 'mlp':
      h = self.encoder(self._condition(u.reshape(u.shape[0], -1), labels), train=train)
    else:
      if self.num_classes:
        onehot = jax.nn.one_hot(labels, self.num_classes, dtype=u.dtype)
        u = jnp.concatenate(
          [u, jnp.broadcast_to(onehot[:, None, None, :], u.shape[:3] + (self.num_classes,))], -1
        )
      h = self.encoder(u, train=train)
    context = self.to_context(h) if self.posterior == 'iaf' else None
    return self.to_mean(h), self.to_log_var(h), context

  def flow(self, z0, context):
    """The IAF posterior's steps: z0, context `[N, latent_dim]` -> (z `[N, D]`, log_det `[N]`)."""
    return self.iaf(z0, context)

  def decode(self, z, labels=None, *, train: bool = False):
    """z: `[B, latent_dim]` -> decoder parameters `[B, H, W, C, P]`.

    P = num_levels logits (categorical), 1 logit (bernoulli) or (mean, log_scale)
    (discretized_logistic).
    """
    h, w, c = self.image_shape
    out = self.decoder(self._condition(z, labels), train=train)
    return out.reshape(z.shape[0], h, w, c, self._out_per_subpixel)

  def encode_top(self, z):
    """q(z2 | z): z `[B, latent_dim]` -> (mean, log_var), each `[B, top_latent_dim]`."""
    return self.top.posterior(z)

  def prior(self, z2):
    """p(z | z2): z2 `[B, top_latent_dim]` -> (mean, log_var), each `[B, latent_dim]`."""
    return self.top.prior(z2)

  def log_likelihood(self, out, x):
    """log p(x | z) per example: decoder output `[B, H, W, C, P]`, x int `[B, H, W, C]` -> `[B]`."""
    return decoder_log_likelihood(out, x, likelihood=self.likelihood, num_levels=self.num_levels)

  def __call__(self, x, labels=None, *, train: bool = False):
    """Initialisation path: encode, decode the means. Returns decoder output."""
    mean, _, context = self.encode_with_context(x, labels, train=train)
    if self.posterior == 'iaf':  # creates the IAF's parameters too
      self.flow(mean, context)
    if self.top is not None:  # creates the second layer's parameters too
      self.top(mean)
    return self.decode(mean, labels, train=train)


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


class ConditionalVAE(VAE):
  """A VAE whose encoder and decoder both see the one-hot label (Sohn et al. 2015).

  Same attributes as `VAE`; `num_classes` defaults to 10 and must be positive.
  """

  num_classes: int = 10

  def __post_init__(self):
    if self.num_classes <= 0:
      raise ValueError(f'ConditionalVAE needs num_classes > 0, got {self.num_classes}')
    super().__post_init__()
