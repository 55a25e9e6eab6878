"""Data-parallel evaluation on 4 CPU devices: validation (`parallel.ShardedEval`) and the
test split (`parallel.map_examples`, every likelihood family's `evaluate`).

Validation and test batches are split over all devices (each process its own rows)
instead of evaluated whole on one device of every host; the numbers must equal the
single-device ones up to float summation order, for batches that split over the
devices and for ones that do not (run replicated). `worker` runs in the 4-device
subprocess of tests/four_devices.py, where `--xla_force_host_platform_device_count=4`
can still take effect.
"""

import os

import numpy as np
import pytest

from tests import four_devices

# One pytest worker computes the 4-device report for all of this module's tests and
# the other modules that read it (`--dist loadgroup`).
pytestmark = four_devices.GROUP


def worker(workdir: str) -> dict:
  """This module's numbers, in the 4-device subprocess."""
  import jax
  import jax.numpy as jnp

  from gm_jax import parallel
  from gm_jax.train import loop
  from gm_jax.train import validation
  from tests.train import test_loop

  out = {'device_count': jax.device_count()}
  # ShardedEval itself: batch means of a function that uses its key.
  ev = parallel.ShardedEval(
    lambda p, b, k: {'m': jnp.mean(b['x'] * p['s']) + jax.random.uniform(k)}
  )
  params = ev.replicate({'s': np.float32(2.0)})
  key = jax.random.key(7)
  for n in (8, 6):  # splits over 4 devices / ragged: replicated
    x = np.arange(n, dtype=np.float32)
    got = ev(params, {'x': x}, key)
    out[f'direct-{n}'] = [
      float(np.asarray(got['m'].addressable_data(0))),
      float(np.mean(x * 2.0) + jax.random.uniform(key)),
    ]
  impl = str(jax.random.key_impl(key))
  batch = {'x': jax.make_array_from_process_local_data(ev._rows, np.zeros(8, np.float32))}
  kd = ev.replicate(np.asarray(jax.random.key_data(key)))
  compiled = ev._jit(True, impl).lower(params, batch, kd).compile()
  out['batch_spec'] = list(compiled.input_shardings[0][1]['x'].spec)
  out['batch_devices'] = len(compiled.input_shardings[0][1]['x'].device_set)
  # The loop's validation in each mode (16 validation rows: batches 8+8, 6+6+4).
  for mode in ('none', 'pmap', 'sharding'):
    for size in (8, 6):
      config = test_loop._config(parallel=mode, eval_batch_size=size)
      s, state = loop._prepare(
        config,
        os.path.join(workdir, f'{mode}-{size}'),
        test_loop._toy_family(),
        test_loop._toy_splits(),
      )
      out[f'{mode}-{size}'] = validation.validate(s, state['params'])['mse']
  out['map_examples'] = _map_examples_report()
  out['families'] = _family_test_numbers()
  return out


def _map_examples_report() -> dict:
  """`map_examples` of a per-example function that uses its key, against NumPy."""
  import jax

  from gm_jax import parallel
  from gm_jax.parallel import evaluation

  fn = lambda p, b, k: {
    'y': b['x'] * p['s'] + jax.random.uniform(k, b['x'].shape),
    'z': b['x'][:, None] * 0 + 1,
  }
  x = np.arange(10, dtype=np.float32) + 1
  key = jax.random.key(3)
  out = {}
  for size in (4, 6):  # 4 splits over 4 devices; 6 does not (replicated)
    # NumPy: rows [4i, 4i + 4) of x, padded with zeros, key fold_in(key, i).
    want = np.concatenate(
      [
        (
          np.pad(x[s : s + size], (0, size - len(x[s : s + size]))) * 2.0
          + np.asarray(jax.random.uniform(jax.random.fold_in(key, i), (size,)))
        )[: len(x[s : s + size])]
        for i, s in enumerate(range(0, len(x), size))
      ]
    )
    for name, mesh in (('none', None), ('mesh', parallel.eval_mesh('sharding'))):
      got = parallel.map_examples(
        fn, {'s': np.float32(2.0)}, {'x': x}, key, batch_size=size, mesh=mesh
      )
      out[f'{name}-{size}'] = {
        'err': float(np.max(np.abs(got['y'] - want))),
        'shapes': [list(got['y'].shape), list(got['z'].shape)],
      }
  mesh = parallel.eval_mesh('sharding')
  run = evaluation._compiled(fn, mesh, True, 'threefry2x32')
  args = (
    {'s': np.float32(2.0)},
    {'x': np.zeros(4, np.float32)},
    np.asarray(jax.random.key_data(key)),
    np.int32(0),
  )
  batch_sharding = run.lower(*args).compile().input_shardings[0][1]['x']
  out['batch_spec'] = list(batch_sharding.spec)
  out['batch_devices'] = len(batch_sharding.device_set)
  return out


