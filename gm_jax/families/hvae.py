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
from gm_jax.families import _binarization as binarization
from gm_jax.models import hvae as hvae_lib
from gm_jax.models import latent
from gm_jax.train import optim
from gm_jax.train.family import Family

MODELS = ('hvae',)
OBJECTIVES = ('elbo', 'iwae')

# The family's own settings (`gm_jax.families.setup` fills them in once).
DEFAULTS = {
  'likelihood': 'categorical',
  'cells_per_group': 1,
  'output_cells': 1,
  'normalization': 'weight',
  'dropout_rate': 0.0,
  'objective': 'elbo',
  'iwae_train_samples': 5,
  'free_bits': 0.0,
  'spectral_reg': 0.0,
  'grad_skip_norm': 0.0,
  'kl_warmup_steps': 0,
  'iwae_samples': 1000,
  'iwae_batch_size': 120,
  'sample_temperature': 1.0,
  'picture_temperatures': (1.0, 0.8, 0.6, 0.4, 0.2),
  **binarization.DEFAULTS,
}
DEFAULTS_DOC = {
  'likelihood': "decoder distribution p(x|z): 'categorical', 'bernoulli', ...",
  'cells_per_group': 'residual cells per latent group',
  'output_cells': 'residual cells after the last group, before the likelihood',
  'normalization': "'weight' (weight normalisation) or another of models.hvae's",
  'dropout_rate': 'dropout in the residual cells',
  'objective': "'elbo' or 'iwae' (the K-sample bound, K = iwae_train_samples)",
  'iwae_train_samples': 'K of the IWAE training objective',
  'free_bits': 'minimum KL per group in nats in the training loss (0: off)',
  'spectral_reg': 'weight of the spectral-norm regulariser (0: off)',
  'grad_skip_norm': 'skip a step whose gradient norm is above this (0: off)',
  'kl_warmup_steps': 'steps of the linear KL warm-up (0: off)',
  'iwae_samples': 'importance samples per test image of the IWAE-K evaluation',
  'iwae_batch_size': 'test images per batch of the IWAE evaluation',
  'sample_temperature': 'prior temperature of samples.png',
  'picture_temperatures': 'prior temperatures of the sample rows in the pictures',
  **binarization.DEFAULTS_DOC,
}
ACTIVE_GROUP_NATS = 0.01  # a group "carries information" above this mean KL (nats)


def build_model(config, info) -> hvae_lib.HVAE:
  """The `HVAE` for dataset `info` from `config` (fields named in errors)."""
  likelihood = latent.checked_likelihood(config, info, 'HVAE')
  try:
    return hvae_lib.HVAE(
      image_shape=tuple(info.shape),
      num_levels=info.num_levels,
      groups_per_scale=tuple(config.groups_per_scale),
      stem_stride=int(config.stem_stride),
      channels=int(config.channels),
      latent_channels=int(config.latent_channels),
      cells_per_group=int(config.cells_per_group),
      output_cells=int(config.output_cells),
      likelihood=likelihood,
      normalization=config.normalization,
      dropout_rate=float(config.dropout_rate),
    )
  except ValueError as e:
    raise ValueError(f'config: {e}') from None


def check_config(config, info) -> None:
  """Checks the HVAE's settings before any data is read; errors name the field."""
  del info  # build_model checks the dataset
  objective = config.objective
  if objective not in OBJECTIVES:
    raise ValueError(f'config.objective must be one of {OBJECTIVES}, got {objective!r}')
  if objective == 'iwae' and int(config.iwae_train_samples) < 1:
    raise ValueError(f'config.iwae_train_samples must be >= 1, got {config.iwae_train_samples!r}')
  for name in ('free_bits', 'spectral_reg', 'grad_skip_norm'):
    if float(config[name]) < 0:
      raise ValueError(f'config.{name} must be >= 0, got {config[name]!r}')
  optim.kl_warmup_steps(config)
  binarization.check_config(config)


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


