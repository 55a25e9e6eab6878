"""The embedded datasets without TensorFlow: tfds's bytes, and clear errors for the rest."""

import os
import subprocess
import sys
import textwrap

import pytest

from gm_jax import data
from gm_jax.data import embedded
from gm_jax.data import reading

_REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# A `sitecustomize` that makes tensorflow and tensorflow_datasets look uninstalled:
# every import finder answers None for them, so `import tensorflow` raises
# ModuleNotFoundError and `importlib.util.find_spec('tensorflow')` is None (etils and
# orbax probe TensorFlow that way).
_HIDE_TF = """
import sys
_HIDDEN = ('tensorflow', 'tensorflow_datasets')


class _Hide:
  def __init__(self, finder):
    self._finder = finder

  def find_spec(self, name, path=None, target=None):
    if name.split('.')[0] in _HIDDEN:
      return None
    find = getattr(self._finder, 'find_spec', None)
    return find(name, path, target) if find else None

  def __getattr__(self, attr):
    return getattr(self._finder, attr)


sys.meta_path[:] = [_Hide(f) for f in sys.meta_path]
"""


@pytest.fixture(scope='module')
def without_tf(tmp_path_factory):
  """Runs Python code in a subprocess where TensorFlow and tfds cannot be imported."""
  site = tmp_path_factory.mktemp('hide_tf')
  (site / 'sitecustomize.py').write_text(_HIDE_TF)
  env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(site), _REPO]))

  def run(code, *args, timeout=120):
    return subprocess.run(
      [sys.executable, *args, '-c', textwrap.dedent(code)] if code else [sys.executable, *args],
      env=env,
      cwd=_REPO,
      capture_output=True,
      text=True,
      timeout=timeout,
      check=False,
    )

  proc = run(
    'import importlib.util, sys\n'
    'assert importlib.util.find_spec("tensorflow") is None\n'
    'try:\n  import tensorflow_datasets\nexcept ImportError: sys.exit(0)\n'
    'sys.exit(1)'
  )
  assert proc.returncode == 0, proc.stderr  # the hiding works
  return run


def _tfds_read(name, split, data_dir):
  tfds = reading.import_tfds()
  builder = reading.prepared_builder(name, data_dir)
  return builder, tfds.as_numpy(builder.as_dataset(split=split, batch_size=-1, shuffle_files=False))


def _assert_same_bytes(got, want):
  assert set(got) == set(want)
  for key, value in want.items():
    assert got[key].dtype == value.dtype, key
    assert got[key].shape == value.shape, key
    assert got[key].tobytes() == value.tobytes(), key


# --- (a) the direct arrays are what the tfds builders store -------------------


@pytest.mark.parametrize('name', embedded.NAMES)
@pytest.mark.parametrize('split', embedded.SPLITS)
def test_direct_arrays_equal_the_tfds_builders(name, split, data_dir):
  builder, stored = _tfds_read(name, split, data_dir)
  # Every stored feature (y, x, window too), same dtypes, order and bytes.
  _assert_same_bytes(embedded.examples(name, split), stored)
  # load_split (direct) == the tfds pipeline it replaced (`_select_features`).
  ds = builder.as_dataset(split=split, shuffle_files=False)
  ds = ds.map(reading.select_features(data.get_info(name))).batch(10_000)
  (want,) = list(reading.import_tfds().as_numpy(ds))
  _assert_same_bytes(data.load_split(name, split, data_dir=data_dir), want)


@pytest.mark.parametrize(
  'spec',
  [
    'train[:100]',
    'test[-7:]',
    'train[10%:-5%]',
    'test[33.3%:66.7%]',
    'train[:50%]+test[90%:]',
    'test + train[5:9]',
    'all',
  ],
)
def test_split_strings_select_the_rows_tfds_selects(spec, data_dir):
  _, stored = _tfds_read('pydoc_chars', spec, data_dir)
  _assert_same_bytes(embedded.read_split('pydoc_chars', spec), stored)


