"""Datasets exported to .npz: same arrays as tfds, read without TensorFlow, clear errors."""

import zipfile

import numpy as np
import pytest

from gm_jax import data
from gm_jax.data import catalogue
from gm_jax.data import export
from gm_jax.data import exported
from gm_jax.data import reading


def _arrays(seed=0):
  rng = np.random.default_rng(seed)
  return {
    'image': rng.integers(0, 17, (5, 8, 8, 1), dtype=np.uint8),
    'label': rng.integers(0, 10, 5).astype(np.int32),
  }


def test_export_of_digits_equals_tfds_and_loads_without_tfds(tfds_dir, tmp_path, monkeypatch):
  out = export.export_splits(
    'digits',
    catalogue.split_names('digits'),
    data_dir=tfds_dir,
    out=str(tmp_path / 'exported' / 'digits.npz'),
  )
  want = data.load_splits('digits', data_dir=tfds_dir)

  def no_tfds(*args, **kwargs):
    raise AssertionError('tfds was used although an exported file is there')

  monkeypatch.setattr(reading, 'prepared_builder', no_tfds)
  got = data.load_splits('digits', data_dir=str(tmp_path))
  assert out == exported.exported_path('digits', str(tmp_path))
  for split in ('train', 'validation', 'test'):
    for field, value in getattr(want, split).items():
      np.testing.assert_array_equal(getattr(got, split)[field], value)
      assert getattr(got, split)[field].dtype == value.dtype
  assert len(got.test['image']) == 360


def test_round_trip_keeps_split_strings_and_dtypes(tmp_path):
  path = str(tmp_path / 'd.npz')
  exported.write(path, 'digits', {'train[:3]': _arrays(0), 'test': _arrays(1)})
  got = exported.read_split(path, 'digits', 'train[:3]')
  for k, v in _arrays(0).items():
    np.testing.assert_array_equal(got[k], v)
    assert got[k].dtype == v.dtype


@pytest.mark.parametrize(
  'name,split,match',
  [
    ('digits', 'validation', r"no split 'validation' \(it has: test, train\)"),
    ('mnist_offline', 'train', "holds dataset 'digits', not 'mnist_offline'"),
  ],
)
def test_wrong_split_or_dataset_is_named(tmp_path, name, split, match):
  path = str(tmp_path / 'd.npz')
  exported.write(path, 'digits', {'train': _arrays(0), 'test': _arrays(1)})
  with pytest.raises(ValueError, match=match):
    exported.read_split(path, name, split)


def test_corrupt_file_is_an_error_that_says_how_to_redo_it(tmp_path):
  path = tmp_path / 'd.npz'
  exported.write(str(path), 'digits', {'train': _arrays(0)})
  path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
  with pytest.raises(ValueError, match=r'cannot read exported dataset .*Re-export it'):
    exported.read_split(str(path), 'digits', 'train')


def test_pickled_arrays_are_refused(tmp_path):
  path = tmp_path / 'd.npz'
  with zipfile.ZipFile(path, 'w') as z:  # an index plus an object array (pickled)
    with z.open('__index__.npy', 'w') as f:
      np.lib.format.write_array(
        f,
        np.asarray(
          '{"format": "gm_jax.exported/1", "dataset": "digits", '
          '"splits": {"train": {"image": "a0"}}}'
        ),
      )
    with z.open('a0.npy', 'w') as f:
      np.lib.format.write_array(f, np.array([{'x': 1}], dtype=object), allow_pickle=True)
  with pytest.raises(ValueError, match='cannot read exported dataset'):
    exported.read_split(str(path), 'digits', 'train')
  with pytest.raises(ValueError, match='dtype object'):
    exported.write(
      str(tmp_path / 'o.npz'), 'digits', {'train': {'image': np.array([None], dtype=object)}}
    )


@pytest.mark.parametrize(
  'field,value,match',
  [
    (
      'image',
      240,
      r"field 'image' holds the value 240 \(example 2\); digits declares values "
      r'in \[0, 17\) \(num_levels = 17\)',
    ),
    ('label', 10, r"field 'label' holds the value 10 \(example 2\).*\[0, 10\)"),
    ('label', -1, r"field 'label' holds the value -1 \(example 2\)"),
  ],
)
def test_exported_values_outside_the_declared_range_name_file_field_and_value(
  tmp_path, field, value, match
):
  path = str(tmp_path / 'exported' / 'digits.npz')
  arrays = _arrays(0)
  arrays[field] = arrays[field].copy()
  arrays[field][2] = value  # a whole example (image) or one label
  exported.write(path, 'digits', {'train': arrays, 'test': _arrays(1)})
  exported.read_split(path, 'digits', 'test')  # the good split reads
  with pytest.raises(ValueError, match=f"{path}: split 'train' {match}"):
    data.load_split('digits', 'train', data_dir=str(tmp_path))


@pytest.mark.parametrize(
  'change,match',
  [
    (
      lambda a: dict(a, image=a['image'].astype(np.float32)),
      'dtype float32; digits declares uint8',
    ),
    (lambda a: dict(a, image=a['image'][:, :4]), r'shape \(4, 8, 1\); digits declares \(8, 8, 1\)'),
    (lambda a: {'image': a['image']}, "has no field 'label'"),
    (lambda a: dict(a, label=a['label'][:3]), "'label' has 3 examples, 'image' has 5"),
  ],
)
def test_exported_arrays_of_another_dtype_or_shape_are_named(tmp_path, change, match):
  path = str(tmp_path / 'd.npz')
  exported.write(path, 'digits', {'train': change(_arrays(0))})
  with pytest.raises(ValueError, match=match):
    exported.read_split(path, 'digits', 'train')
