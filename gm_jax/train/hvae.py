"""The hierarchical-VAE family: ELBO/IWAE loss with NaN safety, evaluation, pictures.

Training objective (`config.objective`):
  'elbo': `log p(x|z) - beta_t * sum_l max(free_bits, KL_l)` where `beta_t` is the
    linear KL warm-up (Sonderby et al. 2016; NVAE Sec. 3.3) and `free_bits` the
    per-group floor of Kingma et al. 2016 ("Improving Variational Inference with
    Inverse Autoregressive Flow", eq. 15), applied to the KL averaged over the batch the
    loss is called on: the trainer's loss group of `config.loss_group_size` examples
    (`parallel.mean_over_groups`). With the default group of 1 the floor is per
    example, the same under every parallel mode; Kingma et al.'s batch-averaged floor
    is `loss_group_size` = the per-device batch.
  'iwae': the IWAE-K bound with `K = config.iwae_train_samples` (Burda et al. 2016).
Validation always uses the true bound (`beta = 1`, no free bits), so selection of
the best parameters is on the quantity we report.

NaN safety (hierarchical VAEs diverge easily, NVAE Sec. 3.3): soft-clamped
log-variances and a posterior relative to the prior (in the model), NVAE's spectral
regulariser `config.spectral_reg * sum_i sigma_i` over every convolution, gradient
clipping (`config.grad_clip_norm`, in the optimiser), gradient skipping
(`config.grad_skip_norm`: a step whose gradient norm is above it or not finite gets a
zero gradient), and the trainer's NaN guard.

KL warm-up needs the step: the family declares `loss_takes_step`, so the trainer passes
`step`; called without it (evaluation), the loss uses `beta = 1`.
"""

from __future__ import annotations

import functools
import os

import jax
import jax.numpy as jnp
import numpy as np
import optax

from gm_jax import losses
from gm_jax import parallel
from gm_jax.models import hvae as hvae_lib
from gm_jax.models import latent
from gm_jax.train import binarization
from gm_jax.train import input_pipeline
from gm_jax.train import loop
from gm_jax.train import optim
from gm_jax.train.family import Family

OBJECTIVES = ('elbo', 'iwae')
ACTIVE_GROUP_NATS = 0.01  # a group "carries information" above this mean KL (nats)


def build_model(config, info) -> hvae_lib.HVAE:
  """The `HVAE` for dataset `info` from `config` (fields named in errors)."""
  likelihood = latent.checked_likelihood(config, info, 'HVAE')
  try:
    return hvae_lib.HVAE(
        image_shape=tuple(info.shape), num_levels=info.num_levels,
        groups_per_scale=tuple(config.groups_per_scale), stem_stride=int(config.stem_stride),
        channels=int(config.channels), latent_channels=int(config.latent_channels),
        cells_per_group=int(config.get('cells_per_group', 1)),
        output_cells=int(config.get('output_cells', 1)), likelihood=likelihood,
        normalization=config.get('normalization', 'weight'),
        dropout_rate=float(config.get('dropout_rate', 0.0)))
  except ValueError as e:
    raise ValueError(f'config: {e}') from None


def _check_config(config) -> None:
  objective = config.get('objective', 'elbo')
  if objective not in OBJECTIVES:
    raise ValueError(f'config.objective must be one of {OBJECTIVES}, got {objective!r}')
  if objective == 'iwae' and int(config.get('iwae_train_samples', 5)) < 1:
    raise ValueError('config.iwae_train_samples must be >= 1, got '
                     f'{config.iwae_train_samples!r}')
  for name in ('free_bits', 'spectral_reg', 'grad_skip_norm'):
    if float(config.get(name, 0)) < 0:
      raise ValueError(f'config.{name} must be >= 0, got {config.get(name)!r}')


@functools.partial(jax.custom_vjp, nondiff_argnums=(1,))
def skip_bad_gradients(tree, max_norm: float):
  """Identity whose backward pass zeroes the whole cotangent when its global norm is
  above `max_norm` or not finite (NVAE-style update skipping, from inside the loss)."""
  return tree


