"""The VAE / conditional-VAE family: loss, evaluation (ELBO + IWAE-K), pictures.

`config.objective` picks the training objective: 'elbo' (default, Kingma & Welling
2014) or 'iwae', the K-sample bound of Burda et al. 2016 with
`K = config.iwae_train_samples`. The IWAE objective uses `vae_lib.iwae_log_weights`,
which applies the model deterministically, so it trains without dropout.

`config.kl_warmup_steps` (0 = off) multiplies the KL term of the training loss by
`min(1, (step + 1) / kl_warmup_steps)` (Sonderby et al. 2016): for 'elbo' the loss is
`-log p(x|z) + beta_t KL`, for 'iwae' each log-weight becomes
`log p(x|z_k) + beta_t (log p(z_k) - log q(z_k|x))`. With a zero decoder bias and
without it the two-stochastic-layer VAE of benchmarks/papers/iwae_table1.py collapses its
posterior to the prior (KL -> 0.02 nats; see benchmarks/results/papers.md). Validation
and test always use the true bound.

`config.posterior` is 'diagonal' (default: q(z|x) a diagonal Gaussian) or 'iaf': the
Gaussian sample goes through `config.iaf_steps` inverse autoregressive flow steps
(Kingma et al. 2016) with MADEs of widths `config.iaf_hidden`; the KL term becomes the
one-sample estimate `log q(z|x) - log p(z)` and the IWAE weights use the flow's log q.

`config.decoder_bias_init` is 'zeros' (default: the decoder starts at logits 0) or
'marginals': the MLP decoder's last bias starts at the training set's per-pixel
marginals (logit of P(x = 1) for a Bernoulli decoder, log level frequencies for a
categorical one; Burda et al. 2016's code), see `vae_lib.marginal_output_bias`.
"""

from __future__ import annotations

import os
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from gm_jax import data as gm_data
from gm_jax import losses
from gm_jax import parallel
from gm_jax.data import binarize as binarize_lib
from gm_jax.families import _binarization as binarization
from gm_jax.models import latent
from gm_jax.models import vae as vae_lib
from gm_jax.train import optim
from gm_jax.train.family import Family

MODELS = ('vae', 'cvae')
OBJECTIVES = ('elbo', 'iwae')
DECODER_BIAS_INITS = ('zeros', 'marginals')

# The family's own settings (`gm_jax.families.setup` fills them in once).
DEFAULTS = {
  'architecture': 'mlp',
  'activation': 'gelu',
  'likelihood': 'categorical',
  'top_latent_dim': 0,
  'top_hidden': (50, 50),
  'decoder_bias_init': 'zeros',
  'beta': 1.0,
  'objective': 'elbo',
  'iwae_train_samples': 5,
  'kl_warmup_steps': 0,
  'posterior': 'diagonal',
  'iaf_steps': 2,
  'iaf_hidden': (64, 64),
  'iwae_samples': 1000,
  'iwae_batch_size': 120,
  **binarization.DEFAULTS,
}
DEFAULTS_DOC = {
  'architecture': "encoder/decoder networks: 'mlp' or 'conv'",
  'activation': 'hidden-layer nonlinearity of the MLP networks',
  'likelihood': "decoder distribution p(x|z): 'categorical', 'bernoulli', ...",
  'top_latent_dim': 'second stochastic layer size (0: one stochastic layer)',
  'top_hidden': 'hidden widths of the second stochastic layer',
  'decoder_bias_init': "'zeros' or 'marginals' (decoder bias from training marginals)",
  'beta': 'weight of the KL term of the ELBO (beta-VAE)',
  'objective': "'elbo' or 'iwae' (the K-sample bound, K = iwae_train_samples)",
  'iwae_train_samples': 'K of the IWAE training objective',
  'kl_warmup_steps': 'steps of the linear KL warm-up (0: off)',
  'posterior': "q(z|x): 'diagonal' Gaussian or 'iaf' (Gaussian sample through IAF steps)",
  'iaf_steps': "posterior='iaf': inverse autoregressive flow steps",
  'iaf_hidden': "posterior='iaf': hidden widths of each step's MADE",
  'iwae_samples': 'importance samples per test image of the IWAE-K evaluation',
  'iwae_batch_size': 'test images per batch of the IWAE evaluation',
  **binarization.DEFAULTS_DOC,
}


