"""Shared test set-up: CPU only, quiet TensorFlow, deterministic XLA, fast compilation.

A persistent XLA compilation cache shared by the test processes (pytest workers and
the CLI / multi-device subprocesses, which inherit the environment): the trainer
compiles the same programs again in every run of a resume test, and compilation is
most of this suite's time (measured: a PixelCNN train/kill/resume test 74 s -> 60 s
wall, 115 s -> 80 s CPU from a cold cache). The key includes the program, jaxlib
version and XLA flags, so a stale entry is never used for another program. Every program
is cached, however fast it compiled (JAX's default keeps only those over 1 s): the
trainer's small programs (init, metrics, evaluation steps) are compiled again by every
run of a resume test too (measured, test_contract + test_loop from a cold cache, one
process, two pairs of runs: 238 -> 214 and 268 -> 242 CPU-s against a 0.2 s threshold).
"""

import os
import tempfile

os.environ.setdefault('JAX_PLATFORMS', 'cpu')
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
os.environ.setdefault('CUDA_VISIBLE_DEVICES', '')
os.environ.setdefault(
  'JAX_COMPILATION_CACHE_DIR',
  os.path.join(tempfile.gettempdir(), f'gm_jax_test_xla_cache_{os.getuid()}'),
)
os.environ.setdefault('JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS', '0')
# Compile fast rather than run fast: most programs here run a few times, and XLA:CPU's
# LLVM optimisation is most of their compile time (numerics unchanged: no fast-math).
# Measured, whole suite from a cold cache on 2 cores: 1,463 s -> 1,169 s. XLA:CPU's MLIR
# fusion emitters cost more compile time than the classic LLVM IR emitters they replace
# (measured: 3 contract tests + test_made, cold, 47.8 -> 35.7 CPU s). The CLI and
# multi-device subprocesses inherit them; an `XLA_FLAGS` already set keeps its values.
_FAST_COMPILE = {
  '--xla_backend_optimization_level': '0',
  '--xla_llvm_disable_expensive_passes': 'true',
  '--xla_cpu_use_fusion_emitters': 'false',
}
_flags = os.environ.get('XLA_FLAGS', '')
os.environ['XLA_FLAGS'] = ' '.join(
  [_flags] + [f'{k}={v}' for k, v in _FAST_COMPILE.items() if k not in _flags]
).strip()

import pytest  # noqa: E402


@pytest.fixture(scope='session')
def tfds_dir(tmp_path_factory):
  """A tfds data_dir private to the test session (embedded datasets prepare on first use)."""
  return str(tmp_path_factory.mktemp('tensorflow_datasets'))


@pytest.fixture(scope='session')
def data_dir(tmp_path_factory):
  """One tfds data_dir per test process for the data and CLI tests: embedded datasets
  are prepared once per pytest worker, whichever test asks first."""
  path = tmp_path_factory.getbasetemp() / 'gm_jax_tfds'
  path.mkdir(exist_ok=True)
  return str(path)


_CPU_LOG = os.environ.get('GM_JAX_TEST_CPU_LOG')
if _CPU_LOG:
  import json
  import resource
  import time

  def _cpu_seconds() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)  # finished subprocesses
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime

  @pytest.hookimpl(hookwrapper=True)
  def pytest_runtest_protocol(item, nextitem):
    """`GM_JAX_TEST_CPU_LOG=FILE`: one JSON line per test (setup, call and teardown, so a
    module fixture counts in its first test): CPU seconds of this process and the
    subprocesses it waited for, which other load on the machine barely changes, and wall
    seconds. `python tools/suite_times.py FILE` sums them per file."""
    cpu, wall = _cpu_seconds(), time.time()
    yield
    record = {
      'test': item.nodeid,
      'cpu_s': round(_cpu_seconds() - cpu, 3),
      'wall_s': round(time.time() - wall, 3),
      'worker': os.environ.get('PYTEST_XDIST_WORKER', 'main'),
    }
    with open(_CPU_LOG, 'a') as f:
      f.write(json.dumps(record) + '\n')


def pytest_collection_modifyitems(config, items):
  """Modules holding a `slow` test run first; each module's tests stay together, in order.

  Under `make test`'s `-n 2 --dist loadgroup`, xdist hands out the xdist groups first and
  then single tests in collection order, so a long test collected late kept one worker busy
  while the other had finished (measured: a 17 s tfds test ran last, the two workers ended
  22 s apart). The long tests are the `slow` ones.
  """
  del config
  slow = {item.nodeid.split('::')[0] for item in items if item.get_closest_marker('slow')}
  items[:] = sorted(items, key=lambda item: item.nodeid.split('::')[0] not in slow)
