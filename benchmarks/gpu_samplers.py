"""The sampler suite under `jit` on an accelerator: samples/s of each sampler of
`gm_jax.sampling.SAMPLERS` on the EDM digits U-Net (random weights: speed, not quality).

    python benchmarks/gpu_samplers.py --out rows.jsonl [--batch 256] [--steps 10]

One JSON row per sampler: `sampler`, `steps`, `nfe`, `batch`, `samples_per_s` (best of
three timed calls after a compiling one), `device_kind`, `jax_version`. Part of
`benchmarks/gpu_check.sh` (issue #42); runs on CPU too (small `--batch`).
"""

from gm_jax import _xla

_xla.configure_cpu_flags()

import argparse
import json
import os
import time

import jax
import jax.numpy as jnp

from gm_jax import families
from gm_jax import sampling
from gm_jax.data import get_info
from gm_jax.demo import load_config
from gm_jax.models import edm as edm_lib


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--out', required=True)
  parser.add_argument('--batch', type=int, default=256)
  parser.add_argument('--steps', type=int, default=10)
  args = parser.parse_args(argv)
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  config = families.complete(load_config(os.path.join(root, 'configs', 'edm.py')))
  info = get_info(config.dataset)
  module = families.module_for('edm')
  model = module.build_model(config, info)
  x0 = jnp.zeros((1,) + tuple(info.shape), jnp.float32)
  params = model.init(jax.random.key(0), x0, jnp.ones((1,), jnp.float32))
  denoise = edm_lib.edm_denoiser(model, params, None)
  sigmas = sampling.karras_sigmas(
    args.steps, sigma_min=edm_lib.SIGMA_MIN, sigma_max=edm_lib.SIGMA_MAX
  )
  with open(args.out, 'a') as f:
    for name in sorted(sampling.SAMPLERS):
      fn = sampling.get_sampler(name)
      draw = jax.jit(
        lambda key, fn=fn: fn(
          denoise,
          sigmas[0] * jax.random.normal(key, (args.batch,) + tuple(info.shape)),
          sigmas,
          key=key,
        )
      )
      jax.block_until_ready(draw(jax.random.key(1)))  # compiles
      best = float('inf')
      for i in range(3):
        start = time.perf_counter()
        jax.block_until_ready(draw(jax.random.key(2 + i)))
        best = min(best, time.perf_counter() - start)
      row = {
        'sampler': name,
        'steps': args.steps,
        'nfe': sampling.nfe(name, args.steps),
        'batch': args.batch,
        'samples_per_s': args.batch / best,
        'device_kind': jax.devices()[0].device_kind,
        'jax_version': jax.__version__,
      }
      f.write(json.dumps(row) + '\n')
      print(json.dumps(row), flush=True)


if __name__ == '__main__':
  main()
