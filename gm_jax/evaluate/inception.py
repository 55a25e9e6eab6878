"""pytorch-fid's FID Inception-v3 in Flax: the 2048-d pool3 features every FID paper reports.

    params = inception.load_torch_weights('pt_inception-2015-12-05-6726825d.pth')
    feats = inception.fid_features(params, images)      # uint8 [B, H, W, C] -> [B, 2048]

The network is the TensorFlow FID graph (`inception-2015-12-05`, Heusel et al. 2017) as
pytorch-fid 0.3.0 (`pytorch_fid/inception.py`) ports it: torchvision's Inception-v3 with
its `FIDInceptionA/C/E_1/E_2` blocks, whose average pools exclude the zero padding
(`count_include_pad=False`, as TensorFlow's) and whose last block (`Mixed_7c`, E_2)
max-pools where the paper average-pools; every convolution is `BasicConv2d` (no bias,
BatchNorm with eps 1e-3, ReLU). Inputs are prepared as pytorch-fid does: uint8 / 255,
bilinear resize to 299 x 299 (`F.interpolate(mode='bilinear', align_corners=False)`, no
anti-aliasing), then `2 x - 1`. Grey images are repeated to three channels.

The weights are pytorch-fid's state-dict file, read by `load_torch_weights` without torch
and without the `pickle` module (`gm_jax.evaluate.torch_state_dict`: only the globals that
rebuild tensors are accepted).
"""

from __future__ import annotations

from collections.abc import Sequence
import functools
import os
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from gm_jax.evaluate.torch_state_dict import read_torch_state_dict

FID_WEIGHTS_FILE = 'pt_inception-2015-12-05-6726825d.pth'
FID_WEIGHTS_URL = (
  'https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/' + FID_WEIGHTS_FILE
)
INPUT_SIZE = 299
FEATURE_DIM = 2048
NUM_LOGITS = 1008
RESIZE_RULE = (
  'pytorch-fid: uint8/255, bilinear to 299x299 (align_corners=False, no antialias), 2x-1'
)
_BN_EPS = 1e-3
_HIGHEST = jax.lax.Precision.HIGHEST


# ----------------------------------------------------------------------------- network


class BasicConv2d(nn.Module):
  """torchvision's `BasicConv2d`: conv (no bias) -> BatchNorm (running stats) -> ReLU.

  Parameters are named as the torch state dict: `conv/kernel [kh, kw, in, out]`,
  `bn/{scale, bias, mean, var}`. `precision` is HIGHEST by default: on GPUs, the default
  float32 convolution may run in TF32 and move FID in its third digit.
  """

  features: int
  kernel: Sequence[int]
  stride: int = 1
  padding: Sequence[int] = (0, 0)
  precision: Any = _HIGHEST

  @nn.compact
  def __call__(self, x):
    kh, kw = self.kernel
    ph, pw = self.padding
    x = nn.Conv(
      self.features,
      (kh, kw),
      strides=self.stride,
      padding=((ph, ph), (pw, pw)),
      use_bias=False,
      precision=self.precision,
      name='conv',
    )(x)
    bn = _FrozenBatchNorm(name='bn')
    return nn.relu(bn(x))


class _FrozenBatchNorm(nn.Module):
  """`y = (x - mean) / sqrt(var + 1e-3) * scale + bias` with stored statistics."""

  @nn.compact
  def __call__(self, x):
    c = x.shape[-1]
    scale = self.param('scale', nn.initializers.ones, (c,))
    bias = self.param('bias', nn.initializers.zeros, (c,))
    mean = self.param('mean', nn.initializers.zeros, (c,))
    var = self.param('var', nn.initializers.ones, (c,))
    return (x - mean) * (scale * jax.lax.rsqrt(var + _BN_EPS)) + bias


def _avg_pool_3x3(x):
  """TensorFlow's 3x3 / stride 1 / SAME average pool: the zero padding is not counted."""
  return nn.avg_pool(x, (3, 3), strides=(1, 1), padding=((1, 1), (1, 1)), count_include_pad=False)


def _max_pool_3x3_s2(x):
  return nn.max_pool(x, (3, 3), strides=(2, 2), padding='VALID')


