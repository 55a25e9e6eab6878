"""A `torch.save`d state dict (a dict of tensors) read with NumPy, without torch and
without the `pickle` module.

`read_torch_state_dict(path) -> {name: np.ndarray}` is a stack machine over the handful
of pickle opcodes torch's pickler emits for dicts of tensors (protocol 2), which accepts
only the globals that rebuild tensors (`torch._utils._rebuild_tensor_v2`,
`torch.*Storage`, `collections.OrderedDict`) and fails on anything else. Both of torch's
file layouts are read: the zip archive (torch >= 1.6) and the older sequence of pickles.
Used for pytorch-fid's Inception weights (`gm_jax.evaluate.inception`).
"""

from __future__ import annotations

import io
import os
import struct
from typing import Any
import zipfile

import numpy as np

# A `torch.save`d state dict, read without `pickle`: a stack machine over the handful of
# opcodes that torch's pickler emits for dicts of tensors (protocol 2, as torch writes).

_DTYPES = {
  'FloatStorage': np.float32,
  'DoubleStorage': np.float64,
  'HalfStorage': np.float16,
  'LongStorage': np.int64,
  'IntStorage': np.int32,
  'ShortStorage': np.int16,
  'CharStorage': np.int8,
  'ByteStorage': np.uint8,
  'BoolStorage': np.bool_,
}
_STORAGE_DTYPES = {
  'float32': np.float32,
  'float64': np.float64,
  'float16': np.float16,
  'int64': np.int64,
  'int32': np.int32,
  'int16': np.int16,
  'int8': np.int8,
  'uint8': np.uint8,
  'bool': np.bool_,
}


class _Global:
  """A global the reader accepts; called by REDUCE with its arguments."""

  def __init__(self, module: str, name: str):
    self.module, self.name = module, name

  def __repr__(self):
    return f'{self.module}.{self.name}'


class _Storage:
  def __init__(self, key: str, dtype):
    self.key, self.dtype = key, dtype
    self.data: np.ndarray | None = None


def _allowed_global(module: str, name: str) -> _Global:
  ok = (
    (module == 'collections' and name == 'OrderedDict')
    or (module == 'torch._utils' and name in ('_rebuild_tensor_v2', '_rebuild_tensor'))
    or (module == 'torch' and name in _DTYPES)
  )
  if not ok:
    raise ValueError(
      f'refusing to load {module}.{name}: a state-dict file holds only tensors '
      f'(torch._utils._rebuild_tensor_v2, torch.*Storage, OrderedDict)'
    )
  return _Global(module, name)


class _Tensor:
  """A tensor whose storage bytes may arrive later (the legacy layout)."""

  def __init__(self, storage: _Storage, offset: int, size, stride):
    self.storage, self.offset, self.size, self.stride = storage, offset, tuple(size), tuple(stride)

  def array(self) -> np.ndarray:
    flat = self.storage.data
    if flat is None:
      raise ValueError(f'the weights file has no bytes for storage {self.storage.key!r}')
    if not self.size:
      return flat[self.offset].copy()
    itemsize = flat.dtype.itemsize
    return np.lib.stride_tricks.as_strided(
      flat[self.offset :], shape=self.size, strides=[s * itemsize for s in self.stride]
    ).copy()


def _reduce(func: _Global, args: tuple):
  if func.name == 'OrderedDict':
    return {}
  if func.name in ('_rebuild_tensor_v2', '_rebuild_tensor'):
    storage, offset, size, stride = args[:4]
    return _Tensor(storage, offset, size, stride)
  raise ValueError(f'cannot call {func!r}')


