"""XLA settings that must be in place before JAX initialises its CPU backend."""

import os
import sys

# jaxlib 0.10 routes f32 convolutions on CPU to YNNPACK, which runs them on one core;
# excluding them from YNN fusion restores multi-threaded convs (1.65x on conv training
# steps on a 2-core machine, measured for this project).
_CPU_CONV_FLAG = '--xla_cpu_experimental_ynn_fusion_type=-individual_convolution'


def configure_cpu_flags() -> bool:
  """Adds the multi-threaded-conv flag to `XLA_FLAGS` if JAX has not started yet.

  Returns:
    True if the flag is (now) in effect for this process, False if JAX's backend was
    already initialised without it (then it is left alone) or `GM_JAX_CPU_FLAGS=0` asks
    to leave `XLA_FLAGS` alone (e.g. a GPU machine whose jaxlib lacks the flag).
  """
  if os.environ.get('GM_JAX_CPU_FLAGS', '1') == '0':
    return False
  flags = os.environ.get('XLA_FLAGS', '')
  if 'xla_cpu_experimental_ynn_fusion_type' in flags:
    return True
  jax_mod = sys.modules.get('jax')
  if jax_mod is not None:
    try:
      from jax._src import xla_bridge  # pylint: disable=g-import-not-at-top
      if xla_bridge.backends_are_initialized():
        return False
    except Exception:  # pragma: no cover - private API moved: be conservative.
      return False
  os.environ['XLA_FLAGS'] = (flags + ' ' + _CPU_CONV_FLAG).strip()
  return True
