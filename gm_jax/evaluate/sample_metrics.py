"""The sample metrics every sampling family reports in eval.json, for one config switch.

    num = sample_metrics.num_samples(config, splits)
    samples = ...                                  # [num, H, W, C] on [0, num_levels)
    results.update(sample_metrics.sample_metrics(config, samples, splits,
                                                 cache_dir=sample_metrics.cache_dir(workdir),
                                                 mesh=parallel.eval_mesh(config.parallel)))

`config.fid_network` picks the feature network:

* `'classifier'`: the digits classifier of `gm_jax.evaluate.fid`, trained on the dataset's
  own train split (the offline datasets' default; its FID is comparable only within this
  library). Keys as before (`fid`, `fid_floor`, `class_coverage`, ...).
* `'inception'`: pytorch-fid's FID Inception (`gm_jax.evaluate.inception`) with the weights
  file `config.inception_weights`: the FID other papers report, when the sample count and
  the reference split are the same as theirs (the 50,000 protocol: `fid_num_samples=50000`
  against the train split's statistics). Levels are mapped to uint8 `round(v * 255 /
  (num_levels - 1))` first. Real statistics are cached in `cache_dir`.

Both report KID and precision/recall over the same features (`gm_jax.evaluate.
feature_metrics`), and the keys that say what was measured: `fid_network`,
`fid_num_samples`, `fid_split`, `fid_resize`, `fid_real_count` (and, for Inception,
`fid_weights_sha256` and the Inception Score `is_mean` / `is_std`).
"""

from __future__ import annotations

import os

import numpy as np

from gm_jax.evaluate import feature_metrics
from gm_jax.evaluate import feature_stats
from gm_jax.evaluate import fid
from gm_jax.evaluate import inception

FID_NETWORKS = ('classifier', 'inception')

# The switch's settings: every sampling family has them in its `DEFAULTS` (`**DEFAULTS`).
DEFAULTS = {
  'fid_num_samples': 0,  # 0: as many as training images (the floor's sample size)
  'fid_network': 'classifier',
  'inception_weights': '',
}
DEFAULTS_DOC = {
  'fid_num_samples': 'samples of the FID (0: as many as training images)',
  'fid_network': "feature network of the FID: 'classifier' | 'inception'",
  'inception_weights': "path of pytorch-fid's weights file (fid_network='inception')",
}
CLASSIFIER_RESIZE = 'none: the classifier reads the dataset resolution, levels to [-1, 1]'


def check_config(config) -> None:
  """Errors naming the field for a bad `fid_network` / `inception_weights` (also a missing
  file) / `fid_num_samples`; call it with the family's other config checks, so a run fails
  before it trains."""
  if config.fid_network not in FID_NETWORKS:
    raise ValueError(
      f'config.fid_network must be one of {FID_NETWORKS}; got {config.fid_network!r}'
    )
  if config.fid_network == 'inception' and not config.inception_weights:
    raise ValueError(
      "config.fid_network='inception' needs config.inception_weights: the path "
      f"of pytorch-fid's {inception.FID_WEIGHTS_FILE} ({inception.FID_WEIGHTS_URL})"
    )
  if config.fid_network == 'inception' and not os.path.isfile(config.inception_weights):
    # Before training, not after it: the same error as the loader's, naming the field.
    raise FileNotFoundError(
      f'config.inception_weights={config.inception_weights!r} is not a file. Download '
      f"pytorch-fid's FID Inception weights once ({inception.FID_WEIGHTS_URL}); gm_jax does "
      f'not download them.'
    )
  if int(config.fid_num_samples) < 0:
    raise ValueError(
      f'config.fid_num_samples must be >= 0 (0: as many as the train split); '
      f'got {config.fid_num_samples}'
    )


def cache_dir(workdir: str | os.PathLike[str] | None) -> str | None:
  """`<workdir>/cache`, where a run's real-data statistics are cached; None without a
  workdir (an evaluation outside a run computes them every call)."""
  return None if workdir is None else os.path.join(os.fspath(workdir), 'cache')


def num_samples(config, splits) -> int:
  """How many samples to draw: `config.fid_num_samples`, or the train split's size if 0."""
  return int(config.fid_num_samples) or len(splits.train['image'])


def to_uint8(images, num_levels: int) -> np.ndarray:
  """Images on `[0, num_levels)` -> uint8 on [0, 255] (`round(v * 255 / (L - 1))`)."""
  images = np.asarray(images)
  if num_levels == 256:
    return images.astype(np.uint8)
  return np.round(images.astype(np.float64) * (255.0 / (num_levels - 1))).astype(np.uint8)


def inception_resize_rule(num_levels: int) -> str:
  """eval.json's `fid_resize` of `'inception'`: `inception.RESIZE_RULE`, after `to_uint8`'s
  level mapping when the images are not already on 256 levels."""
  if num_levels == 256:
    return inception.RESIZE_RULE
  return inception.RESIZE_RULE + f'; levels v -> round(v * 255 / {num_levels - 1})'


