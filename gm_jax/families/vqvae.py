"""The VQ-VAE family (van den Oord et al. 2017): a first stage and a prior over its codes.

`vqvae` trains the first stage (`gm_jax.models.vqvae.VQVAE`): loss
`-log p(x | z_q) + commitment_beta ||z_e - sg(e)||^2` per example, the codebook moved by
its EMA (appendix A.1, decay `codebook_decay`) after every optimiser step, and codes
whose EMA count falls below `dead_code_threshold` restarted on encoder outputs of the
batch. The EMA state is the update's own state (`TrainUpdate`), checkpointed with the
rest. Codebook usage (perplexity, codes used) is logged; evaluation reports the bound
with a uniform prior over the codes and writes reconstructions.png.

`vqvae_prior` trains a gated PixelCNN (`gm_jax.models.autoregressive.PixelCNN`) over the
first stage's code grid (an image of `num_codes` levels), the first stage read from
`config.first_stage_workdir` (its `config.json` and selected parameters) and frozen.
Evaluation reports the true bound (deterministic one-hot posterior):

    -log p(x) <= -log p(x | z_q) - log p_prior(z_q)

as `test_bpd` (bits/dim of the discrete data), and `gm_jax.evaluate.sample_metrics` of
samples decoded from the prior (`fid`, KID, precision/recall; `config.fid_network`
'classifier' (the digits classifier's features, with the real-data floor) or 'inception',
as every sampling family).
"""

from __future__ import annotations

import math
import os

import jax
import jax.numpy as jnp
import numpy as np
import optax

from gm_jax import losses
from gm_jax import parallel
from gm_jax import sampling
from gm_jax.evaluate import sample_metrics
from gm_jax.models import autoregressive as ar_lib
from gm_jax.models import vqvae as vq_lib
from gm_jax.nn import vq
from gm_jax.train import defaults
from gm_jax.train import optim
from gm_jax.train import workdir as workdir_lib
from gm_jax.train.family import Family
from gm_jax.train.family import TrainUpdate

MODELS = ('vqvae', 'vqvae_prior')
DECODE_PIXELS = ('sample', 'mode')

DEFAULTS = {
  'num_codes': 64,
  'embed_dim': 16,
  'hidden': 64,
  'num_downsamples': 1,
  'num_res_blocks': 1,
  'commitment_beta': 0.25,
  'codebook_decay': 0.99,
  'dead_code_threshold': 1.0,
  'first_stage_workdir': '',
  'channels': 64,
  'num_layers': 6,
  'kernel_size': 3,
  'dropout_rate': 0.0,
  'decode_pixels': 'sample',
  **sample_metrics.DEFAULTS,
}
DEFAULTS_DOC = {
  'num_codes': 'vqvae: codebook size K (>= 2)',
  'embed_dim': 'vqvae: size D of each code vector',
  'hidden': 'vqvae: conv channels of the encoder and decoder',
  'num_downsamples': 'vqvae: stride-2 stages; the code grid is H / 2**s x W / 2**s',
  'num_res_blocks': 'vqvae: residual blocks in the encoder and the decoder',
  'commitment_beta': 'vqvae: weight beta of the commitment loss',
  'codebook_decay': 'vqvae: decay of the EMA codebook update, in [0, 1)',
  'dead_code_threshold': 'vqvae: restart codes whose EMA count (vectors a step) is below this',
  'first_stage_workdir': 'vqvae_prior: workdir of the trained vqvae whose codes it models',
  'channels': 'vqvae_prior: width of the PixelCNN stacks',
  'num_layers': 'vqvae_prior: gated PixelCNN layers',
  'kernel_size': 'vqvae_prior: PixelCNN kernel size (odd, >= 3)',
  'dropout_rate': 'vqvae_prior: dropout in the PixelCNN',
  'decode_pixels': "vqvae_prior: samples' pixels 'sample'd from the decoder or its 'mode'",
  **{k: f'vqvae_prior: {v}' for k, v in sample_metrics.DEFAULTS_DOC.items()},
}


def _positive_int(config, field, minimum=1):
  value = config[field]
  if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
    raise ValueError(f'config.{field} must be an integer >= {minimum}; got {value!r}')


