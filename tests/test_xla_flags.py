"""gm_jax._xla: the multi-threaded-conv flag goes into XLA_FLAGS for CPU runs only."""

import os
import subprocess
import sys

import pytest

from gm_jax import _xla

_FLAG = '--xla_cpu_experimental_ynn_fusion_type=-individual_convolution'
_CPU_ONLY = ['jax', 'jaxlib', 'numpy', 'flax']


def _flags_after_import(env):
  code = (
    'import os; from gm_jax import _xla; ok = _xla.configure_cpu_flags(); '
    'print(ok, repr(os.environ.get("XLA_FLAGS", "")))'
  )
  return subprocess.run(
    [sys.executable, '-c', code], env=env, capture_output=True, text=True, check=True
  ).stdout.strip()


def _clean_env(**extra):
  env = {
    k: v
    for k, v in os.environ.items()
    if k not in ('XLA_FLAGS', 'GM_JAX_CPU_FLAGS', 'JAX_PLATFORMS')
  }
  env.update(extra)
  return env


def test_flag_is_added_before_jax_starts():
  assert _flags_after_import(_clean_env(JAX_PLATFORMS='cpu')) == f'True {_FLAG!r}'


def test_flag_is_not_added_for_an_accelerator_platform():
  env = _clean_env(JAX_PLATFORMS='cuda', XLA_FLAGS='--xla_dump_to=/nowhere')
  assert _flags_after_import(env) == "False '--xla_dump_to=/nowhere'"


def test_opt_out_leaves_xla_flags_alone():
  env = _clean_env(XLA_FLAGS='--xla_dump_to=/nowhere', GM_JAX_CPU_FLAGS='0', JAX_PLATFORMS='cpu')
  assert _flags_after_import(env) == "False '--xla_dump_to=/nowhere'"


def test_jax_config_platforms_take_precedence_over_the_environment():
  code = (
    'import os, jax; jax.config.update("jax_platforms", "cuda"); '
    'from gm_jax import _xla; print(_xla.configure_cpu_flags(), '
    'repr(os.environ.get("XLA_FLAGS", "")))'
  )
  out = subprocess.run(
    [sys.executable, '-c', code],
    env=_clean_env(JAX_PLATFORMS='cpu'),
    capture_output=True,
    text=True,
    check=True,
  ).stdout.strip()
  assert out == "False ''"


@pytest.mark.parametrize(
  'platforms, expected',
  [
    ('cpu', True),
    (' CPU ', True),
    ('cpu,cpu', True),
    ('cuda', False),
    ('tpu', False),
    ('rocm', False),
    ('cuda,cpu', False),  # the accelerator is the default backend
    ('cpu,cuda', False),  # an accelerator will start: not a CPU-only process
  ],
)
def test_named_platforms_decide_regardless_of_plugins(platforms, expected):
  for dists in (_CPU_ONLY, _CPU_ONLY + ['jax-cuda12-plugin', 'jax-cuda12-pjrt']):
    assert _xla.cpu_flags_wanted({'JAX_PLATFORMS': platforms}, dists) is expected


@pytest.mark.parametrize(
  'plugin',
  [
    'jax-cuda12-plugin',
    'jax_cuda12_pjrt',
    'jax-cuda13-plugin',
    'jax_cuda13_pjrt',
    'libtpu',
    'libtpu-nightly',
    'jax-rocm60-plugin',
    'jax_rocm7_pjrt',
    'jax-metal',
    'JAX.CUDA12.Plugin',
  ],
)
def test_unset_platforms_with_an_accelerator_plugin_means_no_cpu_flags(plugin):
  assert not _xla.cpu_flags_wanted({}, _CPU_ONLY + [plugin])
  assert not _xla.cpu_flags_wanted({'JAX_PLATFORMS': ''}, _CPU_ONLY + [plugin])


def test_unset_platforms_without_plugins_means_cpu():
  assert _xla.cpu_flags_wanted({}, _CPU_ONLY)
  assert _xla.cpu_flags_wanted({}, [])
  # A name that merely starts like a plugin's family is not one.
  assert _xla.cpu_flags_wanted({}, _CPU_ONLY + ['jaxtyping', 'jax-dataloader', 'libtiff'])


def test_jax_config_platforms_replace_the_environment_variable():
  assert _xla.cpu_flags_wanted({'JAX_PLATFORMS': 'cuda'}, _CPU_ONLY, platforms='cpu')
  assert not _xla.cpu_flags_wanted({'JAX_PLATFORMS': 'cpu'}, _CPU_ONLY, platforms='tpu')
  # jax imported with nothing configured: fall back to the installed plugins.
  assert not _xla.cpu_flags_wanted({'JAX_PLATFORMS': 'cpu'}, ['libtpu'], platforms='')


@pytest.mark.parametrize(
  'value, expected', [('0', False), ('off', False), ('1', True), ('true', True)]
)
def test_gm_jax_cpu_flags_overrides_the_decision(value, expected):
  env = {'GM_JAX_CPU_FLAGS': value}
  assert _xla.cpu_flags_wanted(dict(env, JAX_PLATFORMS='cuda'), _CPU_ONLY) is expected
  assert _xla.cpu_flags_wanted(dict(env, JAX_PLATFORMS='cpu'), _CPU_ONLY) is expected
  assert _xla.cpu_flags_wanted(env, ['libtpu']) is expected


def test_accelerator_distributions_normalises_names():
  assert _xla.accelerator_distributions(
    ['numpy', 'Jax_Cuda12_Plugin', 'jax-cuda12-plugin', 'libtpu', '']
  ) == ['jax-cuda12-plugin', 'libtpu']


def test_installed_distributions_are_read():
  names = {n.lower() for n in _xla._installed_distributions()}
  assert {'jax', 'jaxlib'} <= names