def _skip_fwd(tree, max_norm):
  return tree, None


def _skip_bwd(max_norm, _, cotangent):
  norm = optax.global_norm(cotangent)
  ok = jnp.isfinite(norm) & (norm <= max_norm)
  return (jax.tree.map(lambda g: jnp.where(ok, g, jnp.zeros_like(g)), cotangent),)


skip_bad_gradients.defvjp(_skip_fwd, _skip_bwd)


kl_warmup_weight = optim.kl_warmup_weight  # the schedule the VAE family shares


def make_family(config, info) -> Family:
  """Pure functions of the hierarchical VAE for the generic trainer."""
  _check_config(config)
  model = build_model(config, info)
  num_dims = info.num_dims
  objective = config.get('objective', 'elbo')
  num_iwae = int(config.get('iwae_train_samples', 5))
  free_bits = float(config.get('free_bits', 0.0))
  spectral_reg = float(config.get('spectral_reg', 0.0))
  skip_norm = float(config.get('grad_skip_norm', 0.0))
  warmup = optim.kl_warmup_steps(config)
  to_bpd = lambda nats: losses.bits_per_dim(nats, num_dims=num_dims)

  def init(key, batch):
    return hvae_lib.init_params(model, key, jnp.asarray(batch['image']))

  def loss(params, batch, key, *, train, step=None):
    x = jnp.asarray(batch['image'])
    if train and skip_norm > 0:
      params = skip_bad_gradients(params, skip_norm)
    metrics = {}
    if objective == 'elbo':
      terms = hvae_lib.elbo_terms(model, params, x, key, train=train)
      kl_groups = jnp.mean(terms['kl_groups'], 0)  # [L], nats per example
      recon = -jnp.mean(terms['log_px_given_z'])
      if train:
        beta = kl_warmup_weight(step, warmup)
        penalty = jnp.sum(jnp.maximum(kl_groups, free_bits)) if free_bits > 0 else jnp.sum(
            kl_groups)
        value = recon + beta * penalty
        metrics['kl_weight'] = beta
      else:
        value = -jnp.mean(terms['elbo'])
      metrics.update({f'kl_group_{l}': kl_groups[l] for l in range(model.num_groups)})
      metrics.update(elbo_bpd=jnp.mean(to_bpd(-terms['elbo'])), recon_nats=recon,
                     kl_nats=jnp.mean(terms['kl']))
    else:
      log_px, log_pz, log_qz = hvae_lib.iwae_log_weights(model, params, x, key, num_iwae,
                                                         train=train)
      bound = losses.iwae_bound(log_px, log_pz, log_qz)
      value = -jnp.mean(bound)
      # The first draw alone is a (sampled-KL) single-sample ELBO.
      metrics.update(iwae_bpd=jnp.mean(to_bpd(-bound)),
                     elbo_bpd=jnp.mean(to_bpd(-(log_px[0] + log_pz[0] - log_qz[0]))),
                     recon_nats=-jnp.mean(log_px[0]))
    if train and spectral_reg > 0:
      reg = jnp.sum(hvae_lib.spectral_norms(model, params))
      value = value + spectral_reg * reg
      metrics['spectral_norm_sum'] = reg
    return value, metrics

  def evaluate(params, splits, key, cfg):
    return evaluate_likelihood(model, params, splits.test, key,
                               num_samples=int(cfg.get('iwae_samples', 1000)),
                               batch_size=int(cfg.get('iwae_batch_size', 120)),
                               mesh=parallel.eval_mesh(cfg.parallel))

  sample_t = float(config.get('sample_temperature', 1.0))

  def sample(params, key, num):
    return np.asarray(_sample_jit(model)(params, key, num, sample_t))

  temperatures = tuple(config.get('picture_temperatures', (1.0, 0.8, 0.6, 0.4, 0.2)))

  def pictures(params, splits, key, workdir):
    return hvae_pictures(model, params, splits, key, workdir, temperatures=temperatures)

  metric = 'iwae_bpd' if objective == 'iwae' else 'elbo_bpd'
  messages = {'zero_gradient': (
      'A gradient-skipping threshold (config.grad_skip_norm='
      f'{skip_norm:g}) below the gradient norms of this dataset does this.')}
  if warmup:
    messages['init_from'] = (
        f'The KL warm-up restarts with the step count too (config.kl_warmup_steps={warmup}): '
        'set it to 0 to train at the full KL from the first step.')
  return Family(name=config.model, init=init, loss=loss, evaluate=evaluate, sample=sample,
                pictures=pictures, validation_metric=metric, loss_takes_step=True,
                messages=messages,
                resume_may_change=frozenset({'iwae_samples', 'iwae_batch_size',
                                             'picture_temperatures'}))


