"""The CycleGAN family: four networks, one jitted step, image pools in the train state.

Zhu et al. 2017 (Sec. 3-4, Appendix 7.1): generators `G: A -> B`, `F: B -> A`,
discriminators `D_B`, `D_A`; the generators minimise

    L_GAN(G, D_B) + L_GAN(F, D_A) + lambda (|F(G(a)) - a|_1 + |G(F(b)) - b|_1)
      + 0.5 lambda (|G(b) - b|_1 + |F(a) - a|_1)          (identity loss)

with least-squares adversarial losses (`gm_jax.losses.lsgan_*` by default,
`config.gan_loss`), lambda = `config.cycle_weight` = 10 and the identity weight
`config.identity_weight` = 0.5 (times lambda); then the discriminators are updated
on real images and on fakes drawn from a pool of the last `config.pool_size` = 50
generated images. Adam 2e-4, beta1 0.5; constant learning rate for the first half of
training, linear decay to 0 over the second half. Both generators share one Adam and
both discriminators another, as in the reference implementation.

The train split is a set of *unpaired* `(image_a, image_b)` rows
(`unpaired_arrays`): domain A and domain B are two labels of one dataset (e.g. the
`china` and `flower` crops of `photo_patches`), or of two datasets with the same
image shape (`config.dataset_b`). The pairing carries no correspondence.

Evaluation (`evaluate`, on the test pairs): cycle errors, the translation accuracy of an
A-vs-B domain classifier trained on the train rows, and the FIDs `fid_a2b` (G(a) against
the real test images of B), `fid_b2a` (F(b) against A) and `fid_floor_a_vs_b` (real A
against real B), with KID and precision/recall of each direction (`kid_mean_a2b`,
`precision_b2a`, ...). `config.fid_network` picks their features as in every sampling
family (`gm_jax.evaluate.sample_metrics`): `'classifier'` (default), the domain
classifier's; `'inception'`, FID Inception's (`config.inception_weights`) of the uint8
images, the real domains' statistics cached in `<workdir>/cache`.

Selection: like the DCGAN family, no validation metric; the last parameters are
evaluated (Zhu et al. report the final model).
"""

from __future__ import annotations

import hashlib
import os
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from gm_jax import data as gm_data
from gm_jax import losses
from gm_jax.evaluate import feature_metrics
from gm_jax.evaluate import feature_stats
from gm_jax.evaluate import fid
from gm_jax.evaluate import sample_metrics
from gm_jax.families import gan as gan_family
from gm_jax.models import cyclegan as cg
from gm_jax.models import gan as gan_lib
from gm_jax.nn.layers import images_to_unit
from gm_jax.train import defaults
from gm_jax.train import input_pipeline
from gm_jax.train import optim
from gm_jax.train.family import Family
from gm_jax.train.family import TrainUpdate

MODELS = ('cyclegan',)
# Class names of the datasets whose labels are domains.
DOMAIN_NAMES = {'photo_patches': ('china', 'flower'), 'cycle_gan': ('A', 'B')}
NETWORKS = ('g_ab', 'g_ba', 'd_a', 'd_b')

# The family's own settings (`gm_jax.families.setup` fills them in once); the networks'
# and losses' settings have no default: every CycleGAN config states them.
DEFAULTS = {
  'dataset_b': '',
  'decay_start_fraction': 0.5,
  # the FIDs' feature network and sample count, as every sampling family's
  **sample_metrics.DEFAULTS,
}
DEFAULTS_DOC = {
  'dataset_b': "domain B's dataset ('': config.dataset, another label of it)",
  'decay_start_fraction': 'fraction of training after which the learning rate decays to 0',
  **sample_metrics.DEFAULTS_DOC,
  'fid_num_samples': 'test images translated per direction for the FIDs (0: all test pairs)',
}


