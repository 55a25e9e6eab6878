"""Train-step throughput of `none`, `pmap` and `sharding` on the available devices.

    python benchmarks/data_parallel.py [--model vae] [--architecture conv] \
        [--dataset digits] [--per_device_batch 64] [--steps 100]
    # CPU, to try the parallel modes without accelerators:
    XLA_FLAGS=--xla_force_host_platform_device_count=4 python benchmarks/data_parallel.py

Runs the trainer's own step (`gm_jax.train.loop.make_train_step` wrapped by
`gm_jax.parallel`), including the host-to-device copy of every batch, on random
images shaped like `--dataset` (no data download). `pmap` and `sharding` use every
device with a global batch of `per_device_batch * device_count`; `none` runs the same
global batch on one device. Prints one JSON line per mode, then one line comparing
`pmap` with `sharding`. By default every step's loss is read back before the next
step starts (`--in_flight 0`; the trainer itself reads nothing back between logs).
`--in_flight K` (K >= 1) instead lets the host run K steps ahead: before dispatching
step i + 1 it waits only for step i - K, and every loss is checked for NaN at the end.
With several values, e.g. `--in_flight 0,1,16`, each mode runs under each and a last
line gives the ratios to the first. `--set FIELD=VALUE`
overrides a config field (a Python literal). On one H100 (jax 0.11.2, 2026-11-28) 16
steps ahead over 1 step ahead was 1.02 for the IWAE paper row's step (k = 50, batch
250, ~980 steps/s), 1.06 for the ELBO step at batch 500 and 0.74 at batch 100
(benchmarks/results/data_parallel_in_flight_h100.jsonl); 0 (what the trainer did then) was not
measured there. The IWAE row:

    python benchmarks/data_parallel.py --model vae --architecture mlp --dataset binarized_mnist \
        --per_device_batch 250 --modes none --in_flight 0,1,16 --set likelihood="'bernoulli'" \
        --set objective="'iwae'" --set iwae_train_samples=50 --set hidden='(200,200)' \
        --set activation="'tanh'" --set latent_dim=50

Timings exclude compilation (a warm-up of `--warmup` steps); the runs take turns
`--repeats` times and each one's best is reported. The code lives in
`gm_jax.bench.parallel_modes_main`; `python -m gm_jax.bench` times any config bare and
under the trainer (steps/s, FLOPs, MFU).
"""

from gm_jax import bench  # sets the XLA CPU flags before JAX starts


def main():
  bench.parallel_modes_main(doc=__doc__)


if __name__ == '__main__':
  main()