_SAMPLE_CACHE: dict = {}


def _sample_jit(model):
  return latent.jit_cache(_SAMPLE_CACHE, model, lambda: jax.jit(
      lambda p, k, n, t: hvae_lib.sample_prior(model, p, k, n, t), static_argnums=2))


def evaluate_likelihood(model, params, test: dict, key, *, num_samples: int,
                        batch_size: int = 120, mesh=None) -> dict:
  """Test ELBO, IWAE-K (nats and bits/dim), per-group KL and the number of active groups;
  `mesh` (`parallel.eval_mesh`): each test batch is split over its devices."""

  def elbo_terms(p, inputs, k):
    return hvae_lib.elbo_terms(model, p, inputs[0], k)

  def iwae(p, inputs, k):
    return hvae_lib.iwae_estimate(model, p, inputs[0], k, num_samples=num_samples)

  results = latent.evaluate_bounds(elbo_terms, iwae, params, test, key,
                                   input_keys=('image',), num_samples=num_samples,
                                   num_dims=int(np.prod(model.image_shape)),
                                   batch_size=batch_size, per_group_kl=True, mesh=mesh)
  kl_groups = np.asarray(results['test_kl_per_group_nats'])
  results.update(likelihood='p(x)',
                 latent_group_shapes=[list(s) for s in model.latent_shapes()],
                 active_groups=int(np.sum(kl_groups > ACTIVE_GROUP_NATS)),
                 num_groups=model.num_groups)
  return results


def hvae_pictures(model, params, splits, key, workdir, *, temperatures) -> dict:
  """`samples_temperatures.png`: one row per temperature (all groups), the decoder mean
  of tempered latent samples, the same noise in every column; `reconstructions.png`:
  test images above their reconstructions (decoder mean, one posterior sample)."""
  from gm_jax.evaluate import images, probe  # pylint: disable=g-import-not-at-top
  levels, per_row = model.num_levels, 10
  x = jnp.asarray(splits.test['image'][:16])

  @jax.jit  # one compilation for every picture
  def draw(p):
    rows = jax.vmap(lambda t: hvae_lib.sample_prior_mean(model, p, key, per_row, t))(
        jnp.asarray(temperatures, jnp.float32))
    return rows.reshape((-1,) + rows.shape[2:]), hvae_lib.reconstruct(model, p, x, key)

  rows, recon = map(np.asarray, draw(params))
  images.save_image_grid(rows, os.path.join(workdir, 'samples_temperatures.png'),
                         num_levels=levels, nrow=per_row)
  pairs = np.stack([np.asarray(x), recon], 1).reshape((-1,) + x.shape[1:])
  images.save_image_grid(pairs, os.path.join(workdir, 'reconstructions.png'),
                         num_levels=levels, nrow=8)
  results = {'picture_temperatures': [float(t) for t in temperatures]}
  if splits.info.num_classes:
    means = jax.jit(lambda p, images: hvae_lib.posterior_means(model, p, images))
    results.update(probe.probe_splits(lambda x: means(params, x), splits))
  return results


def train_and_evaluate(config, workdir: str) -> dict:
  """Loads the dataset named by `config.dataset` and trains the HVAE on it."""
  splits = input_pipeline.load_splits(config)
  splits, family = binarization.apply(config, splits, make_family)
  return loop.run(config, workdir, family, splits)
