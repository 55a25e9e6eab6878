"""`loop.run` end to end under none | pmap | sharding on 4 CPU devices.

The data-parallel step itself is checked family by family in tests/parallel; this file
checks what the loop adds around it: chunks of `steps_per_loop` steps laid out per
device, batches gathered on the devices from resident data or put there by the host,
and checkpoints/metrics of the replicated state. It runs itself as a script in a
subprocess, where `--xla_force_host_platform_device_count=4` can still take effect.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

NUM_DEVICES = 4
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# The suite's fast-compile XLA flags (tests/conftest.py), passed on to the subprocesses.
FLAGS = os.environ.get('XLA_FLAGS', '')


def _runs(workdir: str) -> dict:
  import jax  # pylint: disable=g-import-not-at-top
  from tests.train import test_loop  # pylint: disable=g-import-not-at-top
  from gm_jax.train import loop  # pylint: disable=g-import-not-at-top
  out = {'device_count': jax.device_count()}
  for mode in ('none', 'pmap', 'sharding'):
    for k, resident in ((1, True), (2, True), (2, False)):
      name = f'{mode}-{k}-{"device" if resident else "host"}'
      config = test_loop._config(parallel=mode, steps_per_loop=k, log_every=4,
                                 device_data_max_bytes=(1 << 30) if resident else 0)
      res = loop.run(config, os.path.join(workdir, name), test_loop._toy_family(),
                     test_loop._toy_splits())
      _, params = test_loop._final_params(os.path.join(workdir, name))
      out[name] = {'w': np.asarray(params['params']['w']).tolist(),
                   'best_step': res['best_step'], 'w0': res['w0']}
  return out


@pytest.mark.slow
def test_every_mode_and_chunking_trains_the_same_parameters(tmp_path):
  env = dict(os.environ, XLA_FLAGS=f'{FLAGS} --xla_force_host_platform_device_count={NUM_DEVICES}',
             JAX_PLATFORMS='cpu', PYTHONPATH=REPO)
  proc = subprocess.run([sys.executable, __file__, str(tmp_path)], cwd=REPO, env=env,
                        capture_output=True, text=True, timeout=600, check=False)
  assert proc.returncode == 0, proc.stderr[-3000:]
  report = json.loads(proc.stdout.strip().splitlines()[-1])
  assert report.pop('device_count') == NUM_DEVICES
  reference = report.pop('none-1-device')
  assert len(report) == 8
  for name, got in report.items():
    # The same step-determined batches and per-group keys: equal up to float summation order.
    np.testing.assert_allclose(got['w'], reference['w'], rtol=1e-5, atol=1e-6, err_msg=name)
    assert got['best_step'] == reference['best_step'], name


if __name__ == '__main__':
  print(json.dumps(_runs(sys.argv[1])))
