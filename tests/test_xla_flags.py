"""gm_jax._xla: the multi-threaded-conv flag goes into XLA_FLAGS unless asked not to."""

import os
import subprocess
import sys


def _flags_after_import(env):
  code = ('import os; from gm_jax import _xla; ok = _xla.configure_cpu_flags(); '
          'print(ok, repr(os.environ.get("XLA_FLAGS", "")))')
  return subprocess.run([sys.executable, '-c', code], env=env, capture_output=True, text=True,
                        check=True).stdout.strip()


def test_flag_is_added_before_jax_starts():
  env = {k: v for k, v in os.environ.items() if k not in ('XLA_FLAGS', 'GM_JAX_CPU_FLAGS')}
  assert _flags_after_import(env) == (
      "True '--xla_cpu_experimental_ynn_fusion_type=-individual_convolution'")


def test_opt_out_leaves_xla_flags_alone():
  env = dict(os.environ, XLA_FLAGS='--xla_dump_to=/nowhere', GM_JAX_CPU_FLAGS='0')
  assert _flags_after_import(env) == "False '--xla_dump_to=/nowhere'"