def learning_rate_schedule(config) -> optax.Schedule:
  """Constant `learning_rate`, then linear decay to 0 from `decay_start_fraction`."""
  lr = float(config.learning_rate)
  steps = int(config.num_train_steps)
  start = int(round(float(config.decay_start_fraction) * steps))
  return optax.join_schedules(
    [optax.constant_schedule(lr), optax.linear_schedule(lr, 0.0, max(1, steps - start))], [start]
  )


def _domain_label(dataset: str, domain, field: str) -> int:
  names = DOMAIN_NAMES.get(dataset.split('/')[0].split(':')[0])
  info = gm_data.get_info(dataset)
  if isinstance(domain, str) and names and domain in names:
    return names.index(domain)
  try:
    label = int(domain)
  except (TypeError, ValueError):
    label = -1
  if not 0 <= label < (info.num_classes or 0):
    known = names if names else tuple(range(info.num_classes or 0))
    raise ValueError(f'config.{field}={domain!r} is not a class of {dataset!r}; use one of {known}')
  return label


def check_config(config, info=None) -> None:
  """Validates the CycleGAN fields (errors name the field); needs no data (`info`, the
  catalogue's info of `config.dataset`, is looked up here for both domains)."""
  del info
  gan_lib.gan_losses(config.gan_loss)
  input_pipeline.require_memory(
    config, 'CycleGAN pairs the rows of its two domains in memory (unpaired_arrays)'
  )
  info_a = gm_data.get_info(config.dataset)
  dataset_b = config.dataset_b or config.dataset
  info_b = gm_data.get_info(dataset_b)
  for name, info in (('dataset', info_a), ('dataset_b', info_b)):
    if info.kind != 'image':
      raise ValueError(f'config.{name}={info.name!r} is {info.kind} data; CycleGAN needs images')
  if tuple(info_a.shape) != tuple(info_b.shape) or info_a.num_levels != info_b.num_levels:
    raise ValueError(
      f'domain image sizes differ: config.dataset_b={dataset_b!r} has images of shape '
      f'{tuple(info_b.shape)} with {info_b.num_levels} levels, config.dataset='
      f'{config.dataset!r} has {tuple(info_a.shape)} with {info_a.num_levels}; both '
      'domains must have the same image shape'
    )
  h, w = info_a.shape[:2]
  if h % 4 or w % 4:
    raise ValueError(
      f'CycleGAN downsamples twice: image height and width of '
      f'{config.dataset!r} ({h}x{w}) must be divisible by 4'
    )
  _domain_label(config.dataset, config.domain_a, 'domain_a')
  _domain_label(dataset_b, config.domain_b, 'domain_b')
  if dataset_b == config.dataset and str(config.domain_a) == str(config.domain_b):
    raise ValueError(f'config.domain_a and config.domain_b are both {config.domain_a!r}')
  for name in ('cycle_weight', 'identity_weight'):
    if float(config[name]) < 0:
      raise ValueError(f'config.{name} must be >= 0, got {config[name]!r}')
  if int(config.pool_size) < 0:
    raise ValueError(f'config.pool_size must be >= 0, got {config.pool_size!r}')
  sample_metrics.check_config(config)


def unpaired_arrays(
  images_a: np.ndarray, images_b: np.ndarray, *, seed: int = 0, cycle: bool = True
) -> dict[str, np.ndarray]:
  """Rows `{'image_a', 'image_b'}` of an unpaired domain pair.

  `cycle=True` (training) gives `max(N_a, N_b)` rows, the smaller domain repeated;
  `cycle=False` (evaluation) gives `min(N_a, N_b)` rows, so no image counts twice.
  Domain B is permuted with `seed` so that rows carry no correspondence.
  """
  na, nb = len(images_a), len(images_b)
  n = max(na, nb) if cycle else min(na, nb)
  perm_b = np.random.default_rng(seed).permutation(nb)
  return {'image_a': images_a[np.arange(n) % na], 'image_b': images_b[perm_b[np.arange(n) % nb]]}