def check_config(config, info) -> None:
  """Checks the settings (and a prior's first stage) before any data is read."""
  if config.model not in MODELS:
    raise ValueError(f'config.model must be one of {MODELS}; got {config.model!r}')
  if info.kind != 'image':
    raise ValueError(f'the VQ-VAE needs an image dataset; {info.name!r} is {info.kind}')
  if config.model == 'vqvae':
    vq.check_codebook_size(config.num_codes, 'config.num_codes')
    for field in ('embed_dim', 'hidden', 'num_res_blocks'):
      _positive_int(config, field)
    _positive_int(config, 'num_downsamples', 0)
    multiple = 2**config.num_downsamples
    if info.shape[0] % multiple or info.shape[1] % multiple:
      raise ValueError(
        f'config.num_downsamples={config.num_downsamples} needs image sides divisible by '
        f'{multiple}; {info.name!r} is {info.shape}'
      )
    if not 0.0 <= config.codebook_decay < 1.0:
      raise ValueError(f'config.codebook_decay must be in [0, 1); got {config.codebook_decay!r}')
    if not config.commitment_beta >= 0.0:
      raise ValueError(f'config.commitment_beta must be >= 0; got {config.commitment_beta!r}')
    if not config.dead_code_threshold >= 0.0:
      raise ValueError(
        f'config.dead_code_threshold must be >= 0; got {config.dead_code_threshold!r}'
      )
    return
  first_stage_config(config)
  for field in ('channels', 'num_layers'):
    _positive_int(config, field)
  if (
    not isinstance(config.kernel_size, int) or config.kernel_size < 3 or not config.kernel_size % 2
  ):
    raise ValueError(f'config.kernel_size must be odd and >= 3; got {config.kernel_size!r}')
  if not 0.0 <= config.dropout_rate < 1.0:
    raise ValueError(f'config.dropout_rate must be in [0, 1); got {config.dropout_rate!r}')
  if config.decode_pixels not in DECODE_PIXELS:
    raise ValueError(
      f'config.decode_pixels must be one of {DECODE_PIXELS}; got {config.decode_pixels!r}'
    )
  sample_metrics.check_config(config)


def first_stage_config(config) -> dict:
  """The saved config (`config.json`) of `config.first_stage_workdir`, checked.

  Raises:
    ValueError: naming `config.first_stage_workdir` when it is empty, holds no
      `config.json`, or was trained for another model or dataset.
  """
  path = config.first_stage_workdir
  field = 'config.first_stage_workdir'
  if not path:
    raise ValueError(f'{field} must name the workdir of a trained vqvae; got {path!r}')
  saved = workdir_lib.read_json(os.path.join(path, 'config.json'))
  if not isinstance(saved, dict):
    raise ValueError(f'{field}={path!r} holds no config.json: no vqvae was trained there')
  if saved.get('model') != 'vqvae':
    raise ValueError(f'{field}={path!r} was trained for model {saved.get("model")!r}, not a vqvae')
  if saved.get('dataset') != config.dataset:
    raise ValueError(
      f'{field}={path!r} was trained on {saved.get("dataset")!r}, not config.dataset='
      f'{config.dataset!r}'
    )
  return saved


def build_first_stage(fields, info) -> vq_lib.VQVAE:
  """The `VQVAE` of a first-stage config (a config, or its saved `config.json` dict)."""
  return vq_lib.VQVAE(
    num_levels=info.num_levels,
    channels=info.shape[-1],
    num_codes=int(fields['num_codes']),
    embed_dim=int(fields['embed_dim']),
    hidden=int(fields['hidden']),
    num_downsamples=int(fields['num_downsamples']),
    num_res_blocks=int(fields['num_res_blocks']),
  )


def load_first_stage(config, info):
  """`(model, params)` of `config.first_stage_workdir`: its selected parameters."""
  from gm_jax.train import checkpoint

  model = build_first_stage(first_stage_config(config), info)
  target = jax.eval_shape(
    lambda: model.init(jax.random.key(0), jnp.zeros((1,) + tuple(info.shape), jnp.int32))
  )
  try:
    _, params = checkpoint.load_params(config.first_stage_workdir, target)
  except checkpoint.CheckpointError as e:
    raise ValueError(f'config.first_stage_workdir: {e}') from e
  return model, params


