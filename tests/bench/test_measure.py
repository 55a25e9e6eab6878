"""gm_jax.bench.measure: FLOPs against a hand count, the peak table, one-step FLOPs."""

import os

import jax
import jax.numpy as jnp
import pytest

from gm_jax import bench

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
VAE = os.path.join(REPO, 'configs', 'vae.py')


@pytest.mark.parametrize('m,k,n', [(64, 32, 16), (128, 256, 8)])
def test_flops_of_a_matmul_are_two_m_n_k(m, k, n):
  compiled = jax.jit(jnp.matmul).lower(jnp.ones((m, k)), jnp.ones((k, n))).compile()
  assert bench.compiled_flops(compiled) == 2 * m * n * k
  assert bench.compiled_memory_bytes(compiled) >= 4 * (m * k + k * n + m * n)


def test_the_matmul_ceiling_is_a_positive_rate():
  assert bench.measure_matmul_tflops(size=256, repeats=1) > 0


@pytest.mark.parametrize(
  'kind,dtype,expected',
  [
    ('NVIDIA H100 80GB HBM3', 'bfloat16', 989.4),
    ('NVIDIA H100 80GB HBM3', 'tf32', 494.7),
    ('NVIDIA H100 PCIe', 'bfloat16', 756.0),
    ('NVIDIA H200', 'float32', 67.0),
    ('NVIDIA A100-SXM4-80GB', 'tf32', 156.0),
    ('NVIDIA A100 80GB PCIe', 'float16', 312.0),
    ('NVIDIA L4', 'bfloat16', 121.0),
    ('TPU v4', 'bfloat16', 275.0),
    ('TPU v5 lite', 'bfloat16', 197.0),
    ('TPU v5p', 'bfloat16', 459.0),
    ('TPU v6 lite', 'bfloat16', 918.0),
    ('TPU v5 lite', 'tf32', 197.0),  # no TF32 on a TPU: its float32 (default precision)
    ('NVIDIA L40S', 'bfloat16', None),  # not an L4
    ('cpu', 'float32', None),
  ],
)
def test_peak_table_lookup_by_device_kind(kind, dtype, expected):
  assert bench.peak_tflops_for(kind, dtype) == expected


def test_the_peak_column_follows_compute_dtype_and_matmul_precision():
  assert bench.peak_dtype('bfloat16') == 'bfloat16'
  assert bench.peak_dtype('float32') == 'tf32'
  assert bench.peak_dtype('float32', 'highest') == 'float32'


def test_flops_per_step_of_a_multi_step_dispatch_are_a_one_step_dispatchs(tmp_path, tfds_dir):
  # The MLP's two steps stay a rolled scan (no convolution), whose body XLA's cost
  # analysis counts once: the count comes from a one-step dispatch instead.
  overrides = [
    ('data_dir', tfds_dir),
    ('batch_size', '8'),
    ('hidden', '(32,)'),
    ('latent_dim', '4'),
  ]
  config = bench.load_config(VAE, overrides + [('steps_per_loop', '2')])
  config, _, k = bench.bench_settings(config, 4)
  config, family, splits = bench.trainer_inputs(config, str(tmp_path / 'build'))
  two = bench.compile_dispatch(config, family, splits, str(tmp_path / 'two'))[3]
  flops, how = bench.flops_per_step(two, config, family, splits, str(tmp_path / 'a'))
  assert k == 2 and 'one-step' in how
  single = bench.load_config(VAE, overrides)
  single = bench.bench_settings(single, 4)[0]
  single, family, splits = bench.trainer_inputs(single, str(tmp_path / 'build1'))
  one = bench.compile_dispatch(single, family, splits, str(tmp_path / 'one'))[3]
  assert bench.flops_per_step(one, single, family, splits, str(tmp_path / 'b')) == (
    flops,
    'cost_analysis of the dispatch',
  )
  assert bench.compiled_flops(two) < 1.5 * flops  # the scan's body, counted once
