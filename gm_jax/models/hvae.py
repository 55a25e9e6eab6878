"""A deep hierarchical VAE: bottom-up encoder, top-down decoder (NVAE, scaled down).

Ladder / top-down inference (Sonderby et al. 2016, "Ladder Variational
Autoencoders"; Vahdat & Kautz 2020, "NVAE"). Groups of latent variables
`z_1, ..., z_L` live on feature maps at several spatial scales, coarsest first:

    p(x, z) = p(z_1) prod_l p(z_l | z_<l) p(x | z)       # top-down decoder
    q(z | x) = prod_l q(z_l | z_<l, x)                   # same top-down pass + encoder
    ELBO = E_q[log p(x | z)] - sum_l E_q[KL(q(z_l | z_<l, x) || p(z_l | z_<l))]

Each group's KL is analytic given samples of the groups above it. The posterior
is parameterised relative to the prior (NVAE eq. 2): `q = N(mu_p + dmu,
sigma_p * dsigma)`, so a group whose posterior heads output zero carries no KL.

    x --stem--> h --cells--> f_L ... --down--> ... f_1        bottom-up (once per x)
    h_top --cell--> prior_1, (h, f_1) -> q_1 -> z_1 -> h += proj(z_1) --cell--> ...
          --up--> ... prior_L, q_L, z_L --up--> output head -> p(x | z)

All convolutions are `Conv` layers (`gm_jax.models.hvae_blocks`) with weight
normalisation (Salimans & Kingma 2016; NVAE's default), spectral normalisation (Miyato
et al. 2018) or none; each can report its largest singular value for NVAE's spectral
regulariser (Sec. 3.3). Likelihoods are those of `gm_jax.models.vae`
(`gm_jax.models.vae_blocks`: categorical, bernoulli, discretised logistic) over the
integer data, so bits/dim compare directly with the plain VAE.

The objectives at the bottom are pure functions of `(model, params, x, key)`.
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
from gm_jax.models import vae_blocks
from gm_jax.models.hvae_blocks import Conv
from gm_jax.models.hvae_blocks import fast_normal_init
from gm_jax.models.hvae_blocks import INTERMEDIATES
from gm_jax.models.hvae_blocks import NORMALIZATIONS
from gm_jax.models.hvae_blocks import ResidualCell
from gm_jax.models.hvae_blocks import soft_clamp
from gm_jax.models.hvae_blocks import spectral_norm_estimate
from gm_jax.nn.layers import images_to_unit

# The building blocks (`gm_jax.models.hvae_blocks`) are part of this module's interface.
__all__ = (
  'Conv',
  'HVAE',
  'INTERMEDIATES',
  'IWAE_ACCELERATOR_BUDGET_BYTES',
  'IWAE_CPU_BUDGET_BYTES',
  'NORMALIZATIONS',
  'ResidualCell',
  'draw_noise',
  'elbo_terms',
  'fast_normal_init',
  'group_kls',
  'init_params',
  'iwae_chunk_size',
  'iwae_estimate',
  'iwae_log_weights',
  'posterior_means',
  'reconstruct',
  'sample_latents',
  'sample_prior',
  'sample_prior_mean',
  'soft_clamp',
  'spectral_norm_estimate',
  'spectral_norms',
)


class HVAE(nn.Module):
  """Hierarchical VAE over integer images `[B, H, W, C]`.

  Attributes:
    image_shape: `(H, W, C)`.
    num_levels: grey levels per sub-pixel.
    groups_per_scale: latent groups per scale, coarsest scale first, e.g. `(2, 2)`.
      The finest latent scale is the image downsampled by `stem_stride`; each
      further scale halves it (8x8 digits, stride 2: 4x4 then 2x2 latents).
    stem_stride: power of two; downsampling from the image to the finest latents.
    channels: feature channels everywhere.
    latent_channels: channels of each latent group's map.
    cells_per_group: residual cells between two groups (encoder and decoder).
    output_cells: residual cells at the image resolution before the output head.
    likelihood: one of `gm_jax.models.vae.LIKELIHOODS`.
    normalization: one of `NORMALIZATIONS`.
    dropout_rate: dropout inside the residual cells (when `train`).
    log_var_limit: soft clamp of every log-variance and log-ratio (NaN safety).
  """

  image_shape: Sequence[int]
  num_levels: int
  groups_per_scale: Sequence[int] = (2, 2)
  stem_stride: int = 2
  channels: int = 32
  latent_channels: int = 4
  cells_per_group: int = 1
  output_cells: int = 1
  likelihood: str = 'categorical'
  normalization: str = 'weight'
  dropout_rate: float = 0.0
  log_var_limit: float = 7.0

  def __post_init__(self):
    if self.likelihood not in vae_blocks.LIKELIHOODS:
      raise ValueError(
        f'likelihood must be one of {vae_blocks.LIKELIHOODS}, got {self.likelihood!r}'
      )
    if self.normalization not in NORMALIZATIONS:
      raise ValueError(f'normalization must be one of {NORMALIZATIONS}, got {self.normalization!r}')
    if len(self.image_shape) != 3:
      raise ValueError(f'image_shape must be (H, W, C), got {self.image_shape}')
    if not self.groups_per_scale or any(g < 1 for g in self.groups_per_scale):
      raise ValueError(f'groups_per_scale must be positive counts, got {self.groups_per_scale}')
    if self.cells_per_group < 0 or self.output_cells < 0:
      raise ValueError(
        'cells_per_group and output_cells must be >= 0, got '
        f'{self.cells_per_group} and {self.output_cells}'
      )
    if self.stem_stride < 1 or self.stem_stride & (self.stem_stride - 1):
      raise ValueError(f'stem_stride must be a power of two, got {self.stem_stride}')
    factor = self.stem_stride * 2 ** (len(self.groups_per_scale) - 1)
    if self.image_shape[0] % factor or self.image_shape[1] % factor:
      raise ValueError(
        f'image_shape {tuple(self.image_shape)} must be divisible by '
        f'stem_stride * 2^(num_scales - 1) = {factor}'
      )
    if self.likelihood == 'bernoulli' and self.num_levels != 2:
      raise ValueError("likelihood='bernoulli' needs num_levels=2")
    super().__post_init__()

  # ------------------------------------------------------------------ static shapes
  @property
  def num_groups(self) -> int:
    return sum(self.groups_per_scale)

  @property
  def out_per_subpixel(self) -> int:
    return {'categorical': self.num_levels, 'bernoulli': 1, 'discretized_logistic': 2}[
      self.likelihood
    ]

  def scale_of_group(self) -> list[int]:
    """Index of the scale (0 = coarsest) of every group, top-down order."""
    return [s for s, n in enumerate(self.groups_per_scale) for _ in range(n)]

  def latent_shapes(self) -> list[tuple[int, int, int]]:
    """`(h, w, latent_channels)` of every group, top-down (coarsest first)."""
    h, w = self.image_shape[0] // self.stem_stride, self.image_shape[1] // self.stem_stride
    num_scales = len(self.groups_per_scale)
    return [
      (h >> (num_scales - 1 - s), w >> (num_scales - 1 - s), self.latent_channels)
      for s in self.scale_of_group()
    ]

  # ------------------------------------------------------------------ modules
  def setup(self):
    conv = lambda c, **kw: Conv(c, normalization=self.normalization, **kw)
    cell = lambda: ResidualCell(self.normalization, self.dropout_rate)
    c, g = self.channels, self.num_groups
    num_scales = len(self.groups_per_scale)
    num_stem = int(math.log2(self.stem_stride))
    # Bottom-up.
    self.stem = conv(c)
    self.stem_down = [conv(c, strides=2) for _ in range(num_stem)]
    self.enc_cells = [[cell() for _ in range(self.cells_per_group)] for _ in range(g)]
    self.enc_down = [conv(c, strides=2) for _ in range(num_scales - 1)]
    # Top-down.
    top = self.latent_shapes()[0]
    self.h_top = self.param('h_top', fast_normal_init('unit'), (1, top[0], top[1], c))
    self.dec_cells = [[cell() for _ in range(self.cells_per_group)] for _ in range(g)]
    lc = self.latent_channels
    self.prior_heads = [conv(2 * lc, scale_init=0.1) for _ in range(g)]
    self.post_combine = [conv(c, kernel_size=1) for _ in range(g)]
    # Zero-ish posterior heads: q starts equal to p (residual parameterisation).
    self.post_heads = [conv(2 * lc, scale_init=0.01) for _ in range(g)]
    self.z_proj = [conv(c, kernel_size=1) for _ in range(g)]
    self.dec_up = [conv(c) for _ in range(num_scales - 1)]
    self.out_up = [conv(c) for _ in range(num_stem)]
    self.out_cells = [cell() for _ in range(self.output_cells)]
    self.out_head = conv(self.image_shape[2] * self.out_per_subpixel)

  @staticmethod
  def _upsample(x):
    return jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)

  def _run_cells(self, cells, h, train):
    for c in cells:
      h = c(h, train=train)
    return h

  def encode(self, x, *, train: bool = False) -> list[jnp.ndarray]:
    """Bottom-up pass: int `[B, H, W, C]` -> one feature map per group, top-down order."""
    h = self.stem(images_to_unit(x, self.num_levels))
    for down in self.stem_down:
      h = down(nn.swish(h))
    feats = []
    i = self.num_groups
    for s in reversed(range(len(self.groups_per_scale))):  # finest scale first
      for _ in range(self.groups_per_scale[s]):
        i -= 1
        h = self._run_cells(self.enc_cells[i], h, train)
        feats.append(h)
      if s > 0:
        h = self.enc_down[s - 1](nn.swish(h))
    return feats[::-1]

  def _prior(self, i, h):
    mean, log_var = jnp.split(self.prior_heads[i](nn.swish(h)), 2, axis=-1)
    return soft_clamp(mean, 5.0), soft_clamp(log_var, self.log_var_limit)

  def decode(self, feats, eps, *, train: bool = False, temperatures=None):
    """Top-down pass; posterior samples if `feats` is given, prior samples if None.

    Args:
      feats: encoder features from `encode` (batch `B`) or None to sample the prior.
      eps: one standard-normal array per group, shapes `[B, *latent_shapes()[l]]`.
      temperatures: prior sampling only: per-group factors on the prior's standard
        deviation (Vahdat & Kautz 2020, Sec. 5); None = all 1.

    Returns:
      `(out, stats)`: decoder output `[B, H, W, C, P]` and per group a dict with `z`,
      `prior_mean`, `prior_log_var`, and (posterior pass) `mean`, `log_var`.
    """
    batch = eps[0].shape[0]
    h = jnp.broadcast_to(self.h_top, (batch,) + self.h_top.shape[1:])
    scales = self.scale_of_group()
    stats = []
    for i in range(self.num_groups):
      if i > 0 and scales[i] != scales[i - 1]:
        h = self.dec_up[scales[i] - 1](self._upsample(nn.swish(h)))
      h = self._run_cells(self.dec_cells[i], h, train)
      p_mean, p_log_var = self._prior(i, h)
      group = {'prior_mean': p_mean, 'prior_log_var': p_log_var}
      if feats is not None:
        q_in = feats[i] + self.post_combine[i](h)
        d_mean, d_log_var = jnp.split(self.post_heads[i](nn.swish(q_in)), 2, axis=-1)
        mean = p_mean + soft_clamp(d_mean, 5.0)
        log_var = p_log_var + soft_clamp(d_log_var, self.log_var_limit)
        z = mean + jnp.exp(0.5 * log_var) * eps[i]
        group.update(mean=mean, log_var=log_var)
      else:
        t = 1.0 if temperatures is None else temperatures[i]
        z = p_mean + t * jnp.exp(0.5 * p_log_var) * eps[i]
      group['z'] = z
      stats.append(group)
      h = h + self.z_proj[i](z)
    for up in self.out_up:
      h = up(self._upsample(nn.swish(h)))
    h = self._run_cells(self.out_cells, h, train)
    out = self.out_head(nn.swish(h))
    hh, ww, cc = self.image_shape
    return out.reshape(batch, hh, ww, cc, self.out_per_subpixel), stats

  def __call__(self, x, eps, *, train: bool = False):
    """Posterior pass: `(decoder output, per-group stats)` (see `decode`)."""
    return self.decode(self.encode(x, train=train), eps, train=train)

  def log_likelihood(self, out, x):
    """log p(x | z): `[B, H, W, C, P]`, int `[B, H, W, C]` -> `[B]`."""
    return vae_blocks.decoder_log_likelihood(
      out, x, likelihood=self.likelihood, num_levels=self.num_levels
    )


# ---------------------------------------------------------------------------------------
# Objectives: pure functions of (model, params, data, key).


def draw_noise(model: HVAE, key, batch: int) -> list[jnp.ndarray]:
  """Standard-normal noise for every group, `[batch, *latent_shapes()[l]]`.

  One normal draw split into the groups: one PRNG computation per call rather than
  one per group (each costs seconds of compilation on CPU).
  """
  shapes = model.latent_shapes()
  sizes = [math.prod(s) for s in shapes]
  flat = jax.random.normal(key, (batch, sum(sizes)))
  parts = jnp.split(flat, np.cumsum(sizes)[:-1].tolist(), axis=1)
  return [p.reshape((batch,) + s) for p, s in zip(parts, shapes)]


def group_kls(stats) -> jnp.ndarray:
  """Analytic KL of every group given the sampled groups above it -> `[B, L]`."""
  return jnp.stack(
    [
      losses.gaussian_kl(
        g['mean'], g['log_var'], prior_mean=g['prior_mean'], prior_log_var=g['prior_log_var']
      )
      for g in stats
    ],
    -1,
  )


def init_params(model: HVAE, key, x):
  """Parameters for `model` from an example batch `x` (int `[B, H, W, C]`); jitted, since
  op-by-op initialisation of a deep conv stack is slow on CPU."""
  return _jitted_init(model)(key, x)


_INIT_CACHE: dict = {}


def _jitted_init(model: HVAE):
  if model not in _INIT_CACHE:
    _INIT_CACHE[model] = jax.jit(
      lambda k, x: model.init({'params': k, 'dropout': k}, x, draw_noise(model, k, x.shape[0]))
    )
  return _INIT_CACHE[model]


def elbo_terms(model: HVAE, params, x, key, *, train: bool = False) -> dict:
  """Single-sample ELBO per example and KL per group.

  Returns:
    dict with `[B]` arrays `elbo`, `log_px_given_z`, `kl` (summed over groups) and
    `kl_groups` `[B, L]`.
  """
  dropout_key, eps_key = jax.random.split(key)
  eps = draw_noise(model, eps_key, x.shape[0])
  out, stats = model.apply(params, x, eps, train=train, rngs={'dropout': dropout_key})
  log_px = model.log_likelihood(out, x)
  kl_groups = group_kls(stats)
  kl = jnp.sum(kl_groups, -1)
  return {
    'elbo': losses.elbo(log_px, kl),
    'log_px_given_z': log_px,
    'kl': kl,
    'kl_groups': kl_groups,
  }


def spectral_norms(model: HVAE, params) -> jnp.ndarray:
  """Estimated largest singular value of every convolution's kernel -> `[num_convs]`.

  The terms of NVAE's spectral regulariser (Vahdat & Kautz 2020, Sec. 3.3, after
  Yoshida & Miyato 2017). They depend on the parameters only, so one dummy image
  drives the modules that report them.
  """
  x = jnp.zeros((1,) + tuple(model.image_shape), jnp.int32)
  eps = [jnp.zeros((1,) + s) for s in model.latent_shapes()]
  _, inter = model.apply(params, x, eps, mutable=[INTERMEDIATES])
  return jnp.stack(jax.tree.leaves(inter[INTERMEDIATES]))


def iwae_log_weights(
  model: HVAE, params, x, key, num_samples: int, start=0, *, train: bool = False
):
  """log p(x|z_k), log p(z_k), log q(z_k|x) for draws k = start..start+K-1 -> three `[K, B]`.

  The encoder runs once per image; the top-down pass runs on the `K * B` tiled
  features. Draw k uses the noise `draw_noise(model, fold_in(key, k), B)`, so splitting
  the K draws into chunks gives exactly the same weights.
  """
  b, k = x.shape[0], num_samples
  key, dropout_key = jax.random.split(key)
  feats: Any = model.apply(
    params, x, train=train, method=HVAE.encode, rngs={'dropout': dropout_key}
  )
  feats = [jnp.tile(f, (k, 1, 1, 1)) for f in feats]
  draws = jax.vmap(lambda i: draw_noise(model, jax.random.fold_in(key, i), b))(
    start + jnp.arange(k)
  )
  eps = [d.reshape((k * b,) + d.shape[2:]) for d in draws]
  out, stats = cast(
    Any,
    model.apply(
      params,
      feats,
      eps,
      train=train,
      method=HVAE.decode,
      rngs={'dropout': jax.random.fold_in(dropout_key, 1)},
    ),
  )
  log_px = model.log_likelihood(out, jnp.tile(x, (k, 1, 1, 1)))
  log_pz = sum(losses.gaussian_log_prob(g['z'], g['prior_mean'], g['prior_log_var']) for g in stats)
  log_qz = sum(losses.gaussian_log_prob(g['z'], g['mean'], g['log_var']) for g in stats)
  return tuple(a.reshape(k, b) for a in (log_px, log_pz, log_qz))


# Activations one chunk of `iwae_estimate` may keep alive, by backend: on CPU, chunks of
# ~1,000 (draw, image) pairs ran fastest (cache); an accelerator wants large chunks (with
# 96 MiB an H100 got chunks of one draw for 28x28 images: 1,000 small calls per batch at
# ~40% utilisation).
IWAE_CPU_BUDGET_BYTES = 96 << 20
IWAE_ACCELERATOR_BUDGET_BYTES = 2 << 30


def iwae_chunk_size(
  model: HVAE, batch_size: int, num_samples: int, memory_budget_bytes: int | None = None
) -> int:
  """Draws per chunk of `iwae_estimate`: the most that keep about `memory_budget_bytes`
  of activations alive (default: by `jax.default_backend()`); `latent.iwae_estimate`
  runs equal chunks (the last one's surplus draws are dropped)."""
  if memory_budget_bytes is None:
    memory_budget_bytes = (
      IWAE_CPU_BUDGET_BYTES if jax.default_backend() == 'cpu' else IWAE_ACCELERATOR_BUDGET_BYTES
    )
  h, w, c = model.image_shape
  per_pair = 4 * (h * w * model.channels * 10 + h * w * c * model.out_per_subpixel * 3)
  return latent.chunk_size_for(per_pair * batch_size, num_samples, memory_budget_bytes)


def iwae_estimate(
  model: HVAE,
  params,
  x,
  key,
  *,
  num_samples: int,
  chunk_size: int | None = None,
  memory_budget_bytes: int | None = None,
):
  """IWAE-K lower bound on log p(x) per example `[B]`, in chunks of samples (K up to 1000s).

  By default a chunk holds `iwae_chunk_size(model, B, K, memory_budget_bytes)` draws.
  """
  if chunk_size is None:
    chunk_size = iwae_chunk_size(model, x.shape[0], num_samples, memory_budget_bytes)
  log_weights = lambda p, inputs, k, n, start: iwae_log_weights(model, p, inputs[0], k, n, start)
  return latent.iwae_estimate(
    log_weights, params, (x,), key, num_samples=num_samples, chunk_size=chunk_size, cache_key=model
  )


def sample_latents(model: HVAE, params, key, num: int, temperatures=None):
  """Decoder output `[num, H, W, C, P]` for tempered prior samples `z_l ~ p(z_l | z_<l)`.

  Args:
    temperatures: None, a scalar, or one factor per group on the prior std.
  """
  if temperatures is not None and jnp.ndim(temperatures) == 0:
    temperatures = [temperatures] * model.num_groups
  if temperatures is not None and len(temperatures) != model.num_groups:
    raise ValueError(
      f'temperatures needs one value per group ({model.num_groups}), got {len(temperatures)}'
    )
  out, _ = model.apply(
    params, None, draw_noise(model, key, num), method=HVAE.decode, temperatures=temperatures
  )
  return out


def sample_prior(model: HVAE, params, key, num: int, temperatures=None):
  """Ancestral samples: tempered `z ~ p(z)`, then `x ~ p(x | z)` -> int32 `[num, H, W, C]`."""
  z_key, x_key = jax.random.split(key)
  out = sample_latents(model, params, z_key, num, temperatures)
  return vae_blocks.sample_decoder(
    out, x_key, likelihood=model.likelihood, num_levels=model.num_levels
  )


def sample_prior_mean(model: HVAE, params, key, num: int, temperatures=None):
  """Tempered `z ~ p(z)`, then the decoder mean (float `[num, H, W, C]` on the level grid).

  NVAE (Sec. 5) shows these for reduced temperatures: the per-pixel noise of
  `x ~ p(x | z)` would hide what the temperature of the latents does.
  """
  out = sample_latents(model, params, key, num, temperatures)
  return vae_blocks.decoder_mean(out, likelihood=model.likelihood, num_levels=model.num_levels)


def reconstruct(model: HVAE, params, x, key):
  """Decoder mean (on the level grid, float `[B, H, W, C]`) for one posterior sample."""
  out, _ = model.apply(params, x, draw_noise(model, key, x.shape[0]))
  return vae_blocks.decoder_mean(out, likelihood=model.likelihood, num_levels=model.num_levels)


def posterior_means(model: HVAE, params, x) -> jnp.ndarray:
  """Representation for probes: every group's posterior mean, flattened and joined.

  The top-down pass runs with zero noise, so each group's `z` is its posterior mean
  and the later groups are conditioned on those means. Returns float `[B, D]` with
  `D = sum(prod(latent_shapes()))`.
  """
  eps = [jnp.zeros((x.shape[0],) + s, jnp.float32) for s in model.latent_shapes()]
  _, stats = cast(Any, model.apply(params, x, eps))
  return jnp.concatenate([g['mean'].reshape(x.shape[0], -1) for g in stats], axis=1)
