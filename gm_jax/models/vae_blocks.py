"""Building blocks of the VAEs: encoders, decoders, the second stochastic layer, likelihoods.

`gm_jax.models.vae` builds its `VAE` from these, and `gm_jax.models.hvae` reads its
decoder output with the same likelihoods (`decoder_log_likelihood`, `sample_decoder`,
`decoder_mean`): `categorical` (a softmax over the `num_levels` values of every
sub-pixel), `bernoulli` (binary data, `num_levels == 2`) and `discretized_logistic`
(PixelCNN++ bins), all distributions over the integer data. Every name here is also
importable from `gm_jax.models.vae`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from gm_jax import losses
from gm_jax.nn import layers
from gm_jax.nn.layers import MLP

LIKELIHOODS = ('categorical', 'bernoulli', 'discretized_logistic')
ARCHITECTURES = ('mlp', 'conv')
# MLP nonlinearities by name; Burda et al. 2016 (IWAE) use tanh.
ACTIVATIONS = {'gelu': nn.gelu, 'tanh': jnp.tanh, 'relu': nn.relu}


class ConvEncoder(nn.Module):
  """Two stride-2 convs then dense: `[B, H, W, C]` -> `[B, features[-1]]`."""

  channels: Sequence[int] = (32, 64)
  hidden: int = 256
  dropout_rate: float = 0.0

  @nn.compact
  def __call__(self, x, *, train=False):
    for ch in self.channels:
      x = nn.gelu(nn.Conv(ch, (3, 3), strides=(2, 2), padding='SAME')(x))
    x = x.reshape(x.shape[0], -1)
    x = nn.gelu(nn.Dense(self.hidden)(x))
    return layers.Dropout(self.dropout_rate, deterministic=not train)(x)


class ConvDecoder(nn.Module):
  """Dense then two stride-2 transposed convs: `[B, D]` -> `[B, H, W, out_channels]`."""

  image_shape: Sequence[int]
  out_channels: int
  channels: Sequence[int] = (64, 32)
  hidden: int = 256
  dropout_rate: float = 0.0

  @nn.compact
  def __call__(self, z, *, train=False):
    h, w, _ = self.image_shape
    h4, w4 = h // 4, w // 4
    x = nn.gelu(nn.Dense(self.hidden)(z))
    x = layers.Dropout(self.dropout_rate, deterministic=not train)(x)
    x = nn.gelu(nn.Dense(h4 * w4 * self.channels[0])(x)).reshape(-1, h4, w4, self.channels[0])
    for ch in self.channels:
      x = nn.gelu(layers.ConvTranspose(ch, (3, 3), strides=(2, 2), padding='SAME')(x))
    return nn.Conv(self.out_channels, (3, 3), padding='SAME')(x)


class TopLayer(nn.Module):
  """The second stochastic layer z2 above z (Burda et al. 2016, Sec. 5: 2 x 100 tanh).

  `posterior(z)` is q(z2 | z) and `prior(z2)` is p(z | z2), each a diagonal Gaussian
  from an MLP of widths `hidden` (mirrored for the prior); z2 ~ N(0, I).
  """

  latent_dim: int  # D, of z
  top_latent_dim: int  # D2, of z2
  hidden: Sequence[int]
  activation: Callable = nn.tanh

  def setup(self):
    self.encoder = MLP(tuple(self.hidden), activation=self.activation)
    self.to_mean = nn.Dense(self.top_latent_dim)
    self.to_log_var = nn.Dense(self.top_latent_dim)
    self.decoder = MLP(tuple(reversed(self.hidden)), activation=self.activation)
    self.prior_to_mean = nn.Dense(self.latent_dim)
    self.prior_to_log_var = nn.Dense(self.latent_dim)

  def posterior(self, z):
    """q(z2 | z): `[B, D]` -> (mean, log_var), each `[B, D2]`."""
    h = self.encoder(z)
    return self.to_mean(h), self.to_log_var(h)

  def prior(self, z2):
    """p(z | z2): `[B, D2]` -> (mean, log_var), each `[B, D]`."""
    h = self.decoder(z2)
    return self.prior_to_mean(h), self.prior_to_log_var(h)

  def __call__(self, z):
    return self.prior(self.posterior(z)[0])


def decoder_log_likelihood(out, x, *, likelihood: str, num_levels: int):
  """log p(x | decoder output) summed over pixels: `[B, H, W, C, P]`, `[B, H, W, C]` -> `[B]`."""
  if likelihood == 'categorical':
    return losses.categorical_log_prob(out, x.astype(jnp.int32))
  if likelihood == 'bernoulli':
    return losses.bernoulli_log_prob(out[..., 0], x.astype(jnp.float32))
  mean = jnp.tanh(out[..., 0]) * 0.5 + 0.5  # keep the mode inside [0, 1]
  log_scale = jnp.maximum(out[..., 1], -7.0)
  return losses.discretized_logistic_log_prob(
    x.astype(jnp.float32) / (num_levels - 1), mean, log_scale, num_levels=num_levels
  )


def sample_decoder(out, key, *, likelihood: str, num_levels: int):
  """Draws integer images from decoder output `[B, H, W, C, P]` -> int32 `[B, H, W, C]`."""
  if likelihood == 'categorical':
    return jax.random.categorical(key, out, axis=-1).astype(jnp.int32)
  if likelihood == 'bernoulli':
    return jax.random.bernoulli(key, jax.nn.sigmoid(out[..., 0])).astype(jnp.int32)
  mean = jnp.tanh(out[..., 0]) * 0.5 + 0.5
  log_scale = jnp.maximum(out[..., 1], -7.0)
  u = jax.random.uniform(key, mean.shape, minval=1e-5, maxval=1 - 1e-5)
  cont = mean + jnp.exp(log_scale) * (jnp.log(u) - jnp.log1p(-u))
  return jnp.clip(jnp.rint(cont * (num_levels - 1)), 0, num_levels - 1).astype(jnp.int32)


def decoder_mean(out, *, likelihood: str, num_levels: int):
  """Expected pixel value on the level grid, float `[B, H, W, C]` (for pictures)."""
  if likelihood == 'categorical':
    probs = jax.nn.softmax(out, axis=-1)
    return jnp.sum(probs * jnp.arange(num_levels, dtype=probs.dtype), axis=-1)
  if likelihood == 'bernoulli':
    return jax.nn.sigmoid(out[..., 0])
  return (jnp.tanh(out[..., 0]) * 0.5 + 0.5) * (num_levels - 1)
