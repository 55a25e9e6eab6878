"""`loop.run` end to end under none | pmap | sharding on 4 CPU devices.

The data-parallel step itself is checked family by family in tests/parallel; this file
checks what the loop adds around it: chunks of `steps_per_loop` steps laid out per
device, batches gathered on the devices from resident data or put there by the host,
and checkpoints/metrics of the replicated state, the EMA parameters included. `worker`
runs in the 4-device subprocess of tests/four_devices.py, where
`--xla_force_host_platform_device_count=4` can still take effect.
"""

import os

import numpy as np
import pytest

from tests import four_devices

NUM_DEVICES = 4
pytestmark = four_devices.GROUP


# One checkpoint a run, at its end (the parameters compared are the final ones): a save
# every 4 of the 12 steps cost 3 orbax writes a run, 36 in all.
_ONE_SAVE = dict(checkpoint_every=12)


def worker(workdir: str) -> dict:
  """Every mode's and chunking's run, in the 4-device subprocess."""
  import jax

  from gm_jax.train import loop
  from tests.train import test_loop

  out = {'device_count': jax.device_count()}
  for mode in ('none', 'pmap', 'sharding'):
    for k, resident in ((1, True), (2, True), (2, False)):
      name = f'{mode}-{k}-{"device" if resident else "host"}'
      config = test_loop._config(
        parallel=mode,
        steps_per_loop=k,
        log_every=4,
        device_data_max_bytes=(1 << 30) if resident else 0,
        **_ONE_SAVE,
      )
      res = loop.run(
        config, os.path.join(workdir, name), test_loop._toy_family(), test_loop._toy_splits()
      )
      _, params = test_loop._final_params(os.path.join(workdir, name))
      out[name] = {
        'w': np.asarray(params['params']['w']).tolist(),
        'best_step': res['best_step'],
        'w0': res['w0'],
      }
    # EMA (config.ema_decay): the average is updated inside each device's step.
    name = f'{mode}-2-ema'
    config = test_loop._config(
      parallel=mode, steps_per_loop=2, log_every=4, ema_decay=0.9, **_ONE_SAVE
    )
    res = loop.run(
      config, os.path.join(workdir, name), test_loop._toy_family(), test_loop._toy_splits()
    )
    _, params = test_loop._final_params(os.path.join(workdir, name))
    out[name] = {
      'w': np.asarray(params['ema_params']['w']).tolist(),
      'best_step': res['best_step'],
      'w0': res['w0'],
    }
  return out


@pytest.mark.slow
def test_every_mode_and_chunking_trains_the_same_parameters(tmp_path_factory):
  report = dict(four_devices.report(tmp_path_factory)['loop_parallel'])
  assert report.pop('device_count') == NUM_DEVICES
  reference = report.pop('none-1-device')
  ema_reference = report.pop('none-2-ema')
  for name in ('pmap-2-ema', 'sharding-2-ema'):
    got = report.pop(name)
    np.testing.assert_allclose(got['w'], ema_reference['w'], rtol=1e-5, atol=1e-6, err_msg=name)
    assert got['best_step'] == ema_reference['best_step'], name
    assert got['w0'] == pytest.approx(ema_reference['w0'], rel=1e-5, abs=1e-6), name
  assert len(report) == 8
  for name, got in report.items():
    # The same step-determined batches and per-group keys: equal up to float summation order.
    np.testing.assert_allclose(got['w'], reference['w'], rtol=1e-5, atol=1e-6, err_msg=name)
    assert got['best_step'] == reference['best_step'], name
