"""PyTorch replicas of gm_jax's models, for `benchmarks/train_step.py` (extra `[bench]`).

Each module `<family>.py` exposes

    make_step(config, info, batch) -> (step, module)

where `config` / `info` are what `gm_jax.families.<family>.make_family(config, info)` takes
and `batch` is the NumPy batch dict that the JAX step gets. `step()` runs one full
training step (forward, loss, backward, optimiser update) on `batch` and returns the
loss as a Python float; `module` is the `torch.nn.Module` holding every trained
parameter (so its parameter shapes can be compared with the Flax params).
"""