def _unpickle(f, persistent_load):
  """Runs one pickle from the binary stream `f` with the restricted globals."""
  stack: list = []
  marks: list = []
  memo: dict = {}

  def pop_mark():
    start = marks.pop()
    items = stack[start:]
    del stack[start:]
    return items

  def read_line():
    return f.readline()[:-1].decode('utf-8')

  while True:
    op = f.read(1)
    if not op:
      raise ValueError('truncated pickle in the weights file')
    code = op[0]
    if code == 0x80:  # PROTO
      f.read(1)
    elif code == 0x95:  # FRAME
      f.read(8)
    elif code == 0x2E:  # STOP
      return stack.pop()
    elif code == 0x63:  # GLOBAL
      module = read_line()
      stack.append(_allowed_global(module, read_line()))
    elif code == 0x93:  # STACK_GLOBAL
      name = stack.pop()
      stack.append(_allowed_global(stack.pop(), name))
    elif code == 0x28:  # MARK
      marks.append(len(stack))
    elif code == 0x29:  # EMPTY_TUPLE
      stack.append(())
    elif code == 0x74:  # TUPLE
      stack.append(tuple(pop_mark()))
    elif code in (0x85, 0x86, 0x87):  # TUPLE1, TUPLE2, TUPLE3
      n = code - 0x84
      items = tuple(stack[-n:])
      del stack[-n:]
      stack.append(items)
    elif code == 0x7D:  # EMPTY_DICT
      stack.append({})
    elif code == 0x5D:  # EMPTY_LIST
      stack.append([])
    elif code == 0x65:  # APPENDS
      items = pop_mark()
      stack[-1].extend(items)
    elif code == 0x61:  # APPEND
      item = stack.pop()
      stack[-1].append(item)
    elif code == 0x75:  # SETITEMS
      items = pop_mark()
      d = stack[-1]
      for i in range(0, len(items), 2):
        d[items[i]] = items[i + 1]
    elif code == 0x73:  # SETITEM
      v = stack.pop()
      k = stack.pop()
      stack[-1][k] = v
    elif code == 0x52:  # REDUCE
      args = stack.pop()
      func = stack.pop()
      if not isinstance(func, _Global):
        raise ValueError(f'REDUCE of a non-global {type(func).__name__}')
      stack.append(_reduce(func, args))
    elif code == 0x62:  # BUILD: an OrderedDict's `_metadata` attribute; dropped
      stack.pop()
    elif code == 0x51:  # BINPERSID
      stack.append(persistent_load(stack.pop()))
    elif code == 0x58:  # BINUNICODE
      (n,) = struct.unpack('<I', f.read(4))
      stack.append(f.read(n).decode('utf-8'))
    elif code == 0x8C:  # SHORT_BINUNICODE
      stack.append(f.read(f.read(1)[0]).decode('utf-8'))
    elif code == 0x55:  # SHORT_BINSTRING
      stack.append(f.read(f.read(1)[0]).decode('latin-1'))
    elif code == 0x4B:  # BININT1
      stack.append(f.read(1)[0])
    elif code == 0x4D:  # BININT2
      stack.append(struct.unpack('<H', f.read(2))[0])
    elif code == 0x4A:  # BININT
      stack.append(struct.unpack('<i', f.read(4))[0])
    elif code == 0x8A:  # LONG1
      n = f.read(1)[0]
      stack.append(int.from_bytes(f.read(n), 'little', signed=True))
    elif code == 0x47:  # BINFLOAT
      stack.append(struct.unpack('>d', f.read(8))[0])
    elif code == 0x4E:  # NONE
      stack.append(None)
    elif code == 0x88:  # NEWTRUE
      stack.append(True)
    elif code == 0x89:  # NEWFALSE
      stack.append(False)
    elif code == 0x71:  # BINPUT
      memo[f.read(1)[0]] = stack[-1]
    elif code == 0x72:  # LONG_BINPUT
      memo[struct.unpack('<I', f.read(4))[0]] = stack[-1]
    elif code == 0x94:  # MEMOIZE
      memo[len(memo)] = stack[-1]
    elif code == 0x68:  # BINGET
      stack.append(memo[f.read(1)[0]])
    elif code == 0x6A:  # LONG_BINGET
      stack.append(memo[struct.unpack('<I', f.read(4))[0]])
    else:
      raise ValueError(f'unsupported pickle opcode {op!r} in the weights file')


def _storage_dtype(kind) -> Any:
  if isinstance(kind, _Global):
    return _DTYPES[kind.name]
  raise ValueError(f'unexpected storage type {kind!r}')


def _tensors(obj) -> dict:
  if not isinstance(obj, dict):
    raise TypeError(f'the weights file holds a {type(obj).__name__}, not a state dict')
  return {k: v.array() for k, v in obj.items() if isinstance(v, _Tensor)}


def read_torch_state_dict(path: str | os.PathLike[str]) -> dict:
  """`{name: NumPy array}` of a `torch.save`d dict of tensors (zip or legacy layout)."""
  path = os.fspath(path)
  if zipfile.is_zipfile(path):
    with zipfile.ZipFile(path) as z:
      names = z.namelist()
      pkl = [n for n in names if n.endswith('/data.pkl') or n == 'data.pkl']
      if not pkl:
        raise ValueError(f'{path!r} is a zip file without data.pkl: not a torch file')
      prefix = pkl[0][: -len('data.pkl')]
      storages: dict = {}

      def persistent_load(pid):
        _, kind, key, _, numel = pid[:5]
        if key not in storages:
          s = _Storage(key, _storage_dtype(kind))
          s.data = np.frombuffer(z.read(f'{prefix}data/{key}'), s.dtype)[:numel]
          storages[key] = s
        return storages[key]

      return _tensors(_unpickle(io.BytesIO(z.read(pkl[0])), persistent_load))
  # Legacy layout: pickles of (magic, protocol, sys info, the object, storage keys), then
  # each storage as an int64 element count and its raw little-endian bytes.
  with open(path, 'rb') as f:
    storages = {}

    def legacy_persistent_load(pid):
      _, kind, key, _, _, view = pid[:6]
      if view is not None:
        raise ValueError('storage views are not supported in the weights file')
      if key not in storages:
        storages[key] = _Storage(key, _storage_dtype(kind))
      return storages[key]

    magic = _unpickle(f, legacy_persistent_load)
    if magic != 0x1950A86A20F9469CFC6C:
      raise ValueError(f'{path!r} is neither a zip nor a legacy torch file')
    _unpickle(f, legacy_persistent_load)  # protocol version
    _unpickle(f, legacy_persistent_load)  # sys info
    obj = _unpickle(f, legacy_persistent_load)
    for key in _unpickle(f, legacy_persistent_load):
      (numel,) = struct.unpack('<q', f.read(8))
      s = storages[key]
      s.data = np.frombuffer(f.read(numel * np.dtype(s.dtype).itemsize), s.dtype)
    return _tensors(obj)
