"""XLA settings that must be in place before JAX initialises its CPU backend.

Only CPU runs get the CPU flag, and the choice is made before JAX starts, from what
the process will run on:

* `JAX_PLATFORMS` (or `jax.config.jax_platforms`, if JAX is imported and it was
  set there) names only `cpu`: yes;
* it names anything else (`cuda`, `tpu`, `cuda,cpu`, ...): no;
* it is unset: yes unless an accelerator plugin is installed (`jax[cuda12]`,
  `jax[cuda13]`, `jax[tpu]`, ROCm or Metal plugins), so GPU and TPU users set nothing.

`GM_JAX_CPU_FLAGS=0` leaves `XLA_FLAGS` alone whatever the platform;
`GM_JAX_CPU_FLAGS=1` adds the flag whatever the platform (e.g. forcing a CPU run on a
machine with a GPU plugin installed, where `JAX_PLATFORMS=cpu` is the better way).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
import importlib.metadata
import os
import re
import sys

# jaxlib 0.10 routes f32 convolutions on CPU to YNNPACK, which runs them on one core;
# excluding them from YNN fusion restores multi-threaded convs (1.65x on conv training
# steps on a 2-core machine, measured for this project).
_CPU_CONV_FLAG = '--xla_cpu_experimental_ynn_fusion_type=-individual_convolution'

# Distributions (PEP 503-normalised names) whose presence makes JAX pick an accelerator
# by default: jax-cuda12-plugin / jax-cuda12-pjrt (`jax[cuda12]`), the cuda13 pair,
# libtpu (`jax[tpu]`), jax-rocm*-plugin / -pjrt and jax-metal.
_ACCELERATOR_PREFIXES = ('jax-cuda', 'jax-rocm', 'libtpu', 'jax-metal')


def _normalise(name: str) -> str:
  return re.sub(r'[-_.]+', '-', name).lower()


def accelerator_distributions(distributions: Iterable[str]) -> list[str]:
  """The names in `distributions` that are JAX accelerator plugins, sorted.

  Args:
    distributions: installed distribution names, any spelling
      (`jax_cuda12_plugin`, `jax-cuda12-plugin`, `libtpu`).

  Returns:
    The accelerator names among them, PEP 503-normalised (`jax-cuda12-plugin`).
  """
  names = {_normalise(d) for d in distributions if d}
  return sorted(n for n in names if n.startswith(_ACCELERATOR_PREFIXES))


def _switch(environ: Mapping[str, str]) -> bool | None:
  """`GM_JAX_CPU_FLAGS` as True (force on), False (off) or None (unset: decide)."""
  value = environ.get('GM_JAX_CPU_FLAGS', '').strip().lower()
  if value in ('0', 'false', 'no', 'off'):
    return False
  if value in ('1', 'true', 'yes', 'on'):
    return True
  return None


def cpu_flags_wanted(
  environ: Mapping[str, str], distributions: Iterable[str], *, platforms: str | None = None
) -> bool:
  """Whether this process will run on CPU, so the CPU-only XLA flags should be set.

  A pure function of its arguments, so it can be tested without an accelerator.

  Args:
    environ: the environment (`os.environ`); reads `GM_JAX_CPU_FLAGS` and
      `JAX_PLATFORMS`.
    distributions: names of the installed distributions.
    platforms: `jax.config.jax_platforms` when JAX is already imported; when given
      (even as '') it takes the place of `JAX_PLATFORMS`.

  Returns:
    False if `GM_JAX_CPU_FLAGS=0`; True if `GM_JAX_CPU_FLAGS=1`; otherwise True iff
    the platforms named are only `cpu`, or none are named and no accelerator plugin
    is among `distributions`.
  """
  switch = _switch(environ)
  if switch is not None:
    return switch
  if platforms is None:
    platforms = environ.get('JAX_PLATFORMS', '')
  named = {p.strip().lower() for p in (platforms or '').split(',') if p.strip()}
  if named:
    return named == {'cpu'}
  return not accelerator_distributions(distributions)


def _installed_distributions() -> Iterator[str]:
  """Installed distribution names, read lazily.

  `cpu_flags_wanted` reads them only when no platform is named; the scan costs about
  40 ms in a 100-package environment.
  """
  for dist in importlib.metadata.distributions():
    try:
      yield dist.metadata['Name'] or ''
    except Exception:  # a broken install: skip it
      continue


def _configured_platforms() -> str | None:
  """`jax.config.jax_platforms` if JAX is imported (it may differ from the env var)."""
  jax_mod = sys.modules.get('jax')
  if jax_mod is None:
    return None
  try:
    return jax_mod.config.jax_platforms or ''
  except Exception:  # pragma: no cover - config API moved
    return None


def configure_cpu_flags() -> bool:
  """Adds the multi-threaded-conv flag to `XLA_FLAGS` for CPU runs, before JAX starts.

  Call it before anything initialises JAX's backends (entry points call it at import
  time). The flag is added only when `cpu_flags_wanted` says the process runs on CPU
  (see the module docstring), so CUDA, ROCm and TPU users need set nothing.

  Returns:
    True if the flag is (now) in `XLA_FLAGS` for this process. False if the backend
    is not CPU, if `GM_JAX_CPU_FLAGS=0` asks to leave `XLA_FLAGS` alone, or if JAX's
    backends were already initialised without it (then it is left alone).
  """
  flags = os.environ.get('XLA_FLAGS', '')
  if _switch(os.environ) is False:
    return False
  if 'xla_cpu_experimental_ynn_fusion_type' in flags:
    return True
  if not cpu_flags_wanted(
    os.environ, _installed_distributions(), platforms=_configured_platforms()
  ):
    return False
  if sys.modules.get('jax') is not None:
    try:
      from jax._src import xla_bridge

      if xla_bridge.backends_are_initialized():
        return False
    except Exception:  # pragma: no cover - private API moved
      return False
  os.environ['XLA_FLAGS'] = (flags + ' ' + _CPU_CONV_FLAG).strip()
  return True
