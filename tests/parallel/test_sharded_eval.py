"""`parallel.ShardedEval` and the loop's validation under pmap/sharding, on 4 CPU devices.

Validation splits each batch over all devices (each process its own rows) instead of
evaluating every batch on one device of every host; the metrics must equal the
single-device ones up to float summation order, for batches that split over the
devices and for a ragged last batch (run replicated). Runs itself in a subprocess,
where `--xla_force_host_platform_device_count=4` can still take effect.
"""

import json
import os
import sys

import numpy as np

from tests import multidevice



def _report(workdir: str) -> dict:
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  from gm_jax import parallel  # pylint: disable=g-import-not-at-top
  from gm_jax.train import loop  # pylint: disable=g-import-not-at-top
  from tests.train import test_loop  # pylint: disable=g-import-not-at-top

  out = {'device_count': jax.device_count()}
  # ShardedEval itself: batch means of a function that uses its key.
  ev = parallel.ShardedEval(
      lambda p, b, k: {'m': jnp.mean(b['x'] * p['s']) + jax.random.uniform(k)})
  params = ev.replicate({'s': np.float32(2.0)})
  key = jax.random.key(7)
  for n in (8, 6):  # splits over 4 devices / ragged: replicated
    x = np.arange(n, dtype=np.float32)
    got = ev(params, {'x': x}, key)
    out[f'direct-{n}'] = [float(np.asarray(got['m'].addressable_data(0))),
                          float(np.mean(x * 2.0) + jax.random.uniform(key))]
  impl = str(jax.random.key_impl(key))
  batch = {'x': jax.make_array_from_process_local_data(ev._rows, np.zeros(8, np.float32))}  # pylint: disable=protected-access
  kd = ev.replicate(np.asarray(jax.random.key_data(key)))
  compiled = ev._jit(True, impl).lower(params, batch, kd).compile()  # pylint: disable=protected-access
  out['batch_spec'] = list(compiled.input_shardings[0][1]['x'].spec)
  out['batch_devices'] = len(compiled.input_shardings[0][1]['x'].device_set)
  # The loop's validation in each mode (16 validation rows: batches 8+8, 6+6+4).
  for mode in ('none', 'pmap', 'sharding'):
    for size in (8, 6):
      config = test_loop._config(parallel=mode, eval_batch_size=size)
      s, state = loop._prepare(config, os.path.join(workdir, f'{mode}-{size}'),  # pylint: disable=protected-access
                               test_loop._toy_family(), test_loop._toy_splits())
      out[f'{mode}-{size}'] = loop._validate(s, state['params'])['mse']  # pylint: disable=protected-access
  return out


def test_validation_is_split_over_the_devices_and_matches_one_device(tmp_path):
  report = multidevice.run_report(__file__, [str(tmp_path)], 4)
  assert report['device_count'] == 4
  for n in (8, 6):
    got, want = report[f'direct-{n}']
    np.testing.assert_allclose(got, want, rtol=1e-6)
  assert report['batch_spec'] == ['data'] and report['batch_devices'] == 4
  for size in (8, 6):
    want = report[f'none-{size}']
    for mode in ('pmap', 'sharding'):
      np.testing.assert_allclose(report[f'{mode}-{size}'], want, rtol=1e-6, err_msg=mode)


if __name__ == '__main__':
  print(json.dumps(_report(sys.argv[1])))
