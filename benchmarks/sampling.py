"""Naive vs cached autoregressive sampling speed (`gm_jax.sampling.sample`).

    python benchmarks/sampling.py [--batch 1] [--only pixelcnn,char_lm]

Prints one JSON line per model with `naive_samples_per_s`, `cached_samples_per_s` and
`speedup`: PixelCNN (sizes of configs/pixelcnn.py) on 28x28 single-channel images with
256 levels, and the character model (configs/char_lm.py) generating 1,000 bytes. The
parameters are random (speed does not depend on them). Each sampler is compiled and run
once first; the timed call blocks on its result. Both methods draw the same samples
for the same key, which the script also checks.
"""

from gm_jax import _xla

_xla.configure_cpu_flags()

import argparse
import json
import os
import platform
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from configs import char_lm as char_lm_config
from configs import pixelcnn as pixelcnn_config
from gm_jax import sampling
from gm_jax.models import autoregressive as ar_lib


def _time(model, params, shape, method):
  key = jax.random.key(0)
  t0 = time.perf_counter()
  first = np.asarray(sampling.sample(model, params, key, shape, method=method))
  compile_and_run = time.perf_counter() - t0
  t0 = time.perf_counter()
  again = sampling.sample(model, params, key, shape, method=method)
  again.block_until_ready()
  seconds = time.perf_counter() - t0
  return first, seconds, compile_and_run - seconds


def bench(name, model, example, shape):
  params = jax.jit(model.init)(jax.random.key(0), example)
  row = {'model': name, 'shape': list(shape), 'positions': int(np.prod(shape[1:]))}
  samples = {}
  for method in ('naive', 'cached'):
    samples[method], seconds, compile_s = _time(model, params, shape, method)
    row[f'{method}_seconds'] = round(seconds, 3)
    row[f'{method}_compile_seconds'] = round(compile_s, 1)
    row[f'{method}_samples_per_s'] = shape[0] / seconds
  row['speedup'] = row['cached_samples_per_s'] / row['naive_samples_per_s']
  row['identical_samples'] = bool(np.array_equal(samples['naive'], samples['cached']))
  row.update(backend=jax.default_backend(), cpu_count=os.cpu_count(), machine=platform.machine())
  print(json.dumps(row), flush=True)
  return row


def main():
  p = argparse.ArgumentParser()
  p.add_argument('--batch', type=int, default=1)
  p.add_argument('--size', type=int, default=28, help='PixelCNN image side')
  p.add_argument('--length', type=int, default=1000, help='characters to generate')
  p.add_argument('--only', default='pixelcnn,char_lm')
  args = p.parse_args()
  only = args.only.split(',')
  if 'pixelcnn' in only:
    c = pixelcnn_config.get_config()
    model = ar_lib.PixelCNN(
      num_levels=256,
      num_channels=1,
      features=c.channels,
      num_layers=c.num_layers,
      kernel_size=c.kernel_size,
    )
    shape = (args.batch, args.size, args.size, 1)
    bench(f'pixelcnn_{args.size}x{args.size}', model, jnp.zeros(shape, jnp.int32), shape)
  if 'char_lm' in only:
    c = char_lm_config.get_config()
    model = ar_lib.CausalConvLM(
      vocab_size=256, channels=c.channels, dilations=tuple(c.dilations), kernel_size=c.kernel_size
    )
    shape = (args.batch, args.length)
    bench(f'char_lm_{args.length}', model, jnp.zeros((1, 8), jnp.int32), shape)


if __name__ == '__main__':
  main()
