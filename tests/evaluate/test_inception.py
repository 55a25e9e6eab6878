"""The Flax FID Inception against pytorch-fid 0.3.0's own network, with the same random
weights (exported from pytorch-fid's model through a `torch.save`d state dict)."""

import io
import os
import zipfile

import numpy as np
import pytest

from gm_jax.evaluate import inception
from tests.evaluate import pytorch_fid_reference

_REF = pytorch_fid_reference.load()
needs_reference = pytest.mark.skipif(
  _REF is None, reason='torch / pytorch-fid not installed (extra [bench])'
)


def _randomize(model, seed):
  """Variance-preserving random weights and non-trivial BatchNorm statistics."""
  import torch

  g = torch.Generator().manual_seed(seed)
  with torch.no_grad():
    for name, t in model.state_dict().items():
      if name.endswith('num_batches_tracked'):
        continue
      if name.endswith('conv.weight') or name == 'fc.weight':
        fan_in = t[0].numel()
        t.copy_(torch.randn(t.shape, generator=g) * (2.0 / fan_in) ** 0.5)
      elif name.endswith(('running_var', 'bn.weight')):
        t.copy_(0.5 + torch.rand(t.shape, generator=g))
      else:  # bn.bias, running_mean, fc.bias
        t.copy_(0.1 * torch.randn(t.shape, generator=g))


@pytest.fixture(scope='module')
def reference(tmp_path_factory):
  """`(pytorch-fid InceptionV3 in eval mode, its FID Inception, weights path, our params)`."""
  if _REF is None:
    pytest.skip('torch / pytorch-fid not installed (extra [bench])')
  import torch

  pfi, _ = _REF
  built = []
  original = pfi._inception_v3

  def build(*args, **kwargs):  # pytorch-fid would download its weights: keep random ones
    net = original(*args, **kwargs)
    net.load_state_dict = lambda state_dict: None
    built.append(net)
    return net

  download = pfi.load_state_dict_from_url
  pfi._inception_v3, pfi.load_state_dict_from_url = build, lambda *a, **k: None
  try:
    model = pfi.InceptionV3([3], resize_input=True, normalize_input=True).eval()
  finally:
    pfi._inception_v3, pfi.load_state_dict_from_url = original, download
  net = built[0]
  _randomize(net, seed=0)
  path = str(tmp_path_factory.mktemp('inception') / inception.FID_WEIGHTS_FILE)
  torch.save(net.state_dict(), path)
  return model, net, path, inception.load_torch_weights(path)


def _torch_features(model, images):
  import torch

  x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255.0  # pytorch-fid's ToTensor
  if x.shape[1] == 1:
    x = x.repeat(1, 3, 1, 1)
  with torch.no_grad():
    return model(x)[0][:, :, 0, 0].numpy()


def _assert_close(ours, ref):
  ours, ref = np.asarray(ours, np.float64), np.asarray(ref, np.float64)
  scale = np.abs(ref).max()
  assert scale > 0
  np.testing.assert_allclose(ours, ref, rtol=1e-4, atol=1e-4 * scale)


@needs_reference
def test_fid_features_match_pytorch_fid(reference):
  model, net, _, params = reference
  rng = np.random.default_rng(0)
  rgb = rng.integers(0, 256, size=(2, 21, 17, 3), dtype=np.uint8)  # upsampled to 299
  ours, logits = inception.fid_features_and_logits(params, rgb)
  ref = _torch_features(model, rgb)
  assert ours.shape == (2, inception.FEATURE_DIM)
  _assert_close(ours, ref)
  np.testing.assert_array_equal(np.asarray(inception.fid_features(params, rgb)), ours)
  import torch

  with torch.no_grad():
    ref_logits = net.fc(torch.from_numpy(ref)).numpy()
  _assert_close(logits, ref_logits)


@needs_reference
def test_grey_downsampled_features_match_pytorch_fid(reference):
  model, _, _, params = reference
  grey = np.random.default_rng(1).integers(0, 256, size=(2, 311, 303, 1), dtype=np.uint8)
  _assert_close(inception.fid_features(params, grey), _torch_features(model, grey))


@needs_reference
@pytest.mark.parametrize('size', [(8, 8), (28, 19), (299, 299), (512, 301)])
def test_resize_matches_torch_interpolate(size):
  import torch
  import torch.nn.functional as F

  images = np.random.default_rng(2).integers(0, 256, size=(1, *size, 3), dtype=np.uint8)
  x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255.0
  want = 2 * F.interpolate(x, size=(299, 299), mode='bilinear', align_corners=False) - 1
  np.testing.assert_allclose(
    np.asarray(inception.preprocess(images)), want.permute(0, 2, 3, 1).numpy(), atol=2e-6
  )


@needs_reference
def test_reader_equals_torch_load_for_both_layouts(reference, tmp_path):
  import torch

  _, net, path, _ = reference
  legacy = str(tmp_path / 'legacy.pth')
  state = net.state_dict()
  torch.save(state, legacy, _use_new_zipfile_serialization=False)
  assert zipfile.is_zipfile(path) and not zipfile.is_zipfile(legacy)
  want = torch.load(path, weights_only=True)
  for p in (path, legacy):
    got = inception.read_torch_state_dict(p)
    assert sorted(got) == sorted(want)
    for k, v in want.items():
      np.testing.assert_array_equal(got[k], v.numpy(), err_msg=k)
      assert got[k].dtype == v.numpy().dtype


def test_reader_refuses_other_globals(tmp_path):
  # A pickle that would call os.system('true'): GLOBAL 'os system', a tuple, REDUCE.
  payload = b'\x80\x02cos\nsystem\nX\x04\x00\x00\x00true\x85R.'
  path = str(tmp_path / 'evil.pth')
  with zipfile.ZipFile(path, 'w') as z:
    z.writestr('archive/data.pkl', payload)
  with pytest.raises(ValueError, match='refusing to load os.system'):
    inception.read_torch_state_dict(path)


def test_missing_weights_say_where_to_download(tmp_path):
  with pytest.raises(FileNotFoundError, match='pt_inception-2015-12-05-6726825d.pth'):
    inception.load_torch_weights(os.path.join(tmp_path, 'nowhere.pth'))


def test_wrong_state_dict_names_the_missing_parameter(tmp_path):
  path = str(tmp_path / 'small.pth')
  buf = io.BytesIO()
  # An empty dict (EMPTY_DICT, STOP) in the zip layout.
  buf.write(b'\x80\x02}.')
  with zipfile.ZipFile(path, 'w') as z:
    z.writestr('archive/data.pkl', buf.getvalue())
  with pytest.raises(ValueError, match=r"has no 'Conv2d_1a_3x3\."):
    inception.load_torch_weights(path)
