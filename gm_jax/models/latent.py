"""What the latent-variable families (VAE, CVAE, HVAE) share: the IWAE estimator and
the test-bound evaluation around it.

Each model exposes its importance log-weights as

    log_weights(params, inputs, key, num_samples, start) -> (log_px, log_pz, log_qz)

three `[num_samples, B]` arrays for the draws `start, ..., start + num_samples - 1`,
where draw `k` uses noise derived from `fold_in(key, k)` only (so any split of the draws
into chunks gives the same weights). `inputs` is a tuple of arrays (the images, and the
labels of a conditional model).
"""

from __future__ import annotations

from collections.abc import Callable
import math

import jax
import jax.numpy as jnp
import numpy as np

from gm_jax import losses
from gm_jax import parallel

LogWeights = Callable[..., tuple[jax.Array, jax.Array, jax.Array]]

_ESTIMATORS: dict = {}


def iwae_estimate(
  log_weights: LogWeights,
  params,
  inputs: tuple,
  key,
  *,
  num_samples: int,
  chunk_size: int,
  cache_key=None,
) -> jax.Array:
  """`[B]` IWAE-K bound on log p(x) in nats (Burda et al. 2016, eq. 8; the ELBO at K = 1).

  The K draws run as `ceil(K / chunk_size)` equal chunks inside one jitted `lax.map`:
  one dispatch per batch, and only one chunk's activations alive at a time (the
  `[K, B]` log-weights are all that is kept). The last chunk's draws beyond K are
  computed and dropped, so every chunk has one shape.

  Args:
    log_weights: the model's log-weight function (module docstring).
    inputs: `(x, ...)`, each `[B, ...]`.
    num_samples: K >= 1.
    chunk_size: draws per chunk (>= 1; capped at K).
    cache_key: identifies `log_weights` across calls (e.g. the model), so the jitted
      estimator compiles once per model and shape.
  """
  if num_samples < 1:
    raise ValueError(f'num_samples must be >= 1, got {num_samples}')
  chunk = max(1, min(int(chunk_size), num_samples))
  num_chunks = math.ceil(num_samples / chunk)
  cache = (log_weights if cache_key is None else cache_key, chunk, num_chunks, num_samples)
  fn = _ESTIMATORS.get(cache)
  if fn is None:

    def estimate(params, inputs, key):
      def one(start):
        log_px, log_pz, log_qz = log_weights(params, inputs, key, chunk, start)
        return log_px + log_pz - log_qz  # [chunk, B]

      starts = jnp.arange(num_chunks, dtype=jnp.int32) * chunk
      log_w = jax.lax.map(one, starts).reshape((num_chunks * chunk, -1))[:num_samples]
      zeros = jnp.zeros_like(log_w)
      return losses.iwae_bound(log_w, zeros, zeros)

    fn = _ESTIMATORS[cache] = jax.jit(estimate)
  return fn(params, inputs, key)


def checked_likelihood(config, info, family: str) -> str:
  """`config.likelihood` of an image family (its `DEFAULTS` fill it), checked against `info`."""
  if info.kind != 'image':
    raise ValueError(f'the {family} family needs an image dataset; {info.name!r} is {info.kind}')
  likelihood = config.likelihood
  if likelihood == 'bernoulli' and info.num_levels != 2:
    raise ValueError(
      f"config.likelihood='bernoulli' needs binary data; {info.name!r} has "
      f'{info.num_levels} levels (use binarized_mnist, set config.binarize '
      "to 'dynamic' or 'static', or use categorical)"
    )
  return likelihood


def chunk_size_for(bytes_per_draw: int, num_samples: int, memory_budget_bytes: int) -> int:
  """The most draws per chunk whose activations fit `memory_budget_bytes`."""
  return max(1, min(num_samples, memory_budget_bytes // max(int(bytes_per_draw), 1)))


def evaluate_bounds(
  elbo_terms: Callable,
  iwae: Callable,
  params,
  test: dict,
  key,
  *,
  input_keys: tuple[str, ...],
  num_samples: int,
  num_dims: int,
  batch_size: int = 120,
  per_group_kl: bool = False,
  mesh=None,
) -> dict:
  """Test ELBO and IWAE-K (nats and bits/dim), averaged over the test split.

  Args:
    elbo_terms: `(params, inputs, key) -> dict` with `'elbo'` `[B]` (and `'kl_groups'`
      `[B, L]` where `per_group_kl`).
    iwae: `(params, inputs, key) -> [B]` IWAE bound (`iwae_estimate` of the model).
    test: the test split; `input_keys` name the arrays passed as `inputs`.
    per_group_kl: also return `test_kl_per_group_nats` `[L]`.
    mesh: `parallel.eval_mesh`; each test batch is split over its devices.
  Batch `i` (the last one zero-padded to `batch_size`) uses `fold_in(key, i)` for the
  ELBO and `fold_in(fold_in(key, i), 1)` for the IWAE draws.
  """

  def per_example(p, batch, k):
    inputs = tuple(batch[name] for name in input_keys)
    terms = elbo_terms(p, inputs, k)
    out = {'elbo': terms['elbo'], 'iwae': iwae(p, inputs, jax.random.fold_in(k, 1))}
    if per_group_kl:
      out['kl_groups'] = terms['kl_groups']
    return out

  per = parallel.map_examples(
    per_example,
    params,
    {name: test[name] for name in input_keys},
    key,
    batch_size=batch_size,
    mesh=mesh,
  )
  elbo, nll = float(np.mean(per['elbo'])), -float(np.mean(per['iwae']))
  to_bpd = lambda nats: float(losses.bits_per_dim(jnp.asarray(nats), num_dims=num_dims))
  out = {
    'bound': f'iwae-{num_samples}',
    'test_nll_nats': nll,
    'test_bpd': to_bpd(nll),
    'test_elbo_nats': -elbo,
    'test_elbo_bpd': to_bpd(-elbo),
    'iwae_samples': num_samples,
  }
  if per_group_kl:
    out['test_kl_per_group_nats'] = [float(v) for v in np.mean(per['kl_groups'], 0)]
  return out


def jit_cache(cache: dict, model, build: Callable[[], Callable]) -> Callable:
  """`cache[model]`, built by `build()` on first use: one compilation per model."""
  fn = cache.get(model)
  if fn is None:
    fn = cache[model] = build()
  return fn