class FIDInceptionA(nn.Module):
  pool_features: int
  precision: Any = _HIGHEST

  @nn.compact
  def __call__(self, x):
    c = functools.partial(BasicConv2d, precision=self.precision)
    b1 = c(64, (1, 1), name='branch1x1')(x)
    b5 = c(48, (1, 1), name='branch5x5_1')(x)
    b5 = c(64, (5, 5), padding=(2, 2), name='branch5x5_2')(b5)
    b3 = c(64, (1, 1), name='branch3x3dbl_1')(x)
    b3 = c(96, (3, 3), padding=(1, 1), name='branch3x3dbl_2')(b3)
    b3 = c(96, (3, 3), padding=(1, 1), name='branch3x3dbl_3')(b3)
    bp = c(self.pool_features, (1, 1), name='branch_pool')(_avg_pool_3x3(x))
    return jnp.concatenate([b1, b5, b3, bp], -1)


class InceptionB(nn.Module):
  """torchvision's `InceptionB` (Mixed_6a), unchanged by pytorch-fid."""

  precision: Any = _HIGHEST

  @nn.compact
  def __call__(self, x):
    c = functools.partial(BasicConv2d, precision=self.precision)
    b3 = c(384, (3, 3), stride=2, name='branch3x3')(x)
    bd = c(64, (1, 1), name='branch3x3dbl_1')(x)
    bd = c(96, (3, 3), padding=(1, 1), name='branch3x3dbl_2')(bd)
    bd = c(96, (3, 3), stride=2, name='branch3x3dbl_3')(bd)
    return jnp.concatenate([b3, bd, _max_pool_3x3_s2(x)], -1)


class FIDInceptionC(nn.Module):
  channels_7x7: int
  precision: Any = _HIGHEST

  @nn.compact
  def __call__(self, x):
    c = functools.partial(BasicConv2d, precision=self.precision)
    c7 = self.channels_7x7
    b1 = c(192, (1, 1), name='branch1x1')(x)
    b7 = c(c7, (1, 1), name='branch7x7_1')(x)
    b7 = c(c7, (1, 7), padding=(0, 3), name='branch7x7_2')(b7)
    b7 = c(192, (7, 1), padding=(3, 0), name='branch7x7_3')(b7)
    bd = c(c7, (1, 1), name='branch7x7dbl_1')(x)
    bd = c(c7, (7, 1), padding=(3, 0), name='branch7x7dbl_2')(bd)
    bd = c(c7, (1, 7), padding=(0, 3), name='branch7x7dbl_3')(bd)
    bd = c(c7, (7, 1), padding=(3, 0), name='branch7x7dbl_4')(bd)
    bd = c(192, (1, 7), padding=(0, 3), name='branch7x7dbl_5')(bd)
    bp = c(192, (1, 1), name='branch_pool')(_avg_pool_3x3(x))
    return jnp.concatenate([b1, b7, bd, bp], -1)


class InceptionD(nn.Module):
  """torchvision's `InceptionD` (Mixed_7a), unchanged by pytorch-fid."""

  precision: Any = _HIGHEST

  @nn.compact
  def __call__(self, x):
    c = functools.partial(BasicConv2d, precision=self.precision)
    b3 = c(192, (1, 1), name='branch3x3_1')(x)
    b3 = c(320, (3, 3), stride=2, name='branch3x3_2')(b3)
    b7 = c(192, (1, 1), name='branch7x7x3_1')(x)
    b7 = c(192, (1, 7), padding=(0, 3), name='branch7x7x3_2')(b7)
    b7 = c(192, (7, 1), padding=(3, 0), name='branch7x7x3_3')(b7)
    b7 = c(192, (3, 3), stride=2, name='branch7x7x3_4')(b7)
    return jnp.concatenate([b3, b7, _max_pool_3x3_s2(x)], -1)


class FIDInceptionE(nn.Module):
  """`FIDInceptionE_1` (`max_pool=False`) and `FIDInceptionE_2` (`max_pool=True`: the
  FID graph's Mixed_7c max-pools its pool branch, 3x3 / stride 1 / padding 1)."""

  max_pool: bool
  precision: Any = _HIGHEST

  @nn.compact
  def __call__(self, x):
    c = functools.partial(BasicConv2d, precision=self.precision)
    b1 = c(320, (1, 1), name='branch1x1')(x)
    b3 = c(384, (1, 1), name='branch3x3_1')(x)
    b3 = jnp.concatenate(
      [
        c(384, (1, 3), padding=(0, 1), name='branch3x3_2a')(b3),
        c(384, (3, 1), padding=(1, 0), name='branch3x3_2b')(b3),
      ],
      -1,
    )
    bd = c(448, (1, 1), name='branch3x3dbl_1')(x)
    bd = c(384, (3, 3), padding=(1, 1), name='branch3x3dbl_2')(bd)
    bd = jnp.concatenate(
      [
        c(384, (1, 3), padding=(0, 1), name='branch3x3dbl_3a')(bd),
        c(384, (3, 1), padding=(1, 0), name='branch3x3dbl_3b')(bd),
      ],
      -1,
    )
    if self.max_pool:
      pooled = nn.max_pool(x, (3, 3), strides=(1, 1), padding=((1, 1), (1, 1)))
    else:
      pooled = _avg_pool_3x3(x)
    bp = c(192, (1, 1), name='branch_pool')(pooled)
    return jnp.concatenate([b1, b3, bd, bp], -1)


