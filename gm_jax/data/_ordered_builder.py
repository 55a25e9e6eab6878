"""The base of this package's tfds builders: examples stored in generation order.

Every embedded dataset (and `mnist_offline`) defines its splits by position, so its
examples are written in the order they are generated (`disable_shuffling=True`) and
read back in that order. A subclass gives its `DESCRIPTION`, `HOMEPAGE`, `features()`
and `code_path`, and the generator methods of `tfds.core.GeneratorBasedBuilder`.
"""

from __future__ import annotations

from typing import ClassVar

import tensorflow_datasets as tfds


# tfds is untyped, so mypy sees object.__init_subclass__, which takes no keywords.
class OrderedBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):  # type: ignore[call-arg]
  """`GeneratorBasedBuilder` with the shared version, order and `DatasetInfo`."""

  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES: ClassVar[dict[str, str]] = {'1.0.0': 'Initial release.'}
  HOMEPAGE = ''
  SUPERVISED_KEYS: tuple[str, str] | None = ('image', 'label')

  def description(self) -> str:
    raise NotImplementedError

  def features(self) -> dict:
    raise NotImplementedError

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(
      builder=self,
      description=self.description(),
      features=tfds.features.FeaturesDict(self.features()),
      supervised_keys=self.SUPERVISED_KEYS,
      disable_shuffling=True,
      homepage=self.HOMEPAGE,
    )
