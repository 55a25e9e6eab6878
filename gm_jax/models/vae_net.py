"""The VAE's Flax modules: `VAE` (MLP or conv encoder and decoder, an optional second
stochastic layer, a diagonal or IAF posterior) and `ConditionalVAE`.

`gm_jax.models.vae` re-exports them beside the objectives (ELBO, IWAE) and the decoder
bias helpers; import them from there.
"""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from gm_jax.models.vae_blocks import ACTIVATIONS
from gm_jax.models.vae_blocks import ARCHITECTURES
from gm_jax.models.vae_blocks import ConvDecoder
from gm_jax.models.vae_blocks import ConvEncoder
from gm_jax.models.vae_blocks import decoder_log_likelihood
from gm_jax.models.vae_blocks import LIKELIHOODS
from gm_jax.models.vae_blocks import TopLayer
from gm_jax.nn import iaf as iaf_lib
from gm_jax.nn.layers import images_to_unit
from gm_jax.nn.layers import MLP

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


class ConditionalVAE(VAE):
  """A VAE whose encoder and decoder both see the one-hot label (Sohn et al. 2015).

  Same attributes as `VAE`; `num_classes` defaults to 10 and must be positive.
  """

  num_classes: int = 10

  def __post_init__(self):
    if self.num_classes <= 0:
      raise ValueError(f'ConditionalVAE needs num_classes > 0, got {self.num_classes}')
    super().__post_init__()
