"""Importing `gm_jax.losses` costs JAX and nothing else (issue #28).

Each import runs in a fresh interpreter, so what this test process has already
imported does not hide a dependency. The allowed set is computed, not listed: it is
whatever `import jax` alone loads, plus `gm_jax` itself, so a new jax release that
imports another module of its own does not break the test.
"""

import functools
import json
import os
import subprocess
import sys

import pytest

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# One fresh interpreter per statement, shared by the tests that ask about it (one worker:
# the statements' runs are cached in the test process).
pytestmark = pytest.mark.xdist_group('imports')
_FRESH = (
  'import json, sys, time; t = time.perf_counter(); {stmt}; t = time.perf_counter() - t; '
  'print(json.dumps([sorted({{m.split(".")[0] for m in sys.modules}}), '
  'sorted(m for m in sys.modules if m.startswith("gm_jax")), t]))'
)


@functools.cache
def _fresh(stmt: str) -> tuple[frozenset[str], tuple[str, ...], float]:
  """(top-level names in `sys.modules`, the gm_jax modules loaded, seconds `stmt` took) after
  running `stmt` in a fresh Python."""
  out = subprocess.run(
    [sys.executable, '-c', _FRESH.format(stmt=stmt)],
    capture_output=True,
    text=True,
    check=True,
    cwd=_ROOT,
  )
  top, ours, seconds = json.loads(out.stdout.strip().splitlines()[-1])
  return frozenset(top), tuple(ours), seconds


def _third_party(mods) -> set[str]:
  return {m for m in mods if m not in sys.stdlib_module_names}


@pytest.fixture(scope='module')
def jax_alone() -> frozenset[str]:
  return _fresh('import jax')[0]


@pytest.mark.parametrize(
  'stmt', ['from gm_jax import losses', 'import gm_jax.losses', 'import gm_jax']
)
def test_losses_import_only_jax(stmt, jax_alone):
  mods = _fresh(stmt + '; import jax')[0]
  extra = _third_party(mods) - _third_party(jax_alone)
  # Anything beyond gm_jax (flax, optax, scipy, rich, yaml, tensorflow...) is a
  # regression: the losses are meant to be usable with jax and numpy only.
  assert extra == {'gm_jax'}, sorted(extra)
  assert {'jax', 'numpy'} <= mods


def test_losses_load_no_other_gm_jax_module():
  out = _fresh('from gm_jax import losses; import jax')[1]
  assert 'gm_jax.losses' in out
  assert [
    m for m in out if m not in ('gm_jax', 'gm_jax.losses') and not m.startswith('gm_jax.losses.')
  ] == []


def test_lazy_attributes_still_work():
  code = (
    'import gm_jax; from gm_jax import losses, models; '
    'assert gm_jax.losses is losses and gm_jax.models is models; '
    'assert callable(gm_jax.losses.elbo); '
    'assert "train" in dir(gm_jax); print(gm_jax.__version__)'
  )
  out = subprocess.run(
    [sys.executable, '-c', code], capture_output=True, text=True, check=True, cwd=_ROOT
  ).stdout.strip()
  assert out == '0.1.0'
  import gm_jax

  with pytest.raises(AttributeError, match='no_such_module'):
    _ = gm_jax.no_such_module


def test_losses_import_time_is_reported(jax_alone):
  """Prints import times (not asserted: the shared CI machine is too noisy)."""
  del jax_alone
  timings = {
    stmt: _fresh(stmt)[2] for stmt in ('import jax', 'from gm_jax import losses; import jax')
  }
  assert all(t > 0 for t in timings.values())
  print({k: f'{v:.2f}s' for k, v in timings.items()})
