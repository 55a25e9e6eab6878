"""Writes a `{name: array}` state dict in torch's zip layout without torch (test weights).

The pickle stream is written opcode by opcode, as `torch.save` writes a dict of tensors:
`_rebuild_tensor_v2(persistent storage, offset, size, stride, requires_grad, OrderedDict())`
per entry; each storage's bytes are the archive's `data/<key>` file.
"""

import struct
import zipfile

import numpy as np

_STORAGES = {np.dtype(np.float32): 'FloatStorage', np.dtype(np.int64): 'LongStorage'}


def _str(s: str) -> bytes:
  b = s.encode()
  return b'X' + struct.pack('<I', len(b)) + b


def _int(i: int) -> bytes:
  return b'J' + struct.pack('<i', i)


def _tuple(items) -> bytes:
  return b'(' + b''.join(_int(int(i)) for i in items) + b't'


def write_state_dict(path: str, arrays: dict) -> None:
  pkl = [b'\x80\x02}(']
  blobs = {}
  for i, (name, value) in enumerate(arrays.items()):
    a = np.ascontiguousarray(value)
    key = str(i)
    blobs[key] = a.tobytes()
    strides = [s // a.itemsize for s in a.strides]
    pkl += [
      _str(name),
      b'ctorch._utils\n_rebuild_tensor_v2\n(',
      b'(',
      _str('storage'),
      b'ctorch\n' + _STORAGES[a.dtype].encode() + b'\n',
      _str(key),
      _str('cpu'),
      _int(a.size),
      b'tQ',
      _int(0),
      _tuple(a.shape),
      _tuple(strides),
      b'\x89',
      b'ccollections\nOrderedDict\n)R',
      b'tR',
    ]
  pkl.append(b'u.')
  with zipfile.ZipFile(path, 'w', zipfile.ZIP_STORED) as z:
    z.writestr('archive/data.pkl', b''.join(pkl))
    z.writestr('archive/byteorder', 'little')
    for key, blob in blobs.items():
      z.writestr(f'archive/data/{key}', blob)
    z.writestr('archive/version', '3\n')


def random_params(seed: int) -> dict:
  """Random FID-Inception params whose features vary with the input: variance-preserving
  convolutions and BatchNorm statistics away from the identity."""
  import jax

  from gm_jax.evaluate import inception

  rng = np.random.default_rng(seed)
  shapes = jax.eval_shape(inception.init_params, jax.random.key(0))

  def draw(path, leaf):
    name = path[-1].key
    if name == 'kernel':
      fan_in = int(np.prod(leaf.shape[:-1]))
      return (rng.normal(size=leaf.shape) * np.sqrt(2.0 / fan_in)).astype(np.float32)
    if name in ('scale', 'var'):
      return rng.uniform(0.5, 1.5, leaf.shape).astype(np.float32)
    return (0.1 * rng.normal(size=leaf.shape)).astype(np.float32)

  return jax.tree_util.tree_map_with_path(draw, shapes)


def params_to_state_dict(params: dict) -> dict:
  """Flax `inception` params -> pytorch-fid's names and layouts (inverse of the loader)."""
  out = {}

  def walk(node, prefix):
    for k, v in node.items():
      if isinstance(v, dict):
        walk(v, prefix + [k])
        continue
      v = np.asarray(v, np.float32)
      if prefix[-1] == 'conv':
        out['.'.join(prefix + ['weight'])] = v.transpose(3, 2, 0, 1)
      elif prefix[-1] == 'bn':
        name = {'scale': 'weight', 'bias': 'bias', 'mean': 'running_mean', 'var': 'running_var'}[k]
        out['.'.join(prefix + [name])] = v
        if k == 'var':
          out['.'.join(prefix + ['num_batches_tracked'])] = np.array(0, np.int64)
      elif k == 'kernel':
        out['.'.join(prefix + ['weight'])] = v.T
      else:
        out['.'.join(prefix + [k])] = v

  walk(params['params'], [])
  return out