def prepare(config, splits):
  """The prior's first stage, loaded once: `make_family(..., first_stage=(model, params))`."""
  if config.model != 'vqvae_prior':
    return config, splits, {}
  return config, splits, {'first_stage': load_first_stage(config, splits.info)}


def make_family(config, info, *, first_stage=None) -> Family:
  """The first stage (`vqvae`) or the prior over its codes (`vqvae_prior`)."""
  check_config(config, info)
  if config.model == 'vqvae':
    return _first_stage_family(config, info)
  if first_stage is None:
    first_stage = load_first_stage(config, info)
  return _prior_family(config, info, *first_stage)


# ---------------------------------------------------------------------------------------
# First stage.


def _first_stage_family(config, info) -> Family:
  model = build_first_stage(config, info)
  num_dims, levels, num_codes = info.num_dims, info.num_levels, int(config.num_codes)
  beta, decay = float(config.commitment_beta), float(config.codebook_decay)
  threshold = float(config.dead_code_threshold)
  tx = optim.make_optimizer(config)
  to_bpd = lambda nats: losses.bits_per_dim(nats, num_dims=num_dims)

  def init(key, batch):
    return model.init(key, jnp.asarray(batch['image']))

  def terms(params, images):
    out = model.apply(params, images)
    loss = vq_lib.vqvae_loss(out, images, beta=beta, ema=True)
    perplexity, used = vq.codebook_usage(out['codes'], num_codes)
    recon = vq_lib.reconstruction_nll(out['logits'], images)
    metrics = {
      'recon_bpd': jnp.mean(to_bpd(recon)),
      'commitment': jnp.mean(out['commitment_loss']),
      'perplexity': perplexity,
      'codes_used': used.astype(jnp.float32),
    }
    return jnp.mean(loss), (metrics, out)

  def loss(params, batch, key, *, train):
    del key, train  # deterministic: no dropout, no noise
    value, (metrics, _) = terms(params, jnp.asarray(batch['image']))
    return value, metrics

  def init_state(params):
    # Own buffers: the trainer donates the state, and `ema_init` shares its argument. A
    # dict, not the NamedTuple: checkpoints store fields by name, restored in key order.
    ema = jax.tree.map(jnp.copy, vq.ema_init(params['params']['codebook']))._asdict()
    return {'opt': tx.init(params), 'ema': ema}

  def update(params, opt_state, batch, key, *, step, axis_name=None):
    del step  # the key is already the step's
    images = jnp.asarray(batch['image'])
    (value, (metrics, out)), grads = jax.value_and_grad(terms, has_aux=True)(params, images)
    z_e, codes = out['z_e'], out['codes']
    if axis_name is not None:
      value, metrics, grads = jax.lax.pmean((value, metrics, grads), axis_name)
      # Every device moves the codebook with the whole batch's statistics.
      z_e = jax.lax.all_gather(z_e, axis_name, tiled=True)
      codes = jax.lax.all_gather(codes, axis_name, tiled=True)
      # Usage of the whole batch (a mean of the shards' perplexities is not the batch's).
      perplexity, used = vq.codebook_usage(codes, num_codes)
      metrics = dict(metrics, perplexity=perplexity, codes_used=used.astype(jnp.float32))
    updates, opt = tx.update(grads, opt_state['opt'], params)
    params = optax.apply_updates(params, updates)
    ema = vq.ema_update(vq.EMAState(**opt_state['ema']), z_e, codes, decay=decay)
    ema, restarted = vq.restart_dead_codes(key, ema, z_e, threshold=threshold)
    inner = dict(params['params'], codebook=ema.codebook)
    params = dict(params, params=inner)
    metrics = dict(
      metrics,
      loss=value,
      grad_norm=optax.global_norm(grads),
      restarted=jnp.sum(restarted).astype(jnp.float32),
    )
    return params, {'opt': opt, 'ema': ema._asdict()}, metrics

  def evaluate(params, splits, key, cfg):
    del key
    return _first_stage_eval(model, params, splits, cfg, num_codes=num_codes)

  def pictures(params, splits, key, workdir):
    del key
    from gm_jax.evaluate import images

    test = np.asarray(splits.test['image'][:32])
    logits = jax.jit(lambda p, x: model.apply(p, x)['logits'])(params, jnp.asarray(test))
    recon = np.asarray(jnp.argmax(logits, -1))
    rows = np.concatenate([test[:16], recon[:16], test[16:32], recon[16:32]])
    images.save_image_grid(
      rows, os.path.join(workdir, 'reconstructions.png'), num_levels=levels, nrow=16
    )
    return {}

  return Family(
    name=config.model,
    init=init,
    loss=loss,
    evaluate=evaluate,
    pictures=pictures,
    validation_metric='recon_bpd',
    train_update=TrainUpdate(init=init_state, update=update),
  )


