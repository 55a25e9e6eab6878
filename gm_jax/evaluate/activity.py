"""Active latent units of a VAE (Burda et al. 2016, Section 5.2).

A unit u is active when `A_u = Cov_x(E_{u ~ q(u|x)}[u]) > 0.01`: its posterior mean moves
with the input. For the first stochastic layer, `E_q[z | x]` is the encoder mean. For a
second layer (`VAE.top_latent_dim`), `E_q[z2 | x] = E_{z ~ q(z|x)}[mean of q(z2 | z)]`,
estimated by averaging over `num_samples` draws of z.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

THRESHOLD = 0.01  # Burda et al.'s cut-off


def unit_activity(expected_means) -> np.ndarray:
  """`A_u` per unit: the variance over examples of `expected_means` `[N, D]` -> `[D]`."""
  m = np.asarray(expected_means, np.float64)
  if m.ndim != 2 or len(m) < 2:
    raise ValueError(f'expected_means must be [N >= 2, D], got shape {m.shape}')
  if not np.all(np.isfinite(m)):
    raise ValueError('expected_means contain NaN or inf')
  return m.var(axis=0)


def vae_expected_means(
  model, params, images, key, *, num_samples: int = 100, batch_size: int = 500
) -> dict:
  """Posterior means of every stochastic layer of a `gm_jax.models.vae.VAE`.

  Args:
    model: an unconditional `VAE`; `params` its variables (`{'params': ...}`).
    images: int `[N, H, W, C]` as the model takes them.
    key: PRNG key for the draws of z (second layer only).
    num_samples: draws of z per example for `E_q[z2 | x]`.

  Returns:
    `{'z': [N, latent_dim]}` and, for two stochastic layers, `'z2': [N, top_latent_dim]`.
  """
  if num_samples < 1:
    raise ValueError(f'num_samples must be >= 1, got {num_samples}')
  if getattr(model, 'num_classes', 0):
    raise ValueError(
      'vae_expected_means takes an unconditional VAE; a ConditionalVAE '
      'encodes (x, label), so its posterior means depend on the labels'
    )
  two = bool(getattr(model, 'top_latent_dim', 0))

  @jax.jit
  def means(params, x, k):
    mean, log_var = model.apply(params, x, method=type(model).encode)
    out = {'z': mean}
    if two:
      eps = jax.random.normal(k, (num_samples,) + mean.shape, mean.dtype)
      z = mean + jnp.exp(0.5 * log_var) * eps  # [S, B, D]
      top = model.apply(params, z.reshape(-1, mean.shape[-1]), method=type(model).encode_top)[0]
      out['z2'] = top.reshape(num_samples, mean.shape[0], -1).mean(0)
    return out

  images = np.asarray(images)
  parts = []
  for i, start in enumerate(range(0, len(images), batch_size)):
    x = jnp.asarray(images[start : start + batch_size])
    parts.append(jax.device_get(means(params, x, jax.random.fold_in(key, i))))
  return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def active_units(expected_means: dict, *, threshold: float = THRESHOLD) -> dict:
  """`{layer: number of units with A_u > threshold}` and `{layer + '_units': D}`."""
  out = {}
  for layer, m in expected_means.items():
    a = unit_activity(m)
    out[layer] = int(np.sum(a > threshold))
    out[f'{layer}_units'] = int(a.size)
  return out
