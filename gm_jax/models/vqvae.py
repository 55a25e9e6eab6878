"""VQ-VAE (van den Oord et al. 2017): conv encoder/decoder, codebook, the VQ bound.

Images are integers `[B, H, W, C]` on `[0, num_levels)`. The encoder maps them to a grid
`z_e: [B, H / 2^s, W / 2^s, D]` (`s = num_downsamples`), each vector is replaced by its
nearest code (`gm_jax.nn.vq.vector_quantize`, straight-through gradients), and the decoder
gives a categorical over the `num_levels` values of every sub-pixel,
`logits: [B, H, W, C, num_levels]`.

Training (first stage), per example (eq. 3):

    loss = -log p(x | z_q) + ||sg(z_e) - e||^2 + beta ||z_e - sg(e)||^2

(`vqvae_loss`), the codebook term dropped when the codebook is the EMA one
(`gm_jax.nn.vq.ema_update`, appendix A.1). The posterior `q(z | x)` is a deterministic
one-hot on the codes, so with a prior `p(z)` over the code grid (uniform, or an
autoregressive model trained as a second stage) the KL is `-log p(z_q)` and

    -log p(x) <= -log p(x | z_q) - log p_prior(z_q)

is a true bound on the discrete NLL (`vq_bound`); `uniform_prior_log_prob` gives the
prior-free version (`N log K` nats for `N` codes).
"""

from __future__ import annotations

import math

import flax.linen as nn
import jax.numpy as jnp

from gm_jax import losses
from gm_jax.nn import layers as nn_layers
from gm_jax.nn import vq

Array = jnp.ndarray


class _ResBlock(nn.Module):
  """`h + conv1x1(relu(conv3x3(relu(h))))` (van den Oord et al. 2017, section 4.1)."""

  hidden: int

  @nn.compact
  def __call__(self, h):
    r = nn.Conv(self.hidden, (3, 3))(nn.relu(h))
    return h + nn.Conv(h.shape[-1], (1, 1))(nn.relu(r))


class Encoder(nn.Module):
  """`[B, H, W, C]` in `[-1, 1]` -> `z_e: [B, H / 2^s, W / 2^s, embed_dim]`."""

  hidden: int = 64
  embed_dim: int = 16
  num_downsamples: int = 1
  num_res_blocks: int = 1

  @nn.compact
  def __call__(self, x):
    h = nn.Conv(self.hidden, (3, 3))(x)
    for _ in range(self.num_downsamples):
      h = nn.Conv(self.hidden, (4, 4), strides=(2, 2))(nn.relu(h))
    for _ in range(self.num_res_blocks):
      h = _ResBlock(self.hidden)(h)
    return nn.Conv(self.embed_dim, (1, 1))(nn.relu(h))


class Decoder(nn.Module):
  """`z_q: [B, h, w, D]` -> logits `[B, h 2^s, w 2^s, channels, num_levels]`."""

  num_levels: int
  channels: int = 1
  hidden: int = 64
  num_downsamples: int = 1
  num_res_blocks: int = 1

  @nn.compact
  def __call__(self, z):
    h = nn.Conv(self.hidden, (3, 3))(z)
    for _ in range(self.num_res_blocks):
      h = _ResBlock(self.hidden)(h)
    for _ in range(self.num_downsamples):
      h = nn.ConvTranspose(self.hidden, (4, 4), strides=(2, 2))(nn.relu(h))
    out = nn.Conv(self.channels * self.num_levels, (3, 3))(nn.relu(h))
    return out.reshape(out.shape[:-1] + (self.channels, self.num_levels))