def _first_stage_eval(model, params, splits, cfg, *, num_codes: int) -> dict:
  """Test bound with a uniform prior over the codes, reconstruction, codebook usage."""
  num_dims = splits.info.num_dims

  def per_example(p, batch, key):
    del key
    out = model.apply(p, batch['image'])
    recon = vq_lib.reconstruction_nll(out['logits'], batch['image'])
    return {'recon': recon, 'codes': out['codes']}

  res = parallel.map_examples(
    per_example,
    params,
    {'image': splits.test['image']},
    jax.random.key(0),
    batch_size=int(defaults.get(cfg, 'eval_batch_size')),
    mesh=parallel.eval_mesh(cfg.parallel),
  )
  recon = np.asarray(res['recon'], np.float64)
  codes = np.asarray(res['codes'])
  prior_nats = math.prod(codes.shape[1:]) * math.log(num_codes)
  perplexity, used = vq.codebook_usage(jnp.asarray(codes), num_codes)
  bound = recon + prior_nats
  to_bpd = lambda nats: float(nats) / (num_dims * math.log(2.0))
  return {
    'bound': 'vq_uniform_prior',
    'test_nll_nats': float(bound.mean()),
    'test_bpd': to_bpd(bound.mean()),
    'test_recon_bpd': to_bpd(recon.mean()),
    'test_prior_bpd': to_bpd(prior_nats),
    'test_perplexity': float(perplexity),
    'test_codes_used': int(used),
    'num_codes': num_codes,
  }


# ---------------------------------------------------------------------------------------
# Second stage: the prior over the code grid.


def _prior_family(config, info, fs_model, fs_params) -> Family:
  num_codes = fs_model.num_codes
  grid = (
    info.shape[0] // 2**fs_model.num_downsamples,
    info.shape[1] // 2**fs_model.num_downsamples,
  )
  prior = ar_lib.PixelCNN(
    num_levels=num_codes,
    num_channels=1,
    features=int(config.channels),
    num_layers=int(config.num_layers),
    kernel_size=int(config.kernel_size),
    dropout_rate=float(config.dropout_rate),
  )
  num_dims, levels = info.num_dims, info.num_levels
  to_bpd = lambda nats: losses.bits_per_dim(nats, num_dims=num_dims)

  def codes_of(images):
    """Frozen first stage: integer images `[B, H, W, C]` -> codes `[B, h, w, 1]`."""
    z_e = fs_model.apply(fs_params, images, method=fs_model.encode)
    return vq.nearest_codes(z_e, fs_params['params']['codebook'])[..., None]

  def init(key, batch):
    return prior.init(key, codes_of(jnp.asarray(batch['image'])))

  def prior_nll(params, codes, key, train):
    logits = prior.apply(params, codes, train=train, rngs={'dropout': key})
    return -losses.categorical_log_prob(logits, codes)

  def loss(params, batch, key, *, train):
    images = jnp.asarray(batch['image'])
    codes = codes_of(images)
    nll = prior_nll(params, codes, key, train)
    out = fs_model.apply(fs_params, images)
    recon = vq_lib.reconstruction_nll(out['logits'], images)
    metrics = {'prior_nats': jnp.mean(nll), 'bound_bpd': jnp.mean(to_bpd(recon + nll))}
    return jnp.mean(nll), metrics

  def decode(codes, key):
    """Codes `[B, h, w, 1]` -> images from the first stage's decoder: pixels drawn from its
    categorical (`decode_pixels='sample'`) or its most likely level ('mode')."""
    logits = fs_model.apply(fs_params, codes[..., 0], method=fs_model.decode_codes)
    if config.decode_pixels == 'mode':
      return jnp.argmax(logits, -1).astype(jnp.int32)
    return jax.random.categorical(key, logits).astype(jnp.int32)

  decode_jit = jax.jit(decode)

  def sample(params, key, num):
    code_key, pixel_key = jax.random.split(key)
    codes = sampling.sample(prior, params, code_key, (num,) + grid + (1,))
    return np.asarray(decode_jit(codes, pixel_key)).astype(np.uint8)

  def evaluate(params, splits, key, cfg, *, workdir=None):
    return _prior_eval(
      fs_model,
      fs_params,
      codes_of,
      prior,
      params,
      splits,
      key,
      cfg,
      sample=sample,
      cache_dir=sample_metrics.cache_dir(workdir),
    )

  def pictures(params, splits, key, workdir):
    del splits
    from gm_jax.evaluate import images

    codes = sampling.sample(prior, params, key, (8,) + grid + (1,))
    logits = fs_model.apply(fs_params, codes[..., 0], method=fs_model.decode_codes)
    mode = np.asarray(jnp.argmax(logits, -1))
    draws = [
      np.asarray(jax.random.categorical(jax.random.fold_in(key, i), logits)) for i in range(3)
    ]
    images.save_image_grid(
      np.concatenate([mode] + draws),
      os.path.join(workdir, 'prior_samples.png'),
      num_levels=levels,
      nrow=8,
    )
    return {}

  return Family(
    name=config.model,
    init=init,
    loss=loss,
    evaluate=evaluate,
    sample=sample,
    pictures=pictures,
    validation_metric='bound_bpd',
    resume_may_change=frozenset(sample_metrics.DEFAULTS) | {'decode_pixels'},
    evaluate_takes_workdir=True,
  )