_PARAMS: dict = {}


def inception_params(weights_path: str | os.PathLike[str]) -> dict:
  """`inception.load_torch_weights(path)`, read once per process while the file is unchanged."""
  key = feature_stats.weights_sha256(weights_path)
  if key not in _PARAMS:
    _PARAMS.clear()
    _PARAMS[key] = inception.load_torch_weights(weights_path)
  return _PARAMS[key]


def distribution_metrics(gen, real) -> dict:
  """KID and precision/recall of generated vs real features `[N, D]`, as `sample_metrics`
  reports them (KID on subsets of up to `KID_SUBSET_SIZE` rows; precision/recall when both
  sets have more than `PRC_NEIGHBORHOOD` rows)."""
  out = {}
  size = min(feature_metrics.KID_SUBSET_SIZE, len(gen), len(real))
  if size >= 2:
    out.update(feature_metrics.kernel_inception_distance(gen, real, subset_size=size))
  if min(len(gen), len(real)) > feature_metrics.PRC_NEIGHBORHOOD:
    out.update(feature_metrics.precision_recall(gen, real, batch_size=1000))
  return out


def sample_metrics(
  config,
  samples,
  splits,
  *,
  cache_dir: str | os.PathLike[str] | None = None,
  mesh=None,
  split: str = 'test',
) -> dict:
  """FID, KID, precision/recall of `samples` against a real split, for eval.json.

  Args:
    config: reads `fid_network`, `inception_weights` (for `'inception'`), `parallel`
      is not read (pass `mesh`).
    samples: `[N, H, W, C]` generated images on `[0, splits.info.num_levels)`.
    splits: the dataset (`gm_jax.data.Splits`); the real images are `getattr(splits,
      split)['image']`, and the classifier is trained on `splits.train`.
    cache_dir: where real Inception statistics are cached (`<workdir>/cache`); None
      computes them every call.
    mesh: `parallel.eval_mesh(config.parallel)` for the Inception features.
    split: the real split: 'test' (default, as the classifier FID) or 'train'.
  Returns:
    `fid`, `kid_mean`, `kid_std`, `precision`, `recall`, `f_score`, `fid_network`,
    `fid_num_samples`, `fid_split`, `fid_resize`, `fid_real_count`; classifier:
    `fid_floor`, `fid_classifier_test_accuracy` and the class-coverage keys; Inception:
    `fid_weights_sha256`, `is_mean`, `is_std`.
  """
  check_config(config)
  info = splits.info
  if info.kind != 'image':
    raise ValueError(f'sample metrics need an image dataset; {info.name!r} is {info.kind!r}')
  if split not in ('train', 'validation', 'test'):
    raise ValueError(f"split must be 'train', 'validation' or 'test'; got {split!r}")
  samples = np.asarray(samples)
  real = getattr(splits, split)['image']
  out = {
    'fid_network': config.fid_network,
    'fid_num_samples': len(samples),
    'fid_split': split,
    'fid_real_count': len(real),
  }
  if config.fid_network == 'classifier':
    if not info.num_classes:
      raise ValueError(
        f"config.fid_network='classifier' needs a labelled dataset to train its "
        f"feature classifier; {info.name!r} has no labels (use 'inception')"
      )
    classifier = fid.classifier_for(splits)
    _, gen_f = classifier.logits_and_features(samples)
    _, real_f = classifier.logits_and_features(real)
    quality = fid.sample_quality(classifier, samples, splits, num_classes=info.num_classes)
    quality['fid'] = fid.fid_from_features(gen_f, real_f)  # against `split`
    out.update(quality)
    out['fid_num_samples'] = len(samples)
    out['fid_resize'] = CLASSIFIER_RESIZE
    out.update(distribution_metrics(gen_f, real_f))
    return out
  path = os.fspath(config.inception_weights)
  params = inception_params(path)
  keep = min(len(samples), len(real))
  real_stats = feature_stats.cached_real_statistics(
    cache_dir,
    params,
    to_uint8(real, info.num_levels),
    dataset=info.name,
    split=split,
    weights_path=path,
    keep=keep,
    mesh=mesh,
  )
  gen = feature_stats.statistics(
    params, to_uint8(samples, info.num_levels), keep=len(samples), logits=True, mesh=mesh
  )
  out['fid'] = feature_metrics.frechet_distance(gen.mu, gen.sigma, real_stats.mu, real_stats.sigma)
  out['fid_resize'] = inception_resize_rule(info.num_levels)
  out['fid_weights_sha256'] = feature_stats.weights_sha256(path)
  out.update(distribution_metrics(gen.features, real_stats.features))
  splits_is = min(feature_metrics.IS_SPLITS, len(samples))
  out.update(feature_metrics.inception_score(gen.logits, splits=splits_is))
  return out
