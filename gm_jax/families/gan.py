"""The DCGAN family: alternating D and G updates in one jitted step, FID evaluation.

One train step (Goodfellow et al. 2014, Algorithm 1 with k = 1): draw `z`, update the
discriminator on real and `G(z)` with its loss, then update the generator through the
*updated* discriminator with its loss, each with its own Adam (Radford et al. 2016:
lr 2e-4, beta1 0.5). `config.gan_loss` picks the pair of `gm_jax.losses` functions
(`gm_jax.models.gan.GAN_LOSSES`). The step is a `TrainUpdate`, so `gm_jax.parallel`
wraps it unchanged: `z` is drawn per global example, gradients, metrics and
batch-norm statistics are averaged over the `'data'` axis under `pmap`.

Selection: a GAN has no likelihood and its losses say little about sample quality
(they oscillate by design), so the family has no validation metric and the trainer
evaluates the last parameters, as the DCGAN and CycleGAN papers do. FID on the
validation split at every evaluation would select on a noisy 130-image estimate and
cost a classifier pass per evaluation; the stability benchmark instead reports the
spread of final FIDs over seeds.
"""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import numpy as np
import optax

from gm_jax import parallel
from gm_jax.models import gan as gan_lib
from gm_jax.nn.layers import images_to_unit
from gm_jax.train import optim
from gm_jax.train.family import Family
from gm_jax.train.family import TrainUpdate

MODELS = ('dcgan',)
# Programs that run once (initialisation): compile fast rather than run fast. XLA:CPU's
# optimising backend spends a minute on the PRNG code of a convnet's init.
FAST_COMPILE = {'xla_backend_optimization_level': 0, 'xla_llvm_disable_expensive_passes': True}


# The family's own settings (`gm_jax.families.setup` fills them in once); the networks'
# settings (`gan_loss`, `latent_dim`, `generator_features`, ...) have no default: every
# DCGAN config states them.
DEFAULTS = {'fid_num_samples': 0, 'fid_network': 'classifier', 'inception_weights': ''}
DEFAULTS_DOC = {
  'fid_num_samples': 'samples of the FID evaluation (0: as many as training images)',
  'fid_network': "feature network of the FID: 'classifier' | 'inception'",
  'inception_weights': "path of pytorch-fid's weights file (fid_network='inception')",
}


def jit_once(fn, **kwargs):
  """`jax.jit` for a function called once, with `FAST_COMPILE`."""
  return jax.jit(fn, compiler_options=FAST_COMPILE, **kwargs)


def per_example_normal(key, num: int, dim: int, offset=0) -> jnp.ndarray:
  """`[num, dim]` standard normals; row `i` depends only on `key` and `offset + i`.

  So a device holding examples `[offset, offset + num)` of the global batch draws
  the same noise for them as one device holding the whole batch.
  """
  keys = parallel.per_example_keys(key, num, offset)
  return jax.vmap(lambda k: jax.random.normal(k, (dim,)))(keys)


def check_config(config, info) -> None:
  """Validates the DCGAN fields of `config` against dataset `info` (errors name the field)."""
  gan_lib.gan_losses(config.gan_loss)
  if info.kind != 'image':
    raise ValueError(f'config.dataset={info.name!r} is {info.kind} data; a GAN needs images')
  if config.generator_norm not in gan_lib.GENERATOR_NORMS:
    raise ValueError(
      f'config.generator_norm must be one of {gan_lib.GENERATOR_NORMS}, '
      f'got {config.generator_norm!r}'
    )
  if config.discriminator_norm not in gan_lib.DISCRIMINATOR_NORMS:
    raise ValueError(
      f'config.discriminator_norm must be one of '
      f'{gan_lib.DISCRIMINATOR_NORMS}, got {config.discriminator_norm!r}'
    )
  factor = 2 ** len(config.generator_features)
  h, w = info.shape[:2]
  if h % factor or w % factor:
    raise ValueError(
      f'config.generator_features has {len(config.generator_features)} '
      f'entries, so images must be divisible by {factor}; {info.name!r} '
      f'is {h}x{w}'
    )
  if config.conditional and not info.num_classes:
    raise ValueError(f'config.conditional=True needs labels; {info.name!r} has none')
  if int(config.latent_dim) <= 0:
    raise ValueError(f'config.latent_dim must be positive, got {config.latent_dim!r}')
  from gm_jax.evaluate import sample_metrics

  sample_metrics.check_config(config)


