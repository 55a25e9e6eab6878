"""EDM (Karras et al. 2022, "Elucidating the Design Space of Diffusion-Based Generative
Models"): the U-Net of `gm_jax.models.diffusion` as a preconditioned denoiser.

* `edm_preconditioning(sigma, sigma_data=...)`: Table 1's `c_skip, c_out, c_in, c_noise`,
  chosen so that the network's input and its regression target have unit variance at
  every noise level (appendix B.6).
* `EDM`: `D(x; sigma) = c_skip(sigma) x + c_out(sigma) F(c_in(sigma) x, c_noise(sigma))`,
  `F` the `UNet` (class-conditional like it, with the null class of guidance).
* `log_normal_sigmas`: the training distribution `ln sigma ~ N(P_mean, P_std^2)`,
  `P_mean = -1.2`, `P_std = 1.2` (Table 1).
* `edm_terms`: the per-example loss `gm_jax.losses.edm_loss` on uniformly dequantised
  images (as `flow_matching_terms`, so the probability-flow ODE gives a likelihood of
  the discrete data the same way).
* `edm_denoiser`: the model as `denoise(x, sigma)` for the sampler suite of
  `gm_jax.sampling` (`sample_heun` on `karras_sigmas(..., sigma_min=SIGMA_MIN,
  sigma_max=SIGMA_MAX)` is the paper's deterministic sampler).

Data scale: `[-1, 1]` as in `gm_jax.models.diffusion`, whence `sigma_data = 0.5`.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from gm_jax import losses
from gm_jax.models.diffusion import dequantize
from gm_jax.models.diffusion import drop_labels
from gm_jax.models.diffusion import UNet

SIGMA_DATA = 0.5
P_MEAN, P_STD = -1.2, 1.2
# The sampling range of Karras et al. 2022, Table 1 (sigma_min, sigma_max, rho = 7).
SIGMA_MIN, SIGMA_MAX = 0.002, 80.0


def edm_preconditioning(sigma, *, sigma_data: float = SIGMA_DATA):
  """`(c_skip, c_out, c_in, c_noise)` at `sigma` (Karras et al. 2022, Table 1).

  `c_skip = sigma_data^2 / (sigma^2 + sigma_data^2)`,
  `c_out = sigma sigma_data / sqrt(sigma^2 + sigma_data^2)`,
  `c_in = 1 / sqrt(sigma^2 + sigma_data^2)`, `c_noise = ln(sigma) / 4`.

  Args:
    sigma: noise levels `> 0`, any shape.
    sigma_data: the data's standard deviation (> 0).

  Returns:
    four arrays of `sigma`'s shape.
  """
  if not sigma_data > 0:
    raise ValueError(f'sigma_data must be > 0, got {sigma_data!r}')
  sigma = jnp.asarray(sigma)
  total = jnp.square(sigma) + sigma_data**2
  c_skip = sigma_data**2 / total
  c_out = sigma * sigma_data * jax.lax.rsqrt(total)
  c_in = jax.lax.rsqrt(total)
  c_noise = 0.25 * jnp.log(sigma)
  return c_skip, c_out, c_in, c_noise


def log_normal_sigmas(key, shape, *, p_mean: float = P_MEAN, p_std: float = P_STD):
  """Training noise levels `exp(p_mean + p_std n)`, `n ~ N(0, 1)`, float32 of `shape`."""
  if not p_std >= 0:
    raise ValueError(f'p_std must be >= 0, got {p_std!r}')
  return jnp.exp(p_mean + p_std * jax.random.normal(key, tuple(shape), jnp.float32))


class EDM(nn.Module):
  """`D(x; sigma) = c_skip x + c_out F(c_in x, c_noise)` with `F` the `UNet` (as `net`).

  The U-Net sees `c_noise = ln(sigma) / 4` as its conditioning scalar `s` (about
  `[-1.6, 1.1]` over `[0.002, 80]`; its sinusoidal embedding takes any real `s`).

  Attributes:
    net: the `UNet` `F`; its `num_classes` makes `D` class-conditional.
    sigma_data: the data's standard deviation.
  """

  net: UNet
  sigma_data: float = SIGMA_DATA

  def __call__(self, x, sigma, labels=None, *, train: bool = False):
    """x: `[B, H, W, C]`; sigma: `[B]` or a scalar (`> 0`); labels: int `[B]` or None.

    Returns `D(x; sigma)`, `[B, H, W, C]`.
    """
    sigma = jnp.broadcast_to(jnp.asarray(sigma, jnp.float32), (x.shape[0],))
    c_skip, c_out, c_in, c_noise = (
      c.reshape((-1,) + (1,) * (x.ndim - 1))
      for c in edm_preconditioning(sigma, sigma_data=self.sigma_data)
    )
    f = self.net(c_in * x, c_noise.reshape(-1), labels, train=train)
    return c_skip * x + c_out * f.astype(x.dtype)


def edm_denoiser(model: EDM, params, labels=None):
  """`denoise(x [B, ...], sigma scalar) -> D(x; sigma)` for `gm_jax.sampling`."""

  def denoise(x, sigma):
    return model.apply(params, x, sigma, labels)

  return denoise


def edm_terms(
  model: EDM,
  params,
  images,
  labels,
  key,
  *,
  num_levels: int,
  train: bool = False,
  sigmas=None,
  p_mean: float = P_MEAN,
  p_std: float = P_STD,
  cond_drop_rate: float = 0.0,
) -> dict:
  """The EDM loss per example on uniformly dequantised images.

  `y = dequantize(images)` in `[-1, 1]`, `sigma ~ log_normal_sigmas` (unless given),
  `D(y + sigma n; sigma)`, `loss = edm_loss(D, y, sigma)`.

  Args:
    model: an `EDM`.
    params: its variables.
    images: integer levels `[B, H, W, C]` on `[0, num_levels)`.
    labels: int `[B]` (conditional network) or None.
    key: PRNG key: noise levels, noise, dequantisation, dropout, label dropout.
    num_levels: number of levels `L` of the data.
    train: dropout on.
    sigmas: optional `[B]` noise levels.
    p_mean, p_std: the log-normal distribution of the noise levels.
    cond_drop_rate: probability of the null label (guidance training).

  Returns:
    dict of `[B]` arrays: `loss` and `sigma`.
  """
  s_key, noise_key, deq_key, drop_key, label_key = jax.random.split(key, 5)
  y = dequantize(deq_key, images, num_levels=num_levels)
  if sigmas is None:
    sigmas = log_normal_sigmas(s_key, (y.shape[0],), p_mean=p_mean, p_std=p_std)
  x = y + sigmas.reshape((-1,) + (1,) * (y.ndim - 1)) * jax.random.normal(noise_key, y.shape)
  labels = drop_labels(label_key, labels, rate=cond_drop_rate, null_class=model.net.num_classes)
  denoised = model.apply(params, x, sigmas, labels, train=train, rngs={'dropout': drop_key})
  return {
    'loss': losses.edm_loss(denoised, y, sigmas, sigma_data=model.sigma_data),
    'sigma': sigmas,
  }
