"""The likelihood evaluations of the diffusion family, also EDM's: the VDM bound
(`vdm_bound`) and the dequantisation bound through the probability-flow ODE
(`flow_likelihood`), with the settings of the latter."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from gm_jax import parallel
from gm_jax import sampling
from gm_jax.families import _unet_settings
from gm_jax.models import diffusion as dm
from gm_jax.train import defaults

# the probability-flow likelihood (flow matching, EDM)
LIKELIHOOD_DEFAULTS = {
  'likelihood_solver': 'rk4',
  'likelihood_steps': 32,
  'exact_trace_max_dims': 256,
  'eval_dequant_samples': 1,
  'likelihood_batch_size': 40,
}
LIKELIHOOD_DOC = {
  'likelihood_solver': 'ODE solver of the likelihood',
  'likelihood_steps': 'solver steps of the likelihood',
  'exact_trace_max_dims': 'exact divergence up to this many dims (Hutchinson above)',
  'eval_dequant_samples': 'dequantisation draws per test image',
  'likelihood_batch_size': 'test images per likelihood batch',
}


def check_likelihood(config) -> None:
  """The fields of `LIKELIHOOD_DEFAULTS`; errors name the field."""
  _unet_settings.check_positive_ints(
    config, ('likelihood_steps', 'eval_dequant_samples', 'likelihood_batch_size')
  )
  defaults.check_one_of(config, 'likelihood_solver', sampling.ODE_METHODS)


def repeat(tree, k: int):
  """`tree`'s arrays (None stays None) `k` times over along the batch axis (validation draws)."""
  return jax.tree.map(lambda a: None if a is None else jnp.concatenate([a] * k), tree)


def vdm_bound(
  model, params, test, key, *, num_levels, conditional, num_samples, batch_size, mesh=None
) -> dict:
  """The VDM bound on the test images, `num_samples` draws per image.

  Image `b`'s draws use the times `(u_b + k / K) mod 1`, `k < K` (stratified per image),
  so the average over its draws is a low-variance estimate of its bound. `mesh`
  (`parallel.eval_mesh`): each test batch is split over its devices.
  """
  num_dims = math.prod(test['image'].shape[1:])

  def per_batch(params, batch, key):
    images = batch['image']
    labels = batch['label'] if conditional else None
    u_key, key = jax.random.split(key)
    u = jax.random.uniform(u_key, (images.shape[0],))

    def one(i):
      times = jnp.mod(u + i / num_samples, 1.0)
      return dm.vdm_terms(
        model,
        params,
        images,
        labels,
        jax.random.fold_in(key, i),
        num_levels=num_levels,
        times=times,
      )

    return jax.tree.map(lambda v: v.T, jax.lax.map(one, jnp.arange(num_samples)))  # [B, K]

  per = parallel.map_examples(
    per_batch, params, eval_fields(test, conditional), key, batch_size=batch_size, mesh=mesh
  )
  terms = {k: np.asarray(v, np.float64).T for k, v in per.items()}  # [K, N]
  per_image = {k: v.mean(0) for k, v in terms.items()}
  to_bpd = lambda nats: float(nats) / (num_dims * math.log(2.0))
  bound = per_image['bound']
  return {
    'bound': 'elbo',
    'eval_bound_samples': num_samples,
    'test_nll_nats': float(bound.mean()),
    'test_bpd': to_bpd(bound.mean()),
    'test_bpd_stderr': to_bpd(bound.std(ddof=1) / math.sqrt(len(bound))),
    'test_recon_bpd': to_bpd(per_image['recon'].mean()),
    'test_prior_bpd': to_bpd(per_image['prior'].mean()),
    'test_diffusion_bpd': to_bpd(per_image['diffusion'].mean()),
    'test_nonfinite': int(np.sum(~np.isfinite(terms['bound']))),
    'log_snr_0': float(model.apply(params, jnp.zeros(()), method=model.log_snr)),
    'log_snr_1': float(model.apply(params, jnp.ones(()), method=model.log_snr)),
  }


def eval_fields(test, conditional) -> dict:
  """The test arrays the likelihood evaluations read (labels as int32 where conditional)."""
  fields = {'image': test['image']}
  if conditional:
    fields['label'] = np.asarray(test['label'], np.int32)
  return fields


def flow_likelihood(
  model_fn,
  params,
  test,
  key,
  *,
  num_levels,
  conditional,
  trace,
  method,
  num_steps,
  num_draws,
  batch_size,
  mesh=None,
) -> dict:
  """Dequantisation bound through the probability-flow ODE, `num_draws` noise draws per
  image (draw `d` of batch `i` with the key `fold_in(fold_in(key, d), i)`). `model_fn(params)`
  is the velocity `(z, t, labels) -> v`; `mesh` (`parallel.eval_mesh`): each test batch is
  split over its devices."""
  num_dims = math.prod(test['image'].shape[1:])

  def per_batch(params, batch, key):
    velocity_of = model_fn(params)
    images = batch['image']
    labels = batch['label'] if conditional else None
    deq_key, probe_key = jax.random.split(key)
    x = dm.dequantize(deq_key, images, num_levels=num_levels)
    velocity = lambda z, t: velocity_of(z, t, labels)
    if trace == 'exact':
      # the exact trace runs the network on one example at a time (vmapped): its label
      def log_p(xb, lb):
        fn = lambda z, t: velocity_of(z, t, None if lb is None else lb[None])
        return sampling.ode_log_likelihood(
          fn, xb[None], t_data=1.0, t_noise=0.0, num_steps=num_steps, method=method, trace='exact'
        )[0][0]

      log_px = (
        jax.vmap(log_p)(x, labels)
        if labels is not None
        else jax.vmap(lambda xb: log_p(xb, None))(x)
      )
    else:
      log_px, _ = sampling.ode_log_likelihood(
        velocity,
        x,
        t_data=1.0,
        t_noise=0.0,
        num_steps=num_steps,
        method=method,
        trace='hutchinson',
        key=probe_key,
      )
    return dm.dequantized_nll(log_px, num_dims=num_dims, num_levels=num_levels)

  fields = eval_fields(test, conditional)
  draws = [
    parallel.map_examples(
      per_batch, params, fields, jax.random.fold_in(key, d), batch_size=batch_size, mesh=mesh
    )
    for d in range(num_draws)
  ]
  draws = [np.asarray(d, np.float64) for d in draws]
  nll = np.stack(draws)  # [draws, N]
  per_image = nll.mean(0)
  to_bpd = lambda nats: float(nats) / (num_dims * math.log(2.0))
  return {
    'bound': (
      'dequantization (probability-flow ODE, exact trace)'
      if trace == 'exact'
      else "dequantization (probability-flow ODE, Hutchinson's unbiased trace estimate)"
    ),
    'dequantization': 'uniform',
    'likelihood_solver': f'{method}, {num_steps} fixed steps',
    'eval_dequant_samples': num_draws,
    'test_nll_nats': float(per_image.mean()),
    'test_bpd': to_bpd(per_image.mean()),
    'test_bpd_stderr': to_bpd(per_image.std(ddof=1) / math.sqrt(len(per_image))),
    'test_nonfinite': int(np.sum(~np.isfinite(nll))),
  }