def load_domains(config) -> gm_data.Splits:
  """The unpaired train/test rows of `config.domain_a` and `config.domain_b`."""
  check_config(config)
  dataset_b = config.dataset_b or config.dataset
  out = {}
  for split_name in ('train', 'test'):
    parts = []
    for dataset, domain, field in (
      (config.dataset, config.domain_a, 'domain_a'),
      (dataset_b, config.domain_b, 'domain_b'),
    ):
      # The dataset's own split strings: `cycle_gan/*` has no 'train', only
      # 'trainA'/'trainB' (`load_splits` reads 'trainA+trainB').
      names = gm_data.split_names(dataset)
      tfds_split = names[0] if split_name == 'train' else names[-1]
      arrays = gm_data.load_split(dataset, tfds_split, data_dir=config.data_dir)
      parts.append(arrays['image'][arrays['label'] == _domain_label(dataset, domain, field)])
    out[split_name] = unpaired_arrays(*parts, seed=int(config.seed), cycle=split_name == 'train')
  empty = {k: v[:0] for k, v in out['test'].items()}
  return gm_data.Splits(
    train=out['train'], validation=empty, test=out['test'], info=gm_data.get_info(config.dataset)
  )


def build_models(config, info):
  gen = cg.ResnetGenerator(
    channels=info.shape[-1],
    filters=int(config.generator_filters),
    num_blocks=int(config.num_residual_blocks),
  )
  disc = cg.PatchDiscriminator(
    filters=int(config.discriminator_filters), num_layers=int(config.discriminator_layers)
  )
  return gen, disc