class VQVAE(nn.Module):
  """Conv VQ-VAE with a categorical decoder over the pixel levels.

  Attributes:
    num_levels: grey levels per sub-pixel (17 for the digits).
    channels: image channels.
    num_codes: codebook size `K >= 2`.
    embed_dim: code vector size `D`.
    hidden: conv channels.
    num_downsamples: stride-2 stages; the code grid is `H / 2^s x W / 2^s` (4 x 4 codes
      for 8 x 8 digits with the default 1).
    num_res_blocks: residual blocks in the encoder and the decoder.

  The codebook is the parameter `params['codebook']: [K, D]`. With an EMA codebook the
  trainer overwrites it after each step with `vq.ema_update(...).codebook` (its gradient
  is zero when `vqvae_loss(..., ema=True)` leaves the codebook term out).
  """

  num_levels: int
  channels: int = 1
  num_codes: int = 64
  embed_dim: int = 16
  hidden: int = 64
  num_downsamples: int = 1
  num_res_blocks: int = 1

  def setup(self):
    vq.check_codebook_size(self.num_codes)
    if not isinstance(self.num_levels, int) or self.num_levels < 2:
      raise ValueError(f'num_levels must be an integer >= 2; got {self.num_levels!r}.')
    self.encoder = Encoder(self.hidden, self.embed_dim, self.num_downsamples, self.num_res_blocks)
    self.decoder = Decoder(
      self.num_levels, self.channels, self.hidden, self.num_downsamples, self.num_res_blocks
    )
    self.codebook = self.param(
      'codebook', nn.initializers.normal(1.0), (self.num_codes, self.embed_dim)
    )

  def encode(self, images: Array) -> Array:
    """Integer images `[B, H, W, C]` -> `z_e: [B, h, w, D]` (before quantisation)."""
    multiple = 2**self.num_downsamples
    if images.ndim != 4 or images.shape[1] % multiple or images.shape[2] % multiple:
      raise ValueError(
        f'VQVAE needs images [B, H, W, C] with H and W divisible by '
        f'{multiple} (2 ** num_downsamples); got shape {images.shape}.'
      )
    return self.encoder(nn_layers.images_to_unit(images, self.num_levels))

  def decode(self, z_q: Array) -> Array:
    """`z_q: [B, h, w, D]` -> logits `[B, H, W, C, num_levels]`."""
    return self.decoder(z_q)

  def decode_codes(self, codes: Array) -> Array:
    """Integer code grid `[B, h, w]` -> logits `[B, H, W, C, num_levels]`."""
    return self.decoder(jnp.take(self.codebook, codes, axis=0))

  def __call__(self, images: Array) -> dict:
    """Encodes, quantises, decodes. Returns a dict of arrays:

    `logits [B, H, W, C, L]`, `z_e` and `z_q` `[B, h, w, D]`, `codes [B, h, w]`,
    `codebook_loss` and `commitment_loss` `[B]` (summed over the code grid).
    """
    z_e = self.encode(images)
    q = vq.vector_quantize(z_e, self.codebook)
    sum_grid = lambda v: jnp.sum(v, axis=(1, 2))
    return {
      'logits': self.decode(q.z_q),
      'z_e': z_e,
      'z_q': q.z_q,
      'codes': q.codes,
      'codebook_loss': sum_grid(q.codebook_loss),
      'commitment_loss': sum_grid(q.commitment_loss),
    }


def reconstruction_nll(logits: Array, images: Array) -> Array:
  """`-log p(x | z_q)` in nats, `[B]`: categorical over the levels, summed over pixels."""
  return -losses.categorical_log_prob(logits, images.astype(jnp.int32))


def vqvae_loss(outputs: dict, images: Array, *, beta: float = 0.25, ema: bool = False) -> Array:
  """First-stage loss per example (van den Oord et al. 2017, eq. 3), `[B]` nats.

  `-log p(x | z_q) + codebook_loss + beta * commitment_loss`; with `ema=True` the
  codebook term is left out (the EMA update moves the codebook instead).
  """
  loss = reconstruction_nll(outputs['logits'], images) + beta * outputs['commitment_loss']
  return loss if ema else loss + outputs['codebook_loss']


def uniform_prior_log_prob(codes: Array, num_codes: int) -> Array:
  """`log p(z_q)` under the uniform prior over the grid, `[B]`: `-N log K`."""
  num = math.prod(codes.shape[1:])
  return jnp.full(codes.shape[:1], -num * math.log(num_codes), jnp.float32)


def vq_bound(logits: Array, images: Array, prior_log_prob: Array) -> dict:
  """The VQ bound on the discrete NLL, per example (nats).

  With the deterministic one-hot posterior on `z_q`, the ELBO's KL is
  `-log p_prior(z_q)`, so `-log p(x) <= -log p(x | z_q) - log p_prior(z_q)`.

  Args:
    logits: decoder logits `[B, H, W, C, num_levels]` of the quantised codes.
    images: integer `[B, H, W, C]`.
    prior_log_prob: `[B]`, `log p_prior(z_q)` of each example's code grid (a
      categorical prior's `losses.categorical_log_prob(prior_logits, codes)`, or
      `uniform_prior_log_prob`).

  Returns:
    `{'recon_nll': [B], 'prior_nll': [B], 'bound': [B]}`, `bound = recon_nll + prior_nll`.
  """
  recon = reconstruction_nll(logits, images)
  prior_nll = -jnp.asarray(prior_log_prob, recon.dtype)
  if prior_nll.shape != recon.shape:
    raise ValueError(
      f'prior_log_prob must have shape {recon.shape} (one value per '
      f'example); got {prior_nll.shape}.'
    )
  return {'recon_nll': recon, 'prior_nll': prior_nll, 'bound': recon + prior_nll}


__all__ = (
  'Decoder',
  'Encoder',
  'VQVAE',
  'reconstruction_nll',
  'uniform_prior_log_prob',
  'vq_bound',
  'vqvae_loss',
)