def _prior_eval(
  fs_model, fs_params, codes_of, prior, params, splits, key, cfg, *, sample, cache_dir=None
):
  """The VQ bound on the test split (`vq_lib.vq_bound`) and `sample_metrics` of decoded
  prior samples (real Inception statistics cached in `cache_dir`, None: not cached)."""
  info = splits.info

  def per_example(p, batch, key):
    del key
    images = batch['image']
    codes = codes_of(images)
    logits = prior.apply(p, codes)
    out = fs_model.apply(fs_params, images)
    terms = vq_lib.vq_bound(out['logits'], images, losses.categorical_log_prob(logits, codes))
    return dict(terms, codes=codes[..., 0])

  res = parallel.map_examples(
    per_example,
    params,
    {'image': splits.test['image']},
    key,
    batch_size=int(defaults.get(cfg, 'eval_batch_size')),
    mesh=parallel.eval_mesh(cfg.parallel),
  )
  bound = np.asarray(res['bound'], np.float64)
  to_bpd = lambda nats: float(nats) / (info.num_dims * math.log(2.0))
  perplexity, used = vq.codebook_usage(jnp.asarray(res['codes']), fs_model.num_codes)
  results = {
    'bound': 'vq',
    'first_stage_workdir': os.path.abspath(cfg.first_stage_workdir),
    'test_nll_nats': float(bound.mean()),
    'test_bpd': to_bpd(bound.mean()),
    'test_bpd_stderr': to_bpd(bound.std(ddof=1) / math.sqrt(len(bound))) if len(bound) > 1 else 0.0,
    'test_recon_bpd': to_bpd(np.mean(res['recon_nll'])),
    'test_prior_bpd': to_bpd(np.mean(res['prior_nll'])),
    'test_perplexity': float(perplexity),
    'test_codes_used': int(used),
    'num_codes': fs_model.num_codes,
    'decode_pixels': cfg.decode_pixels,
  }
  if info.num_classes or cfg.fid_network == 'inception':
    num = sample_metrics.num_samples(cfg, splits)
    draw_key = jax.random.fold_in(key, 1)
    samples = np.concatenate(
      [
        sample(params, jax.random.fold_in(draw_key, i), min(500, num - s))
        for i, s in enumerate(range(0, num, 500))
      ]
    )
    results.update(sample_metrics.sample_metrics(cfg, samples, splits, cache_dir=cache_dir))
  return results
