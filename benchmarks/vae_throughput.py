"""VAE throughput on the embedded digits: train steps/s, samples/s, IWAE examples/s.

    python benchmarks/vae_throughput.py [--steps 300] [--batch_size 64] [--architecture mlp]

Prints one JSON object. Timings exclude compilation (each function is run once first)
and block on the result (`block_until_ready`).
"""

from gm_jax import _xla

_xla.configure_cpu_flags()

# pylint: disable=g-import-not-at-top,wrong-import-position
import argparse
import json
import os
import platform
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from gm_jax import data as gm_data
from gm_jax.models import vae as vae_lib


def main():
  p = argparse.ArgumentParser()
  p.add_argument('--steps', type=int, default=300)
  p.add_argument('--batch_size', type=int, default=64)
  p.add_argument('--architecture', default='mlp', choices=['mlp', 'conv'])
  p.add_argument('--iwae_samples', type=int, default=1000)
  p.add_argument('--data_dir', default=None)
  args = p.parse_args()

  splits = gm_data.load_splits('digits', data_dir=args.data_dir)
  info = splits.info
  model = vae_lib.VAE(image_shape=info.shape, num_levels=info.num_levels, latent_dim=16,
                      architecture=args.architecture, dropout_rate=0.3)
  batch0 = gm_data.batch_at_step(splits.train, 0, batch_size=args.batch_size, seed=0)
  params = model.init(jax.random.key(0), jnp.asarray(batch0['image']))
  tx = optax.adam(1e-3)
  opt_state = tx.init(params)

  @jax.jit
  def step(params, opt_state, x, key):
    def loss_fn(p):
      return -jnp.mean(vae_lib.elbo_terms(model, p, x, None, key, train=True)['elbo'])
    loss, g = jax.value_and_grad(loss_fn)(params)
    updates, opt_state = tx.update(g, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss

  batches = [jnp.asarray(gm_data.batch_at_step(splits.train, s, batch_size=args.batch_size,
                                               seed=0)['image']) for s in range(args.steps)]
  params, opt_state, loss = step(params, opt_state, batches[0], jax.random.key(1))
  loss.block_until_ready()
  t0 = time.perf_counter()
  for s in range(args.steps):
    params, opt_state, loss = step(params, opt_state, batches[s], jax.random.key(s))
  loss.block_until_ready()
  train_s = time.perf_counter() - t0

  sample = jax.jit(lambda p, k: vae_lib.sample_prior(model, p, k, 1024))
  sample(params, jax.random.key(0)).block_until_ready()
  t0 = time.perf_counter()
  for i in range(10):
    out = sample(params, jax.random.key(i))
  out.block_until_ready()
  sample_s = time.perf_counter() - t0

  x = jnp.asarray(splits.test['image'][:120])
  vae_lib.iwae_estimate(model, params, x, None, jax.random.key(0),
                        num_samples=args.iwae_samples).block_until_ready()
  t0 = time.perf_counter()
  vae_lib.iwae_estimate(model, params, x, None, jax.random.key(1),
                        num_samples=args.iwae_samples).block_until_ready()
  iwae_s = time.perf_counter() - t0

  print(json.dumps({
      'benchmark': 'vae_throughput', 'architecture': args.architecture,
      'batch_size': args.batch_size, 'train_steps_per_s': args.steps / train_s,
      'train_examples_per_s': args.steps * args.batch_size / train_s,
      'samples_per_s': 10 * 1024 / sample_s,
      f'iwae{args.iwae_samples}_examples_per_s': 120 / iwae_s,
      'device': str(jax.devices()[0]), 'cpu_count': os.cpu_count(),
      'jax': jax.__version__, 'python': platform.python_version(),
      'xla_flags': os.environ.get('XLA_FLAGS', ''),
  }, indent=2))


if __name__ == '__main__':
  main()
