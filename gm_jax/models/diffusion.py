"""Diffusion (VDM) and flow-matching models: a time-conditioned U-Net and their objectives.

* `UNet`: the network of both, `(x [B, H, W, C], s [B], labels [B] | None) -> [B, H, W, C]`,
  conditioned on a scalar `s` in about `[0, 1]` (the time `t` for flow matching, the
  rescaled log-SNR for diffusion) through a sinusoidal embedding (Ho et al. 2020,
  "Denoising Diffusion Probabilistic Models", appendix B), residual blocks with
  group norm, optional self-attention at the lowest resolution, optional Fourier
  features of the input (VDM appendix B.3: fine-scale detail for likelihood), and an
  optional class embedding with a null class `num_classes` for classifier-free
  guidance (Ho & Salimans 2022).
* `VDM` (Kingma et al. 2021, "Variational Diffusion Models"): the U-Net plus a noise
  schedule `lambda(t)` (log-SNR, decreasing from `log_snr_max` at t=0 to
  `log_snr_min` at t=1): fixed `'cosine'` or `'linear'`, or VDM's `'learned'`
  monotone network. `vdm_terms` is the continuous-time bound
  `-log P(k) <= E[-log p(k | z_0)] + KL(q(z_1 | x) || N(0, I)) + L_diffusion`
  on the discrete images `k` (VDM eqs. 11, 17), each term per example in nats.
* `FlowMatching` (Lipman et al. 2023; Liu et al. 2023): the U-Net as a velocity field
  `v(x_t, t)` on the optimal-transport path from N(0, I) at `t = 0` to the uniformly
  dequantised data at `t = 1`; `flow_matching_terms` is its regression loss, and
  `gm_jax.sampling.ode_log_likelihood` its likelihood.

Data scale: level `k` of `L` sits at the centre of its bin in `[-1, 1]`,
`x = 2 (k + 1/2) / L - 1` (VDM's convention); dequantised data fill the bin,
`x = 2 (k + u) / L - 1`, `u ~ U[0, 1)`.
"""

from __future__ import annotations

from collections.abc import Sequence
import math

import flax.linen as nn
import jax
import jax.numpy as jnp

from gm_jax import losses
from gm_jax.nn.layers import Conv
from gm_jax.nn.layers import Dropout

SCHEDULES = ('cosine', 'linear', 'learned')
PREDICTIONS = ('eps', 'v')


# -- data scale ------------------------------------------------------------------------------


def levels_to_unit(k, num_levels: int) -> jnp.ndarray:
  """Integer levels `[0, L)` -> bin centres in `[-1, 1]`: `2 (k + 1/2) / L - 1`."""
  return (jnp.asarray(k, jnp.float32) + 0.5) * (2.0 / num_levels) - 1.0


def dequantize(key, k, *, num_levels: int) -> jnp.ndarray:
  """Uniform dequantisation into the bins of `levels_to_unit`: `2 (k + u) / L - 1`."""
  u = jax.random.uniform(key, jnp.shape(k), jnp.float32)
  return (jnp.asarray(k, jnp.float32) + u) * (2.0 / num_levels) - 1.0


def unit_to_levels(x, num_levels: int) -> jnp.ndarray:
  """The bin of `x` in `[-1, 1]` (clipped): int32 levels in `[0, L)`."""
  k = jnp.floor((jnp.asarray(x, jnp.float32) + 1.0) * (num_levels / 2.0))
  return jnp.clip(k, 0, num_levels - 1).astype(jnp.int32)


# -- noise schedules -------------------------------------------------------------------------


def cosine_log_snr(t, *, log_snr_min: float, log_snr_max: float) -> jnp.ndarray:
  """Truncated cosine schedule: `lambda(t) = -2 log tan(a t + b)`.

  `alpha_t = cos(pi t / 2)` (Nichol & Dhariwal 2021) has `lambda = -2 log tan(pi t / 2)`;
  `a`, `b` shift and scale `t` so that `lambda(0) = log_snr_max`,
  `lambda(1) = log_snr_min` (Kingma & Gao 2023, appendix D).
  """
  b = math.atan(math.exp(-0.5 * log_snr_max))
  a = math.atan(math.exp(-0.5 * log_snr_min)) - b
  return -2.0 * jnp.log(jnp.tan(a * jnp.asarray(t, jnp.float32) + b))


def linear_log_snr(t, *, log_snr_min: float, log_snr_max: float) -> jnp.ndarray:
  """`lambda(t) = log_snr_max + (log_snr_min - log_snr_max) t` (VDM's fixed linear gamma)."""
  return log_snr_max + (log_snr_min - log_snr_max) * jnp.asarray(t, jnp.float32)