class FIDInceptionV3(nn.Module):
  """Network input `[B, H, W, 3]` in [-1, 1] -> pool3 features `[B, 2048]`.

  `logits=True` also returns the 1008-way `fc` logits `[B, 1008]` (for the Inception
  Score). Submodule names are the torch state dict's (`Conv2d_1a_3x3`, `Mixed_5b`, ...).
  """

  precision: Any = _HIGHEST

  @nn.compact
  def __call__(self, x, *, logits: bool = False):
    p = self.precision
    c = functools.partial(BasicConv2d, precision=p)
    x = c(32, (3, 3), stride=2, name='Conv2d_1a_3x3')(x)
    x = c(32, (3, 3), name='Conv2d_2a_3x3')(x)
    x = c(64, (3, 3), padding=(1, 1), name='Conv2d_2b_3x3')(x)
    x = _max_pool_3x3_s2(x)
    x = c(80, (1, 1), name='Conv2d_3b_1x1')(x)
    x = c(192, (3, 3), name='Conv2d_4a_3x3')(x)
    x = _max_pool_3x3_s2(x)
    x = FIDInceptionA(32, p, name='Mixed_5b')(x)
    x = FIDInceptionA(64, p, name='Mixed_5c')(x)
    x = FIDInceptionA(64, p, name='Mixed_5d')(x)
    x = InceptionB(p, name='Mixed_6a')(x)
    x = FIDInceptionC(128, p, name='Mixed_6b')(x)
    x = FIDInceptionC(160, p, name='Mixed_6c')(x)
    x = FIDInceptionC(160, p, name='Mixed_6d')(x)
    x = FIDInceptionC(192, p, name='Mixed_6e')(x)
    x = InceptionD(p, name='Mixed_7a')(x)
    x = FIDInceptionE(False, p, name='Mixed_7b')(x)
    x = FIDInceptionE(True, p, name='Mixed_7c')(x)
    pool = jnp.mean(x, axis=(1, 2))  # AdaptiveAvgPool2d((1, 1))
    if not logits:
      return pool
    return pool, nn.Dense(NUM_LOGITS, precision=p, name='fc')(pool)


# ----------------------------------------------------------------------------- inputs


def _resize_matrix(in_size: int, out_size: int) -> np.ndarray:
  """`[out, in]` weights of torch's bilinear `align_corners=False` resize along one axis.

  ATen's `upsample_bilinear2d`: scale `in / out`, source `(dst + 0.5) scale - 0.5`
  clamped at 0, neighbours `floor(src)` and `floor(src) + 1` (clamped at `in - 1`).
  """
  # Float32 as ATen's CPU kernel for float32 images: a float32 scale and one fused
  # multiply-add, `fma(scale, dst + 0.5, -0.5)` (exact in float64, then rounded once).
  # Other roundings move a tap by an ulp of `src` (~4e-6 of a pixel on a 512 axis).
  scale = np.float64(np.float32(in_size / out_size))
  src = (scale * (np.arange(out_size) + 0.5) - 0.5).astype(np.float32)
  src = np.maximum(src, np.float32(0.0))
  x0 = src.astype(np.int64)
  lam = src - x0.astype(np.float32)
  x1 = np.minimum(x0 + 1, in_size - 1)
  x0 = np.minimum(x0, in_size - 1)
  w = np.zeros((out_size, in_size))
  rows = np.arange(out_size)
  np.add.at(w, (rows, x0), np.float32(1.0) - lam)
  np.add.at(w, (rows, x1), lam)
  return w.astype(np.float32)