@pytest.mark.parametrize(
  'spec, match',
  [
    ('validation', "unknown split 'validation'"),
    ('train[0shard]', 'cannot parse'),
    ('train[:2000]', 'incompatible with 1437 examples'),
    ('train[1:2:3]', 'cannot parse'),
  ],
)
def test_unsupported_split_strings_are_named(spec, match):
  with pytest.raises(ValueError, match=match) as e:
    data.load_split('digits', spec)
  assert repr(spec) in str(e.value)


def test_embedded_version_suffix():
  assert len(data.load_split('digits:1.0.0', 'test')['label']) == 360
  with pytest.raises(ValueError, match='only version 1.0.0'):
    data.load_split('digits:2.0.0', 'test')


# --- (b) with TensorFlow and tfds uninstalled ---------------------------------


def test_embedded_and_exported_data_load_without_tensorflow(without_tf, tmp_path):
  proc = without_tf(f"""
      import sys
      import numpy as np
      from gm_jax import data
      from gm_jax.data import exported

      s = data.load_splits('digits', data_dir={str(tmp_path)!r}, validation_fraction=0.1)
      assert (len(s.train['label']), len(s.validation['label']), len(s.test['label'])) == (
          1293, 144, 360)
      assert s.train['image'].dtype == np.uint8 and s.train['label'].dtype == np.int32
      assert len(data.load_split('photo_patches', 'test')['image']) == 350
      assert data.load_split('pydoc_chars', 'train[:3]')['tokens'].shape == (3, 128)
      # An exported tfds dataset is read as before.
      exported.write(exported.exported_path('mnist', {str(tmp_path)!r}), 'mnist',
                     {{'train': {{'image': np.zeros((4, 28, 28, 1), np.uint8),
                                 'label': np.arange(4, dtype=np.int32)}}}})
      assert len(data.load_split('mnist', 'train', data_dir={str(tmp_path)!r})['label']) == 4
      assert not [m for m in sys.modules if m.startswith('tensorflow')]
      """)
  assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize(
  'name',
  [
    'mnist',
    'cifar10',
    'fashion_mnist',
    'binarized_mnist',
    'cycle_gan/horse2zebra',
    'mnist_offline',
  ],
)
def test_tfds_datasets_without_tfds_name_the_extra(without_tf, tmp_path, name):
  proc = without_tf(f"""
      from gm_jax import data
      try:
        data.load_splits({name!r}, data_dir={str(tmp_path)!r})
      except ImportError as e:
        print(e)
      else:
        raise AssertionError('no error')
      """)
  assert proc.returncode == 0, proc.stderr
  assert 'pip install gm_jax[tfds]' in proc.stdout
  assert f'Dataset {name!r}' in proc.stdout
  assert not os.listdir(tmp_path)  # failed before preparing anything


def test_tfds_builders_without_tfds_name_the_extra(without_tf):
  proc = without_tf("""
      from gm_jax import data
      try:
        data.Digits
      except ImportError as e:
        print(e)
      """)
  assert proc.returncode == 0, proc.stderr
  assert 'pip install gm_jax[tfds]' in proc.stdout


# --- (c) training end to end without TensorFlow --------------------------------


@pytest.mark.slow
def test_vae_trains_without_tensorflow(without_tf, tmp_path):
  proc = without_tf(
    None,
    '-m',
    'gm_jax.main',
    '--config=configs/vae.py',
    f'--workdir={tmp_path / "vae"}',
    f'--config.data_dir={tmp_path / "data"}',
    '--config.num_train_steps=20',
    '--config.checkpoint_every=10',
    '--config.iwae_samples=10',
    '--config.hidden=(32,)',  # small: the test is about the imports, not the model
    '--config.latent_dim=4',
    timeout=300,
  )
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert '"train_steps": 20' in proc.stdout
  assert (tmp_path / 'vae' / 'eval.json').exists()