def build_model(config, info) -> vae_lib.VAE:
  """The `VAE` (or `ConditionalVAE` for `config.model == 'cvae'`) for dataset `info`."""
  likelihood = latent.checked_likelihood(config, info, 'VAE')
  kwargs = dict(
    image_shape=tuple(info.shape),
    num_levels=info.num_levels,
    latent_dim=int(config.latent_dim),
    hidden=tuple(config.hidden),
    architecture=config.architecture,
    likelihood=likelihood,
    dropout_rate=float(config.dropout_rate),
    activation=config.activation,
    top_latent_dim=int(config.top_latent_dim),
    top_hidden=tuple(config.top_hidden),
    posterior=config.posterior,
    iaf_steps=int(config.iaf_steps),
    iaf_hidden=tuple(config.iaf_hidden),
  )
  if config.model == 'cvae':
    if not info.num_classes:
      raise ValueError(f'config.model=cvae needs a labelled dataset; {info.name!r} has none')
    return vae_lib.ConditionalVAE(num_classes=info.num_classes, **kwargs)
  return vae_lib.VAE(**kwargs)


def check_config(config, info) -> None:
  """Checks the VAE's settings before any data is read; errors name the field."""
  del info  # build_model checks the dataset
  decoder_bias_init(config)
  if config.objective not in OBJECTIVES:
    raise ValueError(f'config.objective must be one of {OBJECTIVES}, got {config.objective!r}')
  if config.objective == 'iwae' and int(config.iwae_train_samples) < 1:
    raise ValueError(f'config.iwae_train_samples must be >= 1, got {config.iwae_train_samples}')
  if config.posterior not in vae_lib.POSTERIORS:
    raise ValueError(
      f'config.posterior must be one of {vae_lib.POSTERIORS}, got {config.posterior!r}'
    )
  if config.posterior == 'iaf':
    steps = config.iaf_steps
    if not isinstance(steps, int) or isinstance(steps, bool) or steps < 1:
      raise ValueError(
        f"config.iaf_steps must be an integer >= 1 for posterior='iaf', got {steps!r}"
      )
    hidden = tuple(config.iaf_hidden)
    if not hidden or not all(isinstance(h, int) and h > 0 for h in hidden):
      raise ValueError(f'config.iaf_hidden must be positive widths, got {config.iaf_hidden!r}')
  optim.kl_warmup_steps(config)
  binarization.check_config(config)


def decoder_bias_init(config) -> str:
  """`config.decoder_bias_init`, checked against the model."""
  value = config.decoder_bias_init
  if value not in DECODER_BIAS_INITS:
    raise ValueError(f'config.decoder_bias_init must be one of {DECODER_BIAS_INITS}, got {value!r}')
  if value == 'marginals':
    if config.architecture != 'mlp':
      raise ValueError(
        "config.decoder_bias_init='marginals' needs architecture='mlp' (a "
        f"conv decoder's last bias is per channel), got {config.architecture!r}"
      )
    likelihood = config.likelihood
    if likelihood not in ('bernoulli', 'categorical'):
      raise ValueError(
        "config.decoder_bias_init='marginals' needs likelihood 'bernoulli' "
        f"or 'categorical', got {likelihood!r}"
      )
  return value


def output_bias_from_data(config, splits, *, grey_levels: int):
  """The decoder bias `config.decoder_bias_init` asks for (None for 'zeros').

  Args:
    splits: the splits the family trains on (after `binarization.binarize_splits`).
    grey_levels: levels of the images before binarisation (dynamic binarisation: the
      training marginal is the mean of `intensity / (grey_levels - 1)`).
  """
  if decoder_bias_init(config) == 'zeros':
    return None
  train = splits.train
  probabilities = None
  if 'intensity' in train:  # dynamic binarisation: expected frequency over the draws
    probabilities = binarize_lib.intensity(np.asarray(train['intensity']), grey_levels)
  likelihood = config.likelihood
  marginals = vae_lib.pixel_marginals(
    train['image'],
    num_levels=splits.info.num_levels,
    likelihood=likelihood,
    probabilities=probabilities,
  )
  return vae_lib.marginal_output_bias(marginals, likelihood=likelihood)