def make_family(config, info) -> Family:
  """Pure functions of CycleGAN for the generic trainer (batches of `unpaired_arrays`)."""
  d_loss_fn, g_loss_fn = gan_lib.gan_losses(config.gan_loss)
  gen, disc = build_models(config, info)
  num_levels = info.num_levels
  lam = float(config.cycle_weight)
  lam_id = float(config.identity_weight) * lam
  pool_size = int(config.pool_size)
  schedule = learning_rate_schedule(config)
  tx_g = optim.make_optimizer(config, schedule=schedule)
  tx_d = optim.make_optimizer(config, schedule=schedule)

  def unit(batch):
    return (
      images_to_unit(jnp.asarray(batch['image_a']), num_levels),
      images_to_unit(jnp.asarray(batch['image_b']), num_levels),
    )

  @gan_family.jit_once
  def init_jit(key, images):
    a = images_to_unit(images, num_levels)
    keys = jax.random.split(key, 4)
    return {
      'g_ab': gen.init(keys[0], a),
      'g_ba': gen.init(keys[1], a),
      'd_a': disc.init(keys[2], a),
      'd_b': disc.init(keys[3], a),
    }

  def init(key, batch):
    return init_jit(key, jnp.asarray(batch['image_a']))

  def init_opt_state(params):
    g = {k: params[k] for k in ('g_ab', 'g_ba')}
    d = {k: params[k] for k in ('d_a', 'd_b')}
    return {
      'generators': tx_g.init(g),
      'discriminators': tx_d.init(d),
      'pool_a': cg.image_pool_init(pool_size, info.shape),
      'pool_b': cg.image_pool_init(pool_size, info.shape),
    }

  def generator_terms(g, d, a, b):
    """Per-example generator objective and its parts (Zhu et al. eq. 3 + identity)."""
    fake_b = gen.apply(g['g_ab'], a)
    fake_a = gen.apply(g['g_ba'], b)
    rec_a = gen.apply(g['g_ba'], fake_b)
    rec_b = gen.apply(g['g_ab'], fake_a)
    adv = g_loss_fn(disc.apply(d['d_b'], fake_b)) + g_loss_fn(disc.apply(d['d_a'], fake_a))
    cycle = losses.cycle_consistency_loss(a, rec_a) + losses.cycle_consistency_loss(b, rec_b)
    total = adv + lam * cycle
    terms = {'g_adv': adv, 'cycle': cycle}
    if lam_id > 0:
      identity = losses.cycle_consistency_loss(
        b, gen.apply(g['g_ab'], b)
      ) + losses.cycle_consistency_loss(a, gen.apply(g['g_ba'], a))
      total = total + lam_id * identity
      terms['identity'] = identity
    return total, terms, fake_a, fake_b

  def update(params, opt_state, batch, key, *, step, axis_name=None):
    del step
    a, b = unit(batch)
    g = {k: params[k] for k in ('g_ab', 'g_ba')}
    d = {k: params[k] for k in ('d_a', 'd_b')}

    def pmean(tree):
      return tree if axis_name is None else jax.lax.pmean(tree, axis_name)

    # 1. Both generators, against the current discriminators.
    def g_objective(g):
      total, terms, fake_a, fake_b = generator_terms(g, d, a, b)
      return jnp.mean(total), (jax.tree.map(jnp.mean, terms), fake_a, fake_b)

    (g_loss, (terms, fake_a, fake_b)), g_grads = jax.value_and_grad(g_objective, has_aux=True)(g)
    g_loss, terms, g_grads = pmean((g_loss, terms, g_grads))
    g_updates, g_opt = tx_g.update(g_grads, opt_state['generators'], g)
    g = optax.apply_updates(g, g_updates)

    # 2. The pools see the whole global batch in order, identically on every device
    # (same key), and each device keeps its own rows of what they return.
    def through_pool(pool, fakes, k):
      fakes = jax.lax.stop_gradient(fakes)
      n = fakes.shape[0]
      if axis_name is not None:
        fakes = jax.lax.all_gather(fakes, axis_name, tiled=True)
      pool, out = cg.image_pool_query(pool, fakes, k)
      if axis_name is not None:
        out = jax.lax.dynamic_slice_in_dim(out, jax.lax.axis_index(axis_name) * n, n)
      return pool, out

    k_a, k_b = jax.random.split(key)
    pool_a, pooled_a = through_pool(opt_state['pool_a'], fake_a, k_a)
    pool_b, pooled_b = through_pool(opt_state['pool_b'], fake_b, k_b)

    # 3. Both discriminators on real images and pooled fakes.
    def d_objective(d):
      loss_a = d_loss_fn(disc.apply(d['d_a'], a), disc.apply(d['d_a'], pooled_a))
      loss_b = d_loss_fn(disc.apply(d['d_b'], b), disc.apply(d['d_b'], pooled_b))
      return jnp.mean(loss_a + loss_b), (jnp.mean(loss_a), jnp.mean(loss_b))

    (d_loss, (d_a_loss, d_b_loss)), d_grads = jax.value_and_grad(d_objective, has_aux=True)(d)
    d_loss, d_a_loss, d_b_loss, d_grads = pmean((d_loss, d_a_loss, d_b_loss, d_grads))
    d_updates, d_opt = tx_d.update(d_grads, opt_state['discriminators'], d)
    d = optax.apply_updates(d, d_updates)

    metrics = dict(
      terms,
      loss=g_loss + d_loss,
      g_loss=g_loss,
      d_loss=d_loss,
      d_a_loss=d_a_loss,
      d_b_loss=d_b_loss,
      g_grad_norm=optax.global_norm(g_grads),
      d_grad_norm=optax.global_norm(d_grads),
    )
    new_opt = {'generators': g_opt, 'discriminators': d_opt, 'pool_a': pool_a, 'pool_b': pool_b}
    return {**g, **d}, new_opt, metrics

  def loss(params, batch, key, *, train=False):
    """Generator and discriminator objectives on one batch (no pool, no update)."""
    del key, train
    a, b = unit(batch)
    total, terms, fake_a, fake_b = generator_terms(params, params, a, b)
    d_loss = d_loss_fn(disc.apply(params['d_a'], a), disc.apply(params['d_a'], fake_a)) + d_loss_fn(
      disc.apply(params['d_b'], b), disc.apply(params['d_b'], fake_b)
    )
    metrics = dict(jax.tree.map(jnp.mean, terms), g_loss=jnp.mean(total), d_loss=jnp.mean(d_loss))
    return jnp.mean(total + d_loss), metrics

  translate = jax.jit(
    lambda p, x: gan_lib.levels_from_unit(gen.apply(p, images_to_unit(x, num_levels)), num_levels)
  )

  def translate_all(p, images, batch_size=256):
    return np.concatenate(
      [
        np.asarray(translate(p, jnp.asarray(images[i : i + batch_size])))
        for i in range(0, len(images), batch_size)
      ]
    )

  def evaluate(params, splits, key, cfg, *, workdir=None):
    del key
    test, train = splits.test, splits.train
    classifier = domain_classifier(train, num_levels=num_levels, seed=int(cfg.seed))
    a, b = test['image_a'], test['image_b']
    translate_all(params['g_ab'], a[:8])  # compile before timing
    t0 = time.perf_counter()
    ab = translate_all(params['g_ab'], a)
    seconds = time.perf_counter() - t0
    ba = translate_all(params['g_ba'], b)
    aba = translate_all(params['g_ba'], ab)
    bab = translate_all(params['g_ab'], ba)
    scale = float(num_levels - 1)
    err = lambda x, y: float(np.mean(np.abs(x.astype(np.float64) - y.astype(np.float64))) / scale)
    pred = lambda x: np.argmax(classifier.logits_and_features(x)[0], -1)
    acc_ab = float(np.mean(pred(ab) == 1))
    acc_ba = float(np.mean(pred(ba) == 0))
    results = {
      'bound': 'none',
      'gan_loss': cfg.gan_loss,
      'domains': f'{cfg.domain_a}<->{cfg.domain_b}',
      'num_test_pairs': int(len(a)),
      # Mean absolute error of pixel values scaled to [0, 1].
      'cycle_error_a': err(a, aba),
      'cycle_error_b': err(b, bab),
      'cycle_error': 0.5 * (err(a, aba) + err(b, bab)),
      'translation_accuracy_a2b': acc_ab,
      'translation_accuracy_b2a': acc_ba,
      'translation_accuracy': 0.5 * (acc_ab + acc_ba),
      # The classifier on untranslated test images: its own accuracy, and how often
      # an input is already taken for the other domain (the "do nothing" baseline).
      'domain_classifier_test_accuracy': 0.5 * float(np.mean(pred(a) == 0) + np.mean(pred(b) == 1)),
    }
    num = min(int(cfg.fid_num_samples) or len(a), len(a))
    if cfg.fid_network == 'inception':
      results.update(
        inception_fids(cfg, a, b, ab[:num], ba[:num], sample_metrics.cache_dir(workdir))
      )
    else:
      feat = lambda x: classifier.logits_and_features(x)[1]
      feat_a, feat_b = feat(a), feat(b)
      results.update(
        _fids(
          (feat(ab[:num]), feat_b),
          (feat(ba[:num]), feat_a),
          (feat_a, feat_b),
          fid_distance=fid.fid_from_features,
        )
      )
      results['fid_resize'] = sample_metrics.CLASSIFIER_RESIZE
    results.update(
      fid_network=cfg.fid_network, fid_num_samples=num, fid_split='test', fid_real_count=len(a)
    )
    results['samples_per_s'] = len(a) / seconds if seconds > 0 else None
    return results

  def inception_fids(cfg, a, b, ab, ba, cache_dir) -> dict:
    """The FIDs, KID and precision/recall in FID Inception's features of the uint8 images;
    the real test domains' statistics are read from / written to `cache_dir`."""
    path = os.fspath(cfg.inception_weights)
    inception_params = sample_metrics.inception_params(path)
    uint8 = lambda x: sample_metrics.to_uint8(x, num_levels)
    keep = len(ab)

    def real(images, dataset, domain):
      images = uint8(images)
      # The test rows of a domain depend on the other's size and on the seed (the unpaired
      # rows' permutation): the cache key holds a digest of the images themselves.
      digest = hashlib.sha256(np.ascontiguousarray(images).tobytes()).hexdigest()[:12]
      return feature_stats.cached_real_statistics(
        cache_dir,
        inception_params,
        images,
        dataset=f'{dataset}[{domain}]',
        split=f'test-{digest}',
        weights_path=path,
        keep=keep,
      )

    stats_a = real(a, cfg.dataset, cfg.domain_a)
    stats_b = real(b, cfg.dataset_b or cfg.dataset, cfg.domain_b)
    gen = lambda x: feature_stats.statistics(inception_params, uint8(x), keep=keep)
    out = _fids(
      (gen(ab), stats_b),
      (gen(ba), stats_a),
      (stats_a, stats_b),
      fid_distance=lambda x, y: feature_metrics.frechet_distance(x.mu, x.sigma, y.mu, y.sigma),
      features=lambda s: s.features,
    )
    out['fid_resize'] = sample_metrics.inception_resize_rule(num_levels)
    out['fid_weights_sha256'] = feature_stats.weights_sha256(path)
    return out

  def pictures(params, splits, key, workdir):
    del key
    from gm_jax.evaluate import images

    for name, x, fwd, back in (
      ('a2b', splits.test['image_a'], 'g_ab', 'g_ba'),
      ('b2a', splits.test['image_b'], 'g_ba', 'g_ab'),
    ):
      x = x[np.linspace(0, len(x) - 1, 8).astype(int)]
      y = translate_all(params[fwd], x)
      rows = np.concatenate([x, y, translate_all(params[back], y)])  # x, G(x), F(G(x))
      images.save_image_grid(
        rows, os.path.join(workdir, f'translations_{name}.png'), num_levels=num_levels, nrow=8
      )
    return {}

  return Family(
    name=config.model,
    init=init,
    loss=loss,
    evaluate=evaluate,
    sample=None,
    pictures=pictures,
    validation_metric=None,
    train_update=TrainUpdate(init=init_opt_state, update=update),
    ema_keys=('g_ab', 'g_ba'),  # with config.ema_decay: the generators' average samples
    schedule=lambda c: learning_rate_schedule(defaults.complete(c, DEFAULTS)),
    resume_may_change=frozenset({'fid_num_samples', 'fid_network', 'inception_weights'}),
    evaluate_takes_workdir=True,
  )