def alpha_sigma(log_snr) -> tuple[jnp.ndarray, jnp.ndarray]:
  """`(alpha, sigma)` of the variance-preserving process: `alpha^2 = sigmoid(lambda)`."""
  return jnp.sqrt(jax.nn.sigmoid(log_snr)), jnp.sqrt(jax.nn.sigmoid(-log_snr))


class _MonotoneDense(nn.Module):
  """Dense layer with non-negative weights `|W|` (VDM's `DenseMonotone`)."""

  features: int

  @nn.compact
  def __call__(self, x):
    kernel = self.param('kernel', nn.initializers.lecun_normal(), (x.shape[-1], self.features))
    bias = self.param('bias', nn.initializers.zeros_init(), (self.features,))
    return x @ jnp.abs(kernel) + bias


class LogSNRSchedule(nn.Module):
  """`lambda(t)` for `t` of any shape; monotone decreasing from `log_snr_max` to `log_snr_min`.

  `'learned'`: VDM's monotone network (appendix H, `NoiseNet`): `gamma~(t) = l1(t) +
  l3(phi(l2(l1(t))))` with non-negative weights, normalised so that `gamma(0)` and
  `gamma(1)` are free parameters (initialised at `-log_snr_max`, `-log_snr_min`);
  `lambda = -gamma`. Trained here on the bound itself (VDM also minimises the
  variance of the bound's estimate with the interior's gradient; not done here).
  """

  kind: str = 'cosine'
  log_snr_min: float = -10.0
  log_snr_max: float = 10.0
  hidden: int = 1024

  def setup(self):
    if self.kind not in SCHEDULES:
      raise ValueError(f'config.noise_schedule must be one of {SCHEDULES}; got {self.kind!r}')
    if not self.log_snr_max > self.log_snr_min:
      raise ValueError(
        f'config.log_snr_max ({self.log_snr_max}) must exceed '
        f'config.log_snr_min ({self.log_snr_min})'
      )
    if self.kind == 'learned':
      self.l1 = _MonotoneDense(1)
      self.l2 = _MonotoneDense(self.hidden)
      self.l3 = _MonotoneDense(1)
      self.gamma_0 = self.param('gamma_0', nn.initializers.constant(-self.log_snr_max), ())
      self.gamma_1 = self.param('gamma_1', nn.initializers.constant(-self.log_snr_min), ())

  def _gamma_tilde(self, t):
    h = self.l1(t[..., None])
    g = self.l2(h)
    return (h + self.l3(2.0 * (jax.nn.sigmoid(g) - 0.5)) / self.hidden)[..., 0]

  def __call__(self, t) -> jnp.ndarray:
    t = jnp.asarray(t, jnp.float32)
    if self.kind == 'cosine':
      return cosine_log_snr(t, log_snr_min=self.log_snr_min, log_snr_max=self.log_snr_max)
    if self.kind == 'linear':
      return linear_log_snr(t, log_snr_min=self.log_snr_min, log_snr_max=self.log_snr_max)
    g0, g1 = self._gamma_tilde(jnp.zeros(())), self._gamma_tilde(jnp.ones(()))
    frac = (self._gamma_tilde(t) - g0) / (g1 - g0)
    return -(self.gamma_0 + (self.gamma_1 - self.gamma_0) * frac)


# -- the network -----------------------------------------------------------------------------


def timestep_embedding(s, dim: int, *, max_period: float = 10_000.0) -> jnp.ndarray:
  """Sinusoidal embedding `[B, dim]` of `1000 s` (DDPM's, for `s` in about `[0, 1]`)."""
  half = dim // 2
  freqs = jnp.exp(-math.log(max_period) * jnp.arange(half, dtype=jnp.float32) / half)
  args = 1000.0 * jnp.asarray(s, jnp.float32)[:, None] * freqs[None]
  emb = jnp.concatenate([jnp.sin(args), jnp.cos(args)], axis=-1)
  return jnp.pad(emb, ((0, 0), (0, dim - 2 * half)))


def fourier_features(x, exponents: Sequence[int]) -> jnp.ndarray:
  """`[sin(2^n pi x), cos(2^n pi x)]` per channel and exponent `n` (VDM appendix B.3)."""
  freqs = jnp.asarray([2.0**n * math.pi for n in exponents], jnp.float32)
  args = x[..., None] * freqs  # [B, H, W, C, F]
  f = jnp.concatenate([jnp.sin(args), jnp.cos(args)], axis=-1)
  return f.reshape(x.shape[:-1] + (-1,))