def make_family(config, info, *, output_bias=None, grey_levels=None) -> Family:
  """Pure functions of the VAE for the generic trainer.

  Args:
    output_bias: float `[H * W * C * P]`, the decoder's last bias at initialisation
      (`output_bias_from_data`); needed when `config.decoder_bias_init='marginals'`.
    grey_levels: levels of the images before `config.binarize` (`prepare` gives both).
  """
  model = build_model(config, info)
  if decoder_bias_init(config) == 'marginals' and output_bias is None:
    raise ValueError(
      "config.decoder_bias_init='marginals' needs the training marginals: "
      'pass output_bias=output_bias_from_data(config, splits, ...) '
      '(the prepare hook does)'
    )
  conditional = config.model == 'cvae'
  num_dims = info.num_dims
  beta = float(config.beta)
  objective = config.objective
  if objective not in OBJECTIVES:
    raise ValueError(f'config.objective must be one of {OBJECTIVES}, got {objective!r}')
  num_iwae = int(config.iwae_train_samples)
  if objective == 'iwae' and num_iwae < 1:
    raise ValueError(f'config.iwae_train_samples must be >= 1, got {num_iwae}')
  warmup = optim.kl_warmup_steps(config)

  def labels_of(batch):
    return jnp.asarray(batch['label']) if conditional else None

  def init(key, batch):
    x = jnp.asarray(batch['image'])
    params = model.init({'params': key, 'dropout': key}, x, labels_of(batch))
    if output_bias is not None:
      params = vae_lib.with_output_bias(model, params, output_bias)
    return params

  def loss(params, batch, key, *, train, step=None):
    x = jnp.asarray(batch['image'])
    # The KL weight of this step: < 1 only while training inside the warm-up.
    kl_weight = optim.kl_warmup_weight(step if train else None, warmup)
    if objective == 'iwae':
      log_px, log_pz, log_qz = vae_lib.iwae_log_weights(
        model, params, x, labels_of(batch), key, num_iwae
      )
      bound = losses.iwae_bound(log_px, log_pz, log_qz)
      # The first draw alone is a single-sample ELBO (with a sampled KL).
      metrics = {
        'iwae_bpd': jnp.mean(losses.bits_per_dim(-bound, num_dims=num_dims)),
        'elbo_bpd': jnp.mean(
          losses.bits_per_dim(-(log_px[0] + log_pz[0] - log_qz[0]), num_dims=num_dims)
        ),
        'recon_nats': -jnp.mean(log_px[0]),
      }
      if warmup and train:
        metrics['kl_weight'] = kl_weight
        bound = losses.iwae_bound(log_px, kl_weight * log_pz, kl_weight * log_qz)
      return -jnp.mean(bound), metrics
    terms = vae_lib.elbo_terms(
      model, params, x, labels_of(batch), key, train=train, beta=beta * kl_weight
    )
    nll = -terms['elbo']
    metrics = {
      'elbo_bpd': jnp.mean(
        losses.bits_per_dim(-(terms['log_px_given_z'] - terms['kl']), num_dims=num_dims)
      ),
      'recon_nats': -jnp.mean(terms['log_px_given_z']),
      'kl_nats': jnp.mean(terms['kl']),
    }
    if warmup and train:
      metrics['kl_weight'] = kl_weight
    return jnp.mean(nll), metrics

  def evaluate(params, splits, key, cfg):
    return evaluate_likelihood(
      model,
      params,
      splits.test,
      key,
      conditional=conditional,
      num_samples=int(cfg.iwae_samples),
      batch_size=int(cfg.iwae_batch_size),
      mesh=parallel.eval_mesh(cfg.parallel),
    )

  def sample(params, key, num):
    labels = jnp.arange(num) % info.num_classes if conditional else None
    return np.asarray(_sample_jit(model)(params, key, num, labels))

  def pictures(params, splits, key, workdir):
    return vae_pictures(model, params, splits, key, workdir, conditional=conditional)

  # Selection on the validation bound that is trained, in bits/dim.
  messages = {}
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
    validation_metric='iwae_bpd' if objective == 'iwae' else 'elbo_bpd',
    loss_takes_step=True,
    messages=messages,
    resume_may_change=frozenset({'iwae_samples', 'iwae_batch_size'}),
  )
  return binarization.wrap_family(config, family, grey_levels=grey_levels)


_SAMPLE_CACHE: dict = {}


def _sample_jit(model):
  return latent.jit_cache(
    _SAMPLE_CACHE,
    model,
    lambda: jax.jit(lambda p, k, n, l: vae_lib.sample_prior(model, p, k, n, l), static_argnums=2),
  )


def evaluate_likelihood(
  model,
  params,
  test: dict,
  key,
  *,
  conditional: bool,
  num_samples: int,
  batch_size: int = 120,
  mesh=None,
) -> dict:
  """Test ELBO and IWAE-K in nats and bits/dim (mean over the test split); `mesh`
  (`parallel.eval_mesh`): each test batch is split over its devices."""
  input_keys = ('image', 'label') if conditional else ('image',)

  def split(inputs):
    return inputs if conditional else (inputs[0], None)

  def elbo_terms(p, inputs, k):
    return vae_lib.elbo_terms(model, p, *split(inputs), k)

  def iwae(p, inputs, k):
    return vae_lib.iwae_estimate(model, p, *split(inputs), k, num_samples=num_samples)

  results = latent.evaluate_bounds(
    elbo_terms,
    iwae,
    params,
    test,
    key,
    input_keys=input_keys,
    num_samples=num_samples,
    num_dims=int(np.prod(model.image_shape)),
    batch_size=batch_size,
    mesh=mesh,
  )
  # A CVAE models p(x | y): its numbers are conditional and not comparable to p(x).
  results['likelihood'] = 'p(x|y)' if conditional else 'p(x)'
  return results