def _fids(a2b, b2a, floor, *, fid_distance, features=lambda f: f) -> dict:
  """`fid_a2b`, `fid_b2a`, `fid_floor_a_vs_b` and each direction's KID and precision/recall
  (keys suffixed `_a2b` / `_b2a`) of `(generated, real)` pairs of features or statistics."""
  out = {
    'fid_a2b': fid_distance(*a2b),
    'fid_b2a': fid_distance(*b2a),
    'fid_floor_a_vs_b': fid_distance(*floor),
  }
  for name, (gen, real) in (('a2b', a2b), ('b2a', b2a)):
    metrics = sample_metrics.distribution_metrics(features(gen), features(real))
    out.update({f'{k}_{name}': v for k, v in metrics.items()})
  return out


_CLASSIFIERS: dict = {}


def domain_classifier(train: dict, *, num_levels: int, seed: int = 0):
  """A deterministic A-vs-B classifier (label 1 = B) trained on the train rows."""
  # Unique images only: the smaller domain is repeated in the train rows.
  a = np.unique(train['image_a'], axis=0)
  b = np.unique(train['image_b'], axis=0)
  key = (a.shape, b.shape, int(a.sum()), int(b.sum()), seed)
  if key not in _CLASSIFIERS:
    images = np.concatenate([a, b])
    labels = np.concatenate([np.zeros(len(a), np.int32), np.ones(len(b), np.int32)])
    _CLASSIFIERS[key] = fid.train_feature_classifier(
      images, labels, num_levels=num_levels, num_classes=2, seed=seed, num_steps=300
    )
  return _CLASSIFIERS[key]


# The registry's hook: the unpaired rows of the two domains.
load_splits = load_domains