def _groups(channels: int) -> int:
  return next(
    g for g in (32, 16, 8, 4, 2, 1) if (channels % g == 0 and channels // g >= 2) or g == 1
  )


class ResBlock(nn.Module):
  """GroupNorm -> swish -> conv -> + time/class embedding -> GroupNorm -> swish -> dropout
  -> conv (zero-initialised, so a block starts as the identity), plus the skip."""

  channels: int
  dropout_rate: float = 0.0

  @nn.compact
  def __call__(self, x, emb, *, train: bool):
    h = nn.swish(nn.GroupNorm(_groups(x.shape[-1]))(x))
    h = Conv(self.channels, (3, 3))(h)
    h = h + nn.Dense(self.channels)(nn.swish(emb))[:, None, None, :]
    h = nn.swish(nn.GroupNorm(_groups(self.channels))(h))
    if self.dropout_rate > 0:
      h = Dropout(self.dropout_rate, deterministic=not train)(h)
    h = Conv(self.channels, (3, 3), kernel_init=nn.initializers.zeros_init())(h)
    if x.shape[-1] != self.channels:
      x = Conv(self.channels, (1, 1))(x)
    return x + h


class SelfAttention(nn.Module):
  """Single-head self-attention over the pixels, residual, zero-initialised output."""

  @nn.compact
  def __call__(self, x):
    b, h, w, c = x.shape
    y = nn.GroupNorm(_groups(c))(x).reshape(b, h * w, c)
    q, k, v = (nn.Dense(c)(y) for _ in range(3))
    att = jax.nn.softmax(jnp.einsum('bic,bjc->bij', q, k) / math.sqrt(c), axis=-1)
    out = nn.Dense(c, kernel_init=nn.initializers.zeros_init())(jnp.einsum('bij,bjc->bic', att, v))
    return x + out.reshape(b, h, w, c)


class UNet(nn.Module):
  """Time-conditioned U-Net for `[B, H, W, C]` images whose sides divide by
  `2 ** (len(channel_mults) - 1)` (8x8 digits with `(1, 2)`, 28x28 MNIST with
  `(1, 2, 2)`, 32x32 patches with `(1, 2, 2, 2)`).

  Attributes:
    channels: width of the first level; level `i` has `channels * channel_mults[i]`.
    channel_mults: one entry per resolution (each but the last halves the sides).
    num_res_blocks: residual blocks per level on the way down (one more on the way up).
    attention: self-attention in the middle, at the lowest resolution.
    num_classes: 0 for an unconditional network; else labels in `[0, num_classes]`,
      `num_classes` being the null class of classifier-free guidance.
    fourier_exponents: Fourier features `2^n pi` of the input for these `n` (VDM).
    dropout_rate: dropout inside the residual blocks (when `train`).
  """

  channels: int = 64
  channel_mults: Sequence[int] = (1, 2)
  num_res_blocks: int = 1
  attention: bool = False
  num_classes: int = 0
  fourier_exponents: Sequence[int] = ()
  dropout_rate: float = 0.0

  @property
  def size_multiple(self) -> int:
    return 2 ** (len(self.channel_mults) - 1)

  @nn.compact
  def __call__(self, x, s, labels=None, *, train: bool = False):
    """x: `[B, H, W, C]`; s: `[B]` conditioning scalar; labels: int `[B]` or None."""
    out_channels = x.shape[-1]
    emb_dim = 4 * self.channels
    emb = timestep_embedding(s, self.channels)
    emb = nn.Dense(emb_dim)(nn.swish(nn.Dense(emb_dim)(emb)))
    if self.num_classes:
      if labels is None:
        labels = jnp.full((x.shape[0],), self.num_classes, jnp.int32)
      emb = emb + nn.Embed(self.num_classes + 1, emb_dim)(labels)
    if self.fourier_exponents:
      x = jnp.concatenate([x, fourier_features(x, self.fourier_exponents)], axis=-1)
    h = Conv(self.channels, (3, 3))(x)
    skips = [h]
    last = len(self.channel_mults) - 1
    for i, mult in enumerate(self.channel_mults):
      for _ in range(self.num_res_blocks):
        h = ResBlock(self.channels * mult, self.dropout_rate)(h, emb, train=train)
        skips.append(h)
      if i != last:
        h = Conv(h.shape[-1], (3, 3), strides=(2, 2))(h)
        skips.append(h)
    h = ResBlock(h.shape[-1], self.dropout_rate)(h, emb, train=train)
    if self.attention:
      h = SelfAttention()(h)
    h = ResBlock(h.shape[-1], self.dropout_rate)(h, emb, train=train)
    for i, mult in reversed(list(enumerate(self.channel_mults))):
      for _ in range(self.num_res_blocks + 1):
        h = jnp.concatenate([h, skips.pop()], axis=-1)
        h = ResBlock(self.channels * mult, self.dropout_rate)(h, emb, train=train)
      if i != 0:
        b, hh, ww, c = h.shape
        h = jax.image.resize(h, (b, 2 * hh, 2 * ww, c), 'nearest')
        h = Conv(c, (3, 3))(h)
    h = nn.swish(nn.GroupNorm(_groups(h.shape[-1]))(h))
    return Conv(out_channels, (3, 3), kernel_init=nn.initializers.zeros_init())(h)


def check_image_shape(net: UNet, shape, field: str = 'config.channel_mults') -> None:
  """A ValueError naming `field` unless the image sides divide by `net.size_multiple`."""
  h, w = shape[:2]
  m = net.size_multiple
  if h % m or w % m:
    raise ValueError(
      f'{field}={tuple(net.channel_mults)} halves the image '
      f'{len(net.channel_mults) - 1} time(s), so its sides must divide by {m}; '
      f'got {tuple(shape)}'
    )


def drop_labels(key, labels, *, rate: float, null_class: int):
  """Labels replaced by the null class with probability `rate` (classifier-free guidance
  training, Ho & Salimans 2022); unchanged when `rate == 0` or there are none."""
  if labels is None or rate <= 0:
    return labels
  drop = jax.random.bernoulli(key, rate, jnp.shape(labels))
  return jnp.where(drop, null_class, labels)


def low_discrepancy_times(key, num: int) -> jnp.ndarray:
  """`[num]` times `(u + i / num) mod 1`, `u ~ U[0, 1)`: every one marginally uniform,
  jointly stratified (VDM appendix I.1, lowers the variance of the bound's estimate)."""
  u = jax.random.uniform(key, ())
  return jnp.mod(u + jnp.arange(num, dtype=jnp.float32) / num, 1.0)


# -- VDM -------------------------------------------------------------------------------------


class VDM(nn.Module):
  """Variational diffusion model: `UNet` (as `net`) and `LogSNRSchedule` (as `schedule`).

  `__call__(z, log_snr, labels)` is the network's prediction (`eps` or `v`, per
  `prediction_type`) at log-SNR `log_snr [B]`; `log_snr(t)` is the schedule.
  The network sees `s = (log_snr_max - lambda) / (log_snr_max - log_snr_min)`, which
  runs over `[0, 1]` for the fixed schedules.
  """

  net: UNet
  schedule: LogSNRSchedule
  prediction_type: str = 'eps'

  def __call__(self, z, log_snr, labels=None, *, train: bool = False):
    lo, hi = self.schedule.log_snr_min, self.schedule.log_snr_max
    return self.net(z, (hi - log_snr) / (hi - lo), labels, train=train)

  def log_snr(self, t):
    return self.schedule(t)

  def init_all(self, z, labels=None):
    """Touches both submodules (for `init`)."""
    lam = self.log_snr(jnp.zeros((z.shape[0],)))
    return self(z, lam, labels)


def eps_from_prediction(prediction, z, log_snr, prediction_type: str):
  """The noise estimate `eps_hat` from an `eps` or `v` prediction at `z`, `log_snr [B]`."""
  if prediction_type == 'eps':
    return prediction
  alpha, sigma = (a[:, None, None, None] for a in alpha_sigma(log_snr))
  return sigma * z + alpha * prediction


def vdm_terms(
  model: VDM,
  params,
  images,
  labels,
  key,
  *,
  num_levels: int,
  train: bool = False,
  times=None,
  cond_drop_rate: float = 0.0,
) -> dict:
  """The VDM bound on `-log P(images)` per example, in nats, and its three terms.

  Args:
    model: a `VDM`.
    params: its variables.
    images: integer levels `[B, H, W, C]` on `[0, num_levels)`.
    labels: int `[B]` (conditional network) or None.
    key: PRNG key: times (low-discrepancy over the batch unless `times` is given),
      noise, dropout and the label dropout of guidance training.
    num_levels: number of levels `L` of the data.
    train: dropout on.
    times: optional `[B]` times of the diffusion term.
    cond_drop_rate: probability of the null label (guidance training).

  Returns:
    dict of `[B]` arrays: `recon` (`-log p(k | z_0)`, the discrete decoder at t=0),
    `prior` (`KL(q(z_1 | x) || N(0, I))`), `diffusion` (the continuous-time term,
    `0.5 (-lambda'(t)) ||eps - eps_hat||^2`) and `bound`, their sum.
  """
  t_key, eps_key, eps0_key, drop_key, label_key = jax.random.split(key, 5)
  b = images.shape[0]
  x = levels_to_unit(images, num_levels)
  if times is None:
    times = low_discrepancy_times(t_key, b)
  schedule = lambda t: model.apply(params, t, method=model.log_snr)
  lam, dlam = jax.jvp(schedule, (times,), (jnp.ones_like(times),))
  lam_ends = jnp.asarray(schedule(jnp.asarray([0.0, 1.0])))  # `apply`'s type is a union
  lam0, lam1 = lam_ends[0], lam_ends[1]

  # Diffusion term at t (VDM eq. 17).
  eps = jax.random.normal(eps_key, x.shape)
  alpha, sigma = (a[:, None, None, None] for a in alpha_sigma(lam))
  z = alpha * x + sigma * eps
  labels = drop_labels(label_key, labels, rate=cond_drop_rate, null_class=model.net.num_classes)
  pred = model.apply(params, z, lam, labels, train=train, rngs={'dropout': drop_key})
  diffusion = losses.diffusion_loss(pred, x, eps, lam, dlam, prediction_type=model.prediction_type)

  # Discrete decoder at t = 0 (VDM appendix C): p(k | z_0) is proportional to
  # N(z_0 / alpha_0; x_k, sigma_0^2 / alpha_0^2) over the L bin centres x_k.
  a0, s0 = alpha_sigma(lam0)
  z0 = a0 * x + s0 * jax.random.normal(eps0_key, x.shape)
  centres = levels_to_unit(jnp.arange(num_levels), num_levels)
  logits = -0.5 * jnp.exp(lam0) * jnp.square(z0[..., None] / a0 - centres)
  recon = -losses.categorical_log_prob(logits, jnp.asarray(images, jnp.int32))

  # Prior term at t = 1: KL(N(alpha_1 x, sigma_1^2) || N(0, 1)).
  a1 = jnp.sqrt(jax.nn.sigmoid(lam1))
  prior = losses.gaussian_kl(a1 * x, jnp.broadcast_to(jax.nn.log_sigmoid(-lam1), x.shape))
  return {
    'recon': recon,
    'prior': prior,
    'diffusion': diffusion,
    'bound': recon + prior + diffusion,
  }


# -- flow matching ---------------------------------------------------------------------------


class FlowMatching(nn.Module):
  """Velocity field `v(x, t, labels)` of a flow from N(0, I) at `t = 0` to data at `t = 1`."""

  net: UNet
  sigma_min: float = 0.0

  def __call__(self, x, t, labels=None, *, train: bool = False):
    return self.net(x, t, labels, train=train)


def flow_matching_terms(
  model: FlowMatching,
  params,
  images,
  labels,
  key,
  *,
  num_levels: int,
  train: bool = False,
  times=None,
  cond_drop_rate: float = 0.0,
) -> dict:
  """Conditional flow-matching loss per example on uniformly dequantised images.

  Returns a dict with `loss` `[B]` (`||v(x_t, t) - (x_1 - (1 - sigma_min) x_0)||^2`,
  Lipman et al. 2023 eq. 23) and `t` `[B]`; times low-discrepancy over the batch
  unless given.
  """
  t_key, noise_key, deq_key, drop_key, label_key = jax.random.split(key, 5)
  b = images.shape[0]
  x1 = dequantize(deq_key, images, num_levels=num_levels)
  if times is None:
    times = low_discrepancy_times(t_key, b)
  x0 = jax.random.normal(noise_key, x1.shape)
  t = times[:, None, None, None]
  xt = (1.0 - (1.0 - model.sigma_min) * t) * x0 + t * x1
  labels = drop_labels(label_key, labels, rate=cond_drop_rate, null_class=model.net.num_classes)
  v = model.apply(params, xt, times, labels, train=train, rngs={'dropout': drop_key})
  return {'loss': losses.flow_matching_loss(v, x0, x1, sigma_min=model.sigma_min), 't': times}


def dequantized_nll(log_px, *, num_dims: int, num_levels: int):
  """`-log P(k)` bound (nats) from a density `log p(x)` on `[-1, 1]^D` at dequantised `x`.

  A bin of level `k` has width `2 / L` in `x`, so `-log P(k) <= E_u[-log p(x)] -
  D log(2 / L)` (Jensen; Theis et al. 2016).
  """
  return -log_px - num_dims * math.log(2.0 / num_levels)


def labels_or_none(batch, conditional: bool) -> jnp.ndarray | None:
  return jnp.asarray(batch['label'], jnp.int32) if conditional else None