def build_models(config, info) -> tuple[gan_lib.Generator, gan_lib.Discriminator]:
  check_config(config, info)
  num_classes = info.num_classes if config.conditional else 0
  g = gan_lib.Generator(
    image_shape=tuple(info.shape),
    features=tuple(config.generator_features),
    num_classes=num_classes,
    norm=config.generator_norm,
  )
  d = gan_lib.Discriminator(
    features=tuple(config.discriminator_features),
    num_classes=num_classes,
    norm=config.discriminator_norm,
  )
  return g, d


def _split_vars(variables):
  """Flax variables -> (trainable params, the other collections)."""
  return variables['params'], {k: v for k, v in variables.items() if k != 'params'}


def make_family(config, info) -> Family:
  """Pure functions of the DCGAN for the generic trainer."""
  g, d = build_models(config, info)
  d_loss_fn, g_loss_fn = gan_lib.gan_losses(config.gan_loss)
  latent = int(config.latent_dim)
  conditional = bool(config.conditional)
  num_levels = info.num_levels
  # DCGAN's Adam (Radford et al. 2016: beta1 = config.adam_b1 = 0.5) for each player.
  tx_g, tx_d = optim.make_optimizer(config), optim.make_optimizer(config)
  mutable = ['batch_stats']

  def labels_of(batch):
    return jnp.asarray(batch['label']) if conditional else None

  @jit_once
  def init_jit(key, images, labels):
    x = images_to_unit(images, num_levels)
    g_key, d_key = jax.random.split(key)
    z = jnp.zeros((x.shape[0], latent))
    return {
      'generator': g.init(g_key, z, labels, train=False),
      'discriminator': d.init(d_key, x, labels, train=False),
    }

  def init(key, batch):
    return init_jit(key, jnp.asarray(batch['image']), labels_of(batch))

  def init_opt_state(params):
    return {
      'generator': tx_g.init(params['generator']['params']),
      'discriminator': tx_d.init(params['discriminator']['params']),
    }

  def update(params, opt_state, batch, key, *, step, axis_name=None):
    del step  # the key already depends on it
    x = images_to_unit(jnp.asarray(batch['image']), num_levels)
    labels = labels_of(batch)
    n = x.shape[0]
    z = per_example_normal(key, n, latent, parallel.shard_offset(n, axis_name))
    g_params, g_rest = _split_vars(params['generator'])
    d_params, d_rest = _split_vars(params['discriminator'])

    def generate(gp):
      return g.apply(
        {'params': gp, **g_rest}, z, labels, train=True, axis_name=axis_name, mutable=mutable
      )

    def discriminate(dp, rest, images):
      return d.apply(
        {'params': dp, **rest}, images, labels, train=True, axis_name=axis_name, mutable=mutable
      )

    def pmean(tree):
      return tree if axis_name is None else jax.lax.pmean(tree, axis_name)

    # The generator runs forward once: its output feeds the discriminator step (as a
    # constant) and, through the saved VJP, the generator's own gradient.
    fake, g_vjp, g_new_rest = jax.vjp(generate, g_params, has_aux=True)

    # 1. Discriminator step on real and (fixed) fake images.
    def d_objective(dp):
      real_out, rest = discriminate(dp, d_rest, x)
      fake_out, rest = discriminate(dp, rest, jax.lax.stop_gradient(fake))
      return jnp.mean(d_loss_fn(real_out, fake_out)), (rest, real_out, fake_out)

    (d_loss, (d_new_rest, real_out, fake_out)), d_grads = jax.value_and_grad(
      d_objective, has_aux=True
    )(d_params)
    d_loss, d_grads = pmean((d_loss, d_grads))
    d_updates, d_opt = tx_d.update(d_grads, opt_state['discriminator'], d_params)
    d_params = optax.apply_updates(d_params, d_updates)

    # 2. Generator step through the updated discriminator (its statistics are not
    # updated by this pass: it judges, it does not learn here).
    def g_objective(images):
      out, _ = discriminate(d_params, d_new_rest, images)
      return jnp.mean(g_loss_fn(out))

    g_loss, d_fake = jax.value_and_grad(g_objective)(fake)
    (g_grads,) = g_vjp(d_fake)
    g_loss, g_grads = pmean((g_loss, g_grads))
    g_updates, g_opt = tx_g.update(g_grads, opt_state['generator'], g_params)
    g_params = optax.apply_updates(g_params, g_updates)

    score = (lambda o: jnp.mean(jax.nn.sigmoid(o))) if config.gan_loss != 'lsgan' else jnp.mean
    metrics = pmean({'d_real': score(real_out), 'd_fake': score(fake_out)})
    metrics.update(
      loss=d_loss + g_loss,
      d_loss=d_loss,
      g_loss=g_loss,
      d_grad_norm=optax.global_norm(d_grads),
      g_grad_norm=optax.global_norm(g_grads),
    )
    new_params = {
      'generator': {'params': g_params, **g_new_rest},
      'discriminator': {'params': d_params, **d_new_rest},
    }
    return new_params, {'generator': g_opt, 'discriminator': d_opt}, metrics

  def loss(params, batch, key, *, train=False):
    """Both players' objectives on one batch, networks in inference mode (no update)."""
    del train  # evaluation only: batch statistics are the running averages
    x = images_to_unit(jnp.asarray(batch['image']), num_levels)
    labels = labels_of(batch)
    z = jax.random.normal(key, (x.shape[0], latent))
    fake = g.apply(params['generator'], z, labels, train=False)
    real_out = d.apply(params['discriminator'], x, labels, train=False)
    fake_out = d.apply(params['discriminator'], fake, labels, train=False)
    d_loss = jnp.mean(d_loss_fn(real_out, fake_out))
    g_loss = jnp.mean(g_loss_fn(fake_out))
    return d_loss + g_loss, {'d_loss': d_loss, 'g_loss': g_loss}

  sample_fn = jax.jit(
    lambda p, k, labels, num: gan_lib.levels_from_unit(
      jnp.asarray(
        g.apply(p['generator'], jax.random.normal(k, (num, latent)), labels, train=False)
      ),
      num_levels,
    ),
    static_argnums=3,
  )

  def sample(params, key, num):
    labels = jnp.arange(num) % info.num_classes if conditional else None
    return np.asarray(sample_fn(params, key, labels, num))

  def evaluate(params, splits, key, cfg, *, workdir=None):
    from gm_jax.evaluate import sample_metrics

    num = sample_metrics.num_samples(cfg, splits)
    samples = np.concatenate(
      [
        sample(params, jax.random.fold_in(key, i), min(500, num - s))
        for i, s in enumerate(range(0, num, 500))
      ]
    )
    results = {'bound': 'none', 'gan_loss': cfg.gan_loss}
    if info.num_classes or cfg.fid_network == 'inception':
      cache_dir = sample_metrics.cache_dir(workdir)
      results.update(sample_metrics.sample_metrics(cfg, samples, splits, cache_dir=cache_dir))
    return results

  def pictures(params, splits, key, workdir):
    del splits
    if not conditional:
      return {}
    from gm_jax.evaluate import images

    k = info.num_classes
    z = np.repeat(np.asarray(jax.random.normal(key, (1, 8, latent))), k, 0).reshape(-1, latent)
    labels = jnp.repeat(jnp.arange(k), 8)
    grid = gan_lib.levels_from_unit(
      g.apply(params['generator'], jnp.asarray(z), labels, train=False), num_levels
    )
    images.save_image_grid(
      np.asarray(grid), os.path.join(workdir, 'class_samples.png'), num_levels=num_levels, nrow=8
    )
    return {}

  return Family(
    name=config.model,
    init=init,
    loss=loss,
    evaluate=evaluate,
    sample=sample,
    pictures=pictures,
    validation_metric=None,
    train_update=TrainUpdate(init=init_opt_state, update=update),
    ema_keys=('generator',),  # with config.ema_decay: the generator's average samples
    resume_may_change=frozenset({'fid_num_samples', 'fid_network', 'inception_weights'}),
    evaluate_takes_workdir=True,
  )
