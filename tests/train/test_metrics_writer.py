"""The metrics writer's TensorBoard events come from tensorboardX without importing torch."""

import os
import struct
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

_CODE = """
import os, sys
from gm_jax.train import metrics
w = metrics.MetricWriter(sys.argv[1])
w.write(3, {'loss': 2.5})
w._tb.flush()
print('torch loaded' if 'torch' in sys.modules else 'no torch')
try:
  import torch
  print('torch imports' if torch.zeros(2).sum().item() == 0.0 else 'bad torch')
except ImportError:
  print('torch imports')  # not installed: nothing was hidden
"""


def test_events_are_written_and_torch_is_neither_loaded_nor_hidden(tmp_path):
  out = subprocess.run(
    [sys.executable, '-c', _CODE, str(tmp_path)],
    capture_output=True,
    text=True,
    check=True,
    cwd=ROOT,
  ).stdout.split('\n')
  assert out[:2] == ['no torch', 'torch imports'], out
  (events,) = [f for f in os.listdir(tmp_path) if f.startswith('events.out.tfevents')]
  data = (tmp_path / events).read_bytes()
  # TFRecord framing: the first record's length, then the Event protos; the scalar's tag
  # and value are in the second record.
  (first_len,) = struct.unpack('<Q', data[:8])
  rest = data[8 + 4 + first_len + 4 :]
  assert b'loss' in rest and struct.pack('<f', 2.5) in rest
