"""Vector quantisation for VQ-VAE (van den Oord et al. 2017): pure functions.

* `vector_quantize(z_e, codebook)`: nearest codebook vector per encoder vector, the
  straight-through estimate `z_e + sg(z_q - z_e)` (eq. 3's gradient copy), and the
  codebook and commitment losses `||sg(z_e) - e||^2` and `||z_e - sg(e)||^2` per vector.
* `ema_init` / `ema_update`: the exponential-moving-average codebook of the paper's
  appendix A.1 (eqs. 6-8) with Laplace smoothing of the counts (as in the authors'
  Sonnet `VectorQuantizerEMA`), used instead of the codebook loss.
* `restart_dead_codes`: codes whose EMA count fell below a threshold are moved onto
  random encoder outputs of the batch (Dhariwal et al. 2020, Jukebox, section 3.4).
* `codebook_usage`: perplexity `exp(H(mean one-hot))` and the number of codes used.

Arrays in, arrays out; `z_e: [..., D]` with any leading axes (a code grid `[H, W, D]` per
example or `[B, H, W, D]`), `codebook: [K, D]`. Everything works under `jit`, `vmap` and
`grad`.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

Array = jnp.ndarray


def check_codebook_size(num_codes, name: str = 'num_codes') -> None:
  """A codebook needs at least two codes (one code carries no information)."""
  if not isinstance(num_codes, int) or num_codes < 2:
    raise ValueError(f'{name} must be an integer >= 2 (the codebook size); got {num_codes!r}.')


class Quantized(NamedTuple):
  """Output of `vector_quantize`; leading shape `S = z_e.shape[:-1]`.

  Attributes:
    z_q: `S + (D,)`, straight-through: the value of the nearest code, the gradient of
      `z_e` (`z_e + stop_gradient(e - z_e)`).
    codes: `S` int32 indices into the codebook.
    codebook_loss: `S`, `||sg(z_e) - e||^2` (gradient to the codebook only).
    commitment_loss: `S`, `||z_e - sg(e)||^2` (gradient to the encoder only).
  """

  z_q: Array
  codes: Array
  codebook_loss: Array
  commitment_loss: Array


def nearest_codes(z_e: Array, codebook: Array) -> Array:
  """Index of the nearest code (squared Euclidean distance) per vector: `S` int32."""
  # ||z - e||^2 = ||z||^2 - 2 z.e + ||e||^2; ||z||^2 does not change the argmin.
  scores = 2.0 * z_e @ codebook.T - jnp.sum(codebook**2, axis=-1)
  return jnp.argmax(scores, axis=-1).astype(jnp.int32)


def vector_quantize(z_e: Array, codebook: Array) -> Quantized:
  """Quantises `z_e: [..., D]` with `codebook: [K, D]`; see `Quantized`."""
  if codebook.ndim != 2 or codebook.shape[-1] != z_e.shape[-1]:
    raise ValueError(
      f'codebook must have shape [K, D] with D = z_e.shape[-1] = '
      f'{z_e.shape[-1]}; got {codebook.shape}.'
    )
  check_codebook_size(codebook.shape[0], 'codebook size K')
  codes = nearest_codes(jax.lax.stop_gradient(z_e), jax.lax.stop_gradient(codebook))
  e = jnp.take(codebook, codes, axis=0)
  codebook_loss = jnp.sum((jax.lax.stop_gradient(z_e) - e) ** 2, axis=-1)
  commitment_loss = jnp.sum((z_e - jax.lax.stop_gradient(e)) ** 2, axis=-1)
  z_q = z_e + jax.lax.stop_gradient(e - z_e)
  return Quantized(z_q, codes, codebook_loss, commitment_loss)


def codebook_usage(codes: Array, num_codes: int):
  """Perplexity and number of distinct codes among `codes` (any shape, int).

  Returns `(perplexity, codes_used)` scalars: `exp(-sum_k p_k log p_k)` with `p` the
  frequencies of the codes (between 1 and `num_codes`: the effective number of codes in
  use), and the count of codes with `p_k > 0`.
  """
  counts = jnp.bincount(codes.reshape(-1), length=num_codes)
  p = counts / jnp.maximum(jnp.sum(counts), 1)
  entropy = -jnp.sum(jnp.where(p > 0, p * jnp.log(jnp.where(p > 0, p, 1.0)), 0.0))
  return jnp.exp(entropy), jnp.sum(counts > 0)


class EMAState(NamedTuple):
  """EMA codebook state (van den Oord et al. 2017, appendix A.1).

  Attributes:
    counts: `[K]`, `N_i`, the EMA of the number of vectors assigned to code `i`.
    sums: `[K, D]`, `m_i`, the EMA of their sum.
    codebook: `[K, D]`, `e_i = m_i / N_i` (with Laplace-smoothed `N`).
  """

  counts: Array
  sums: Array
  codebook: Array


def ema_init(codebook: Array) -> EMAState:
  """State whose codebook is `codebook: [K, D]` (counts 1, sums = codebook)."""
  check_codebook_size(codebook.shape[0], 'codebook size K')
  return EMAState(jnp.ones(codebook.shape[:1], codebook.dtype), codebook, codebook)


def ema_update(
  state: EMAState, z_e: Array, codes: Array, *, decay: float = 0.99, eps: float = 1e-5
) -> EMAState:
  """One EMA step on a batch (appendix A.1, eqs. 6-8).

  `N_i <- decay N_i + (1 - decay) n_i`, `m_i <- decay m_i + (1 - decay) sum_{j: code j = i}
  z_e_j`, `e_i = m_i / N~_i` with the Laplace-smoothed count `N~_i = (N_i + eps) /
  (sum N + K eps) * sum N`, so an unused code keeps a finite vector.

  Args:
    state: the current `EMAState`.
    z_e: `[..., D]` encoder outputs of the batch (any leading axes).
    codes: `[...]` their codes (`vector_quantize(...).codes`).
    decay: `gamma` in `[0, 1)`.
    eps: Laplace smoothing of the counts.
  """
  if not 0.0 <= decay < 1.0:
    raise ValueError(f'decay must be in [0, 1); got {decay}.')
  num_codes = state.counts.shape[0]
  z = jax.lax.stop_gradient(z_e).reshape(-1, z_e.shape[-1])
  one_hot = jax.nn.one_hot(codes.reshape(-1), num_codes, dtype=z.dtype)  # [N, K]
  counts = decay * state.counts + (1.0 - decay) * jnp.sum(one_hot, axis=0)
  sums = decay * state.sums + (1.0 - decay) * one_hot.T @ z
  total = jnp.sum(counts)
  smoothed = (counts + eps) / (total + num_codes * eps) * total
  return EMAState(counts, sums, sums / smoothed[:, None])


def restart_dead_codes(key: jax.Array, state: EMAState, z_e: Array, *, threshold: float = 1e-2):
  """Moves codes with `counts < threshold` onto random encoder outputs of the batch.

  A restarted code gets the vector of a uniformly drawn row of `z_e` (with
  replacement), count 1 and sum equal to that vector, so the next `ema_update` treats
  it as a code used once. Codes above the threshold are unchanged.

  Args:
    key: PRNG key.
    state: `EMAState`.
    z_e: `[..., D]` encoder outputs of the batch.
    threshold: restart codes whose EMA count is below this.

  Returns:
    `(state, restarted)`: the new state and a `[K]` bool mask of the restarted codes.
  """
  z = jax.lax.stop_gradient(z_e).reshape(-1, z_e.shape[-1])
  num_codes = state.counts.shape[0]
  picks = jax.random.randint(key, (num_codes,), 0, z.shape[0])
  fresh = z[picks]
  dead = state.counts < threshold
  where = lambda new, old: jnp.where(dead.reshape((-1,) + (1,) * (old.ndim - 1)), new, old)
  new = EMAState(
    where(jnp.ones_like(state.counts), state.counts),
    where(fresh, state.sums),
    where(fresh, state.codebook),
  )
  return new, dead


__all__ = (
  'EMAState',
  'Quantized',
  'check_codebook_size',
  'codebook_usage',
  'ema_init',
  'ema_update',
  'nearest_codes',
  'restart_dead_codes',
  'vector_quantize',
)
