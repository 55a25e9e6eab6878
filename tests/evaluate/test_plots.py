"""gm_jax.evaluate.plots: matplotlib is optional (extra `plots`) and imported lazily."""

import subprocess
import sys

import pytest

from gm_jax.evaluate import plots


def test_importing_plots_does_not_import_matplotlib():
  code = 'import sys; import gm_jax.evaluate.plots; print("matplotlib" in sys.modules)'
  out = subprocess.run(
    [sys.executable, '-c', code], capture_output=True, text=True, check=True
  ).stdout.strip()
  assert out == 'False'


def test_missing_matplotlib_names_the_extra(monkeypatch, tmp_path):
  monkeypatch.setitem(sys.modules, 'matplotlib', None)  # `import matplotlib` now fails
  with pytest.raises(ImportError, match=r'gm_jax\[plots\]'):
    plots.plot_loss_curves([{'step': 0, 'loss': 1.0}], str(tmp_path / 'loss.png'))


def test_loss_curve_is_written(tmp_path):
  pytest.importorskip('matplotlib')
  path = plots.plot_loss_curves(
    [{'step': s, 'loss': 1.0 / (s + 1)} for s in range(5)], str(tmp_path / 'loss.png')
  )
  assert (tmp_path / 'loss.png').stat().st_size > 0 and path.endswith('loss.png')