def preprocess(images) -> jnp.ndarray:
  """uint8 `[B, H, W, C]` (C = 1 or 3) -> network input `[B, 299, 299, 3]` in [-1, 1].

  As pytorch-fid: `x / 255`, bilinear resize to 299 x 299, `2 x - 1` (see `RESIZE_RULE`).
  """
  images = jnp.asarray(images)
  if images.ndim != 4 or images.shape[-1] not in (1, 3):
    raise ValueError(f'images must be [B, H, W, 1 or 3], got shape {images.shape}')
  if images.dtype != jnp.uint8:
    raise ValueError(f'images must be uint8 on [0, 255], got dtype {images.dtype}')
  x = images.astype(jnp.float32) / 255.0
  if x.shape[-1] == 1:
    x = jnp.repeat(x, 3, axis=-1)
  _, h, w, _ = x.shape
  wh = jnp.asarray(_resize_matrix(h, INPUT_SIZE))
  ww = jnp.asarray(_resize_matrix(w, INPUT_SIZE))
  x = jnp.einsum('oh,bhwc,pw->bopc', wh, x, ww, precision=_HIGHEST)
  return 2.0 * x - 1.0


@functools.partial(jax.jit, static_argnames=('logits',))
def _apply(params, images, logits: bool = False):
  return FIDInceptionV3().apply(params, preprocess(images), logits=logits)


def fid_features(params, images) -> jnp.ndarray:
  """pytorch-fid's pool3 features of uint8 `images [B, H, W, C]` -> `[B, 2048]` float32.

  Args:
    params: from `load_torch_weights` (or `init_params`).
    images: uint8 `[B, H, W, 1 or 3]`, any `H, W` (resized to 299 as pytorch-fid).
  """
  return _apply(params, images)


def fid_features_and_logits(params, images) -> tuple[jnp.ndarray, jnp.ndarray]:
  """`(fid_features [B, 2048], fc logits [B, 1008])` (the logits feed the Inception Score)."""
  return _apply(params, images, logits=True)


def init_params(key) -> Any:
  """Random parameters with the structure `load_torch_weights` returns (tests, shapes)."""
  return FIDInceptionV3().init(key, jnp.zeros((1, INPUT_SIZE, INPUT_SIZE, 3)), logits=True)


# ----------------------------------------------------------------------------- weights


def torch_state_dict_to_params(state: dict) -> dict:
  """`{torch name: NumPy array}` of pytorch-fid's FID Inception -> Flax `params`.

  Conv weights `[out, in, kh, kw]` become kernels `[kh, kw, in, out]`; `bn.weight/bias/
  running_mean/running_var` become `bn/{scale, bias, mean, var}`; `fc.weight [1008, 2048]`
  becomes `fc/kernel [2048, 1008]`. Every parameter of the network must be present.
  """
  want = jax.tree_util.tree_flatten_with_path(jax.eval_shape(init_params, jax.random.key(0)))[0]
  bn_names = {'scale': 'weight', 'bias': 'bias', 'mean': 'running_mean', 'var': 'running_var'}
  flat = {}
  for path, shape in want:
    keys = [p.key for p in path][1:]  # drop 'params'
    *mods, leaf = keys
    if mods[-1] == 'conv':
      name, convert = '.'.join(mods + ['weight']), lambda a: a.transpose(2, 3, 1, 0)
    elif mods[-1] == 'bn':
      name, convert = '.'.join(mods + [bn_names[leaf]]), lambda a: a
    elif leaf == 'kernel':  # fc
      name, convert = '.'.join(mods + ['weight']), lambda a: a.T
    else:
      name, convert = '.'.join(mods + [leaf]), lambda a: a
    if name not in state:
      raise ValueError(
        f"the weights file has no {name!r}: not pytorch-fid's FID Inception "
        f'state dict ({FID_WEIGHTS_FILE})'
      )
    value = convert(np.asarray(state[name], np.float32))
    if value.shape != shape.shape:
      raise ValueError(
        f'{name!r} has shape {value.shape} after conversion; the FID Inception needs {shape.shape}'
      )
    flat[tuple(keys)] = value
  params: dict = {}
  for path_keys, value in flat.items():
    node = params
    for k in path_keys[:-1]:
      node = node.setdefault(k, {})
    node[path_keys[-1]] = jnp.asarray(value)
  return {'params': params}


def load_torch_weights(path: str | os.PathLike[str]) -> dict:
  """Reads pytorch-fid's `pt_inception-2015-12-05-6726825d.pth` into Flax params.

  No torch and no `pickle` module: `read_torch_state_dict` parses the file. A missing
  file is an error that says where to download it (nothing is downloaded here).
  """
  path = os.fspath(path)
  if not os.path.isfile(path):
    raise FileNotFoundError(
      f"Inception weights not found at {path!r}. Download pytorch-fid's FID Inception "
      f'weights once ({FID_WEIGHTS_URL}) and pass their path (config.inception_weights); '
      f'gm_jax does not download them.'
    )
  return torch_state_dict_to_params(read_torch_state_dict(path))