# Each family's test evaluation on 20 random digits-shaped images (batches of 8 split
# over the 4 devices, the last one padded; batches of 6 run replicated), under
# `parallel='none'` and `'sharding'`. One model per evaluation code path: the latent
# core (CVAE: images and labels), the autoregressive NLL, the flows' dequantisation
# bound, the VDM bound and the flow-matching ODE likelihood.
EVAL_MODELS = ('cvae', 'pixelcnn', 'realnvp', 'diffusion', 'flow_matching')
# Batch sizes per model. The replicated fallback is `map_examples`' own (checked above on
# its own and here through two families); each new batch shape compiles a family's
# evaluation twice more (measured, cold: flow matching 13.2, diffusion 5.9, CVAE 5.6 CPU-s
# for both sizes; PixelCNN and RealNVP about 1 each).
EVAL_SIZES = {
  'cvae': (8,),
  'pixelcnn': (8, 6),
  'realnvp': (8, 6),
  'diffusion': (8,),
  'flow_matching': (8,),
}


def _family_test_numbers() -> dict:
  import dataclasses

  import jax

  from gm_jax import data as gm_data
  from gm_jax import families
  from tests.parallel import test_data_parallel

  info = gm_data.get_info('digits')
  rng = np.random.default_rng(0)
  arrays = {
    'image': rng.integers(0, info.num_levels, (20,) + info.shape).astype(np.uint8),
    'label': rng.integers(0, info.num_classes, 20).astype(np.int32),
  }
  out = {}
  for model in EVAL_MODELS:
    config = test_data_parallel._tiny_config(model)
    config.update(
      {
        k: v
        for k, v in dict(
          iwae_samples=3,
          eval_dequant_samples=2,
          eval_bound_samples=2,
          likelihood_steps=2,
          channels=8,
          channel_mults=(1,),
          num_res_blocks=1,
          attention=False,
          timing_samplers=(),
        ).items()
        if k in config
      }
    )
    # Diffusion without classes: its evaluate then stops at the likelihood (no FID).
    model_info = info if model == 'cvae' else dataclasses.replace(info, num_classes=0)
    splits = gm_data.Splits(train=arrays, validation=arrays, test=arrays, info=model_info)
    family = families.module_for(model).make_family(config, model_info)
    params = family.init(jax.random.key(0), {k: v[:8] for k, v in arrays.items()})
    for size in EVAL_SIZES[model]:
      for mode in ('none', 'sharding'):
        config.parallel = mode
        for field in ('iwae_batch_size', 'eval_batch_size', 'likelihood_batch_size'):
          config[field] = size
        res = family.evaluate(params, splits, jax.random.key(1), config)
        out[f'{model}/{mode}-{size}'] = {
          k: v for k, v in res.items() if isinstance(v, float) and 'per_s' not in k
        }
  return out


@pytest.fixture(scope='module')
def report(tmp_path_factory):
  return four_devices.report(tmp_path_factory)['sharded_eval']


def test_validation_is_split_over_the_devices_and_matches_one_device(report):
  assert report['device_count'] == 4
  for n in (8, 6):
    got, want = report[f'direct-{n}']
    np.testing.assert_allclose(got, want, rtol=1e-6)
  assert report['batch_spec'] == ['data'] and report['batch_devices'] == 4
  for size in (8, 6):
    want = report[f'none-{size}']
    for mode in ('pmap', 'sharding'):
      np.testing.assert_allclose(report[f'{mode}-{size}'], want, rtol=1e-6, err_msg=mode)


def test_map_examples_splits_test_batches_over_the_devices(report):
  got = report['map_examples']
  assert got['batch_spec'] == ['data'] and got['batch_devices'] == 4
  for key in ('none-4', 'mesh-4', 'none-6', 'mesh-6'):
    assert got[key]['err'] < 1e-6, (key, got[key])
    assert got[key]['shapes'] == [[10], [10, 1]], (key, got[key])  # padded rows dropped


@pytest.mark.parametrize('model', EVAL_MODELS)
def test_family_test_numbers_match_one_device(report, model):
  numbers = report['families']
  assert {k.split('/')[0] for k in numbers} == set(EVAL_MODELS)
  for size in EVAL_SIZES[model]:
    want, got = numbers[f'{model}/none-{size}'], numbers[f'{model}/sharding-{size}']
    assert set(got) == set(want) and 'test_nll_nats' in want, (got, want)
    for name in want:
      np.testing.assert_allclose(
        got[name], want[name], rtol=1e-5, atol=1e-6, err_msg=f'{model} {name} batch {size}'
      )
