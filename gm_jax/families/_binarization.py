"""`config.binarize` for the families that model binary images (VAE, HVAE, ...).

    config.binarize = 'none' | 'static' | 'dynamic'
    config.binarize_seed = 0

`apply(config, splits, family_fn)` turns grey-level splits into binary ones and
builds the family on the binary `DatasetInfo` (`num_levels = 2`):

- 'static': train, validation and test are each binarised once, split `i`
  (0 train, 1 validation, 2 test) with `np.random.default_rng([binarize_seed, i])`.
- 'dynamic' (IWAE protocol): validation and test as above; every training batch
  is re-drawn inside the loss from that step's key (the trainer derives the key as
  `fold_in(fold_in(key(seed), step), group)`, so a resumed run and every
  data-parallel mode see the same draws). The training split keeps its grey levels
  under `'intensity'`; its `'image'` holds the static draw, which `init` and the
  pictures use.

See `gm_jax.data.binarize` for the probabilities.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax

from gm_jax import data as gm_data
from gm_jax.data import binarize as binarize_lib
from gm_jax.train.family import Family

MODES = binarize_lib.MODES
_SPLITS = ('train', 'validation', 'test')
# Part of the DEFAULTS of the families that binarise (vae, hvae, autoregressive).
DEFAULTS = {'binarize': 'none', 'binarize_seed': 0}
DEFAULTS_DOC = {
  'binarize': "'none', 'static' or 'dynamic' binarisation of grey-level images",
  'binarize_seed': 'seed of the static draws (split i uses [binarize_seed, i])',
}


def check_config(config) -> None:
  """A ValueError naming `config.binarize` unless it is one of `MODES`."""
  if config.binarize not in MODES:
    raise ValueError(f'config.binarize must be one of {MODES}, got {config.binarize!r}')


def binarize_splits(splits, mode: str, *, seed: int = 0):
  """Binary copies of `splits` (see the module docstring); `mode='none'` returns them."""
  if mode not in MODES:
    raise ValueError(f'config.binarize must be one of {MODES}, got {mode!r}')
  if mode == 'none':
    return splits
  if splits.train_stream is not None:
    raise ValueError(
      f'config.binarize={mode!r} binarises the training split in memory, '
      f'but {splits.info.name!r} is streamed (config.input_pipeline); set '
      "config.input_pipeline='memory'"
    )
  info = splits.info
  if info.kind != 'image':
    raise ValueError(
      f'config.binarize={mode!r} needs an image dataset; {info.name!r} is {info.kind}'
    )
  if info.num_levels == 2:
    raise ValueError(
      f"config.binarize={mode!r}: {info.name!r} is already binary; set config.binarize='none'"
    )
  out: dict[str, Any] = {}
  for i, split in enumerate(_SPLITS):
    arrays = dict(getattr(splits, split))
    grey = arrays['image']
    arrays['image'] = binarize_lib.static_binarize(
      grey, num_levels=info.num_levels, seed=[int(seed), i]
    )
    if mode == 'dynamic' and split == 'train':
      arrays['intensity'] = grey
    out[split] = arrays
  return gm_data.Splits(info=dataclasses.replace(info, num_levels=2), **out)


def dynamic_family(family: Family, *, num_levels: int) -> Family:
  """`family` whose training loss first re-draws `batch['image']` from `batch['intensity']`.

  Validation (`train=False`) and batches without `'intensity'` pass unchanged.
  """
  inner = family.loss

  # `**kwargs` passes `step=` on where the family declares `loss_takes_step`.
  def loss(params, batch, key, *, train, **kwargs):
    if train and 'intensity' in batch:
      draw_key, key = jax.random.split(key)
      batch = dict(
        batch,
        image=binarize_lib.dynamic_binarize(batch['intensity'], draw_key, num_levels=num_levels),
      )
    batch = {k: v for k, v in batch.items() if k != 'intensity'}
    return inner(params, batch, key, train=train, **kwargs)

  return dataclasses.replace(family, loss=loss)


def apply(config, splits, family_fn):
  """Binarises `splits` per `config.binarize` and returns `(splits, family)`.

  Args:
    config: reads `binarize` and `binarize_seed` (`DEFAULTS` filled in).
    splits: grey-level `gm_data.Splits`.
    family_fn: `(config, info) -> Family`, e.g. `gm_jax.families.vae.make_family`.
  """
  grey_levels = splits.info.num_levels
  splits = binarize_splits(splits, config.binarize, seed=int(config.binarize_seed))
  return splits, wrap_family(config, family_fn(config, splits.info), grey_levels=grey_levels)


def prepare(config, splits):
  """A family module's `prepare` hook (`gm_jax.families`): `(config, splits, kwargs)` with
  `splits` binarised per `config.binarize` and `kwargs = {'grey_levels': levels before}`."""
  grey_levels = splits.info.num_levels
  splits = binarize_splits(splits, config.binarize, seed=int(config.binarize_seed))
  return config, splits, {'grey_levels': grey_levels}


def wrap_family(config, family: Family, *, grey_levels: int | None) -> Family:
  """The second half of `apply`: `family` (built on the binarised splits' info) with the
  per-step draws of 'dynamic' and the binarisation reported in `eval.json`.

  Args:
    grey_levels: levels of the images before binarisation.
  """
  mode = config.binarize
  seed = int(config.binarize_seed)
  if mode == 'none':
    return family
  if grey_levels is None:
    raise ValueError(
      f'config.binarize={mode!r}: the family needs grey_levels, the levels '
      'of the images before binarisation (its `prepare` hook gives them)'
    )
  if mode == 'dynamic':
    family = dynamic_family(family, num_levels=grey_levels)
  evaluate = family.evaluate

  def evaluate_and_report(params, splits_, key, cfg):
    return dict(
      evaluate(params, splits_, key, cfg),
      binarize=mode,
      binarize_seed=seed,
      test_binarization=f'static draw, np.random.default_rng([{seed}, 2])',
    )

  return dataclasses.replace(family, evaluate=evaluate_and_report)