def latent_means(model, params, arrays: dict, *, conditional: bool, batch_size: int = 512):
  """Encoder means `[N, latent_dim]` for every example of `arrays`."""
  enc = jax.jit(lambda p, x, l: model.apply(p, x, l, method=vae_lib.VAE.encode)[0])
  out = []
  for batch in gm_data.iterate_batches(arrays, batch_size):
    labels = jnp.asarray(batch['label']) if conditional else None
    out.append(np.asarray(enc(params, jnp.asarray(batch['image']), labels)))
  return np.concatenate(out)


def vae_pictures(model, params, splits, key, workdir, *, conditional: bool) -> dict:
  """Reconstructions, latent scatter, interpolations, class grid; linear-probe accuracy."""
  from sklearn.decomposition import PCA

  from gm_jax.evaluate import images
  from gm_jax.evaluate import plots
  from gm_jax.evaluate import probe

  test, levels = splits.test, model.num_levels
  dec_mean = jax.jit(
    lambda p, z, l: vae_lib.decoder_mean(
      model.apply(p, z, l, method=vae_lib.VAE.decode),
      likelihood=model.likelihood,
      num_levels=levels,
    )
  )
  # Unlabelled data (binarized_mnist): an uncoloured scatter and no linear probe.
  labelled = 'label' in test
  x = np.asarray(test['image'][:32])
  lab = np.asarray(test['label'][:32]) if conditional else None
  mu = latent_means(
    model, params, {'image': x, **({'label': lab} if conditional else {})}, conditional=conditional
  )
  recon = np.asarray(dec_mean(params, mu, lab))
  pairs = np.stack([x[:16], recon[:16]], 1).reshape((-1,) + x.shape[1:])
  images.save_image_grid(
    pairs, os.path.join(workdir, 'reconstructions.png'), num_levels=levels, nrow=8
  )

  # Latent interpolations between pairs of test images (rows), decoded means.
  steps = np.linspace(0, 1, 10)[None, :, None]
  starts, ends = mu[0:8:2][:, None], mu[1:8:2][:, None]
  path = (starts * (1 - steps) + ends * steps).reshape(-1, mu.shape[1])
  lab_path = None if lab is None else np.repeat(lab[0:8:2], 10)
  images.save_image_grid(
    np.asarray(dec_mean(params, path, lab_path)),
    os.path.join(workdir, 'interpolations.png'),
    num_levels=levels,
    nrow=10,
  )

  train_mu = latent_means(model, params, splits.train, conditional=conditional)
  test_mu = latent_means(model, params, test, conditional=conditional)
  pts = (
    test_mu if test_mu.shape[1] == 2 else PCA(2, random_state=0).fit(train_mu).transform(test_mu)
  )
  plots.plot_latent_scatter(
    pts,
    np.asarray(test['label']) if labelled else None,
    os.path.join(workdir, 'latent_scatter.png'),
    title='test latent means' + ('' if test_mu.shape[1] == 2 else ' (PCA)'),
  )
  results: dict[str, Any] = {'latent_dims': int(train_mu.shape[1])}
  if labelled:
    results['linear_probe_accuracy'] = probe.linear_probe_accuracy(
      train_mu, splits.train['label'], test_mu, test['label']
    )
  if conditional:
    num_classes = model.num_classes
    z0 = np.asarray(jax.random.normal(key, (8, model.latent_dim)))
    z = np.repeat(z0[None], num_classes, 0).reshape(-1, model.latent_dim)
    labels = np.repeat(np.arange(num_classes), 8)
    images.save_image_grid(
      np.asarray(dec_mean(params, z, labels)),
      os.path.join(workdir, 'class_samples.png'),
      num_levels=levels,
      nrow=8,
    )
  return results


def prepare(config, splits):
  """The registry's hook: `(config, splits, make_family kwargs)`.

  Binarises `splits` as `config.binarize` asks (the test split once, with a fixed seed)
  and computes the decoder's initial bias from the (binarised) training marginals.
  """
  config, splits, kwargs = binarization.prepare(config, splits)
  bias = output_bias_from_data(config, splits, grey_levels=kwargs['grey_levels'])
  return config, splits, dict(kwargs, output_bias=bias)