def make_family(config, info, *, grey_levels=None) -> Family:
  """Pure functions of the hierarchical VAE for the generic trainer.

  Args:
    grey_levels: levels of the images before `config.binarize` (the `prepare` hook's).
  """
  check_config(config, info)
  model = build_model(config, info)
  num_dims = info.num_dims
  objective = config.objective
  num_iwae = int(config.iwae_train_samples)
  free_bits = float(config.free_bits)
  spectral_reg = float(config.spectral_reg)
  skip_norm = float(config.grad_skip_norm)
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
        penalty = (
          jnp.sum(jnp.maximum(kl_groups, free_bits)) if free_bits > 0 else jnp.sum(kl_groups)
        )
        value = recon + beta * penalty
        metrics['kl_weight'] = beta
      else:
        value = -jnp.mean(terms['elbo'])
      metrics.update({f'kl_group_{l}': kl_groups[l] for l in range(model.num_groups)})
      metrics.update(
        elbo_bpd=jnp.mean(to_bpd(-terms['elbo'])), recon_nats=recon, kl_nats=jnp.mean(terms['kl'])
      )
    else:
      log_px, log_pz, log_qz = hvae_lib.iwae_log_weights(
        model, params, x, key, num_iwae, train=train
      )
      bound = losses.iwae_bound(log_px, log_pz, log_qz)
      value = -jnp.mean(bound)
      # The first draw alone is a (sampled-KL) single-sample ELBO.
      metrics.update(
        iwae_bpd=jnp.mean(to_bpd(-bound)),
        elbo_bpd=jnp.mean(to_bpd(-(log_px[0] + log_pz[0] - log_qz[0]))),
        recon_nats=-jnp.mean(log_px[0]),
      )
    if train and spectral_reg > 0:
      reg = jnp.sum(hvae_lib.spectral_norms(model, params))
      value = value + spectral_reg * reg
      metrics['spectral_norm_sum'] = reg
    return value, metrics

  def evaluate(params, splits, key, cfg):
    return evaluate_likelihood(
      model,
      params,
      splits.test,
      key,
      num_samples=int(cfg.iwae_samples),
      batch_size=int(cfg.iwae_batch_size),
      mesh=parallel.eval_mesh(cfg.parallel),
    )

  sample_t = float(config.sample_temperature)

  def sample(params, key, num):
    return np.asarray(_sample_jit(model)(params, key, num, sample_t))

  temperatures = tuple(config.picture_temperatures)

  def pictures(params, splits, key, workdir):
    return hvae_pictures(model, params, splits, key, workdir, temperatures=temperatures)

  metric = 'iwae_bpd' if objective == 'iwae' else 'elbo_bpd'
  messages = {
    'zero_gradient': (
      'A gradient-skipping threshold (config.grad_skip_norm='
      f'{skip_norm:g}) below the gradient norms of this dataset does this.'
    )
  }
  if warmup:
    messages['init_from'] = (
      f'The KL warm-up restarts with the step count too (config.kl_warmup_steps={warmup}): '
      'set it to 0 to train at the full KL from the first step.'
    )
  family = Family(
    name=config.model,
    init=init,
    loss=loss,
    evaluate=evaluate,
    sample=sample,
    pictures=pictures,
    validation_metric=metric,
    loss_takes_step=True,
    messages=messages,
    resume_may_change=frozenset({'iwae_samples', 'iwae_batch_size', 'picture_temperatures'}),
  )
  return binarization.wrap_family(config, family, grey_levels=grey_levels)


_SAMPLE_CACHE: dict = {}


def _sample_jit(model):
  return latent.jit_cache(
    _SAMPLE_CACHE,
    model,
    lambda: jax.jit(lambda p, k, n, t: hvae_lib.sample_prior(model, p, k, n, t), static_argnums=2),
  )


def evaluate_likelihood(
  model, params, test: dict, key, *, num_samples: int, batch_size: int = 120, mesh=None
) -> dict:
  """Test ELBO, IWAE-K (nats and bits/dim), per-group KL and the number of active groups;
  `mesh` (`parallel.eval_mesh`): each test batch is split over its devices."""

  def elbo_terms(p, inputs, k):
    return hvae_lib.elbo_terms(model, p, inputs[0], k)

  def iwae(p, inputs, k):
    return hvae_lib.iwae_estimate(model, p, inputs[0], k, num_samples=num_samples)

  results = latent.evaluate_bounds(
    elbo_terms,
    iwae,
    params,
    test,
    key,
    input_keys=('image',),
    num_samples=num_samples,
    num_dims=int(np.prod(model.image_shape)),
    batch_size=batch_size,
    per_group_kl=True,
    mesh=mesh,
  )
  kl_groups = np.asarray(results['test_kl_per_group_nats'])
  results.update(
    likelihood='p(x)',
    latent_group_shapes=[list(s) for s in model.latent_shapes()],
    active_groups=int(np.sum(kl_groups > ACTIVE_GROUP_NATS)),
    num_groups=model.num_groups,
  )
  return results


def hvae_pictures(model, params, splits, key, workdir, *, temperatures) -> dict:
  """`samples_temperatures.png`: one row per temperature (all groups), the decoder mean
  of tempered latent samples, the same noise in every column; `reconstructions.png`:
  test images above their reconstructions (decoder mean, one posterior sample)."""
  from gm_jax.evaluate import images
  from gm_jax.evaluate import probe

  levels, per_row = model.num_levels, 10
  x = jnp.asarray(splits.test['image'][:16])

  @jax.jit  # one compilation for every picture
  def draw(p):
    rows = jax.vmap(lambda t: hvae_lib.sample_prior_mean(model, p, key, per_row, t))(
      jnp.asarray(temperatures, jnp.float32)
    )
    return rows.reshape((-1,) + rows.shape[2:]), hvae_lib.reconstruct(model, p, x, key)

  rows, recon = map(np.asarray, draw(params))
  images.save_image_grid(
    rows, os.path.join(workdir, 'samples_temperatures.png'), num_levels=levels, nrow=per_row
  )
  pairs = np.stack([np.asarray(x), recon], 1).reshape((-1,) + x.shape[1:])
  images.save_image_grid(
    pairs, os.path.join(workdir, 'reconstructions.png'), num_levels=levels, nrow=8
  )
  results = {'picture_temperatures': [float(t) for t in temperatures]}
  if splits.info.num_classes:
    means = jax.jit(lambda p, images: hvae_lib.posterior_means(model, p, images))
    results.update(probe.probe_splits(lambda x: means(params, x), splits))
  return results


# The registry's hook: the splits binarised as `config.binarize` asks, and the grey levels
# before binarisation for `make_family`.
prepare = binarization.prepare
