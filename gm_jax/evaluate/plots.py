"""Matplotlib figures: loss curves and latent scatter plots (Agg backend, no screen).

Matplotlib is an optional dependency (`pip install gm_jax[plots]`): it is imported
when a figure is first drawn, never when this module is imported.
"""

from __future__ import annotations

from collections.abc import Sequence
import os

import numpy as np


def _pyplot():
  """`matplotlib.pyplot` on the Agg backend; ImportError naming the extra if absent."""
  try:
    import matplotlib
  except ImportError as e:
    raise ImportError(
      'gm_jax.evaluate.plots draws with matplotlib, which is not installed; '
      "install it with `pip install 'gm_jax[plots]'` (or `pip install matplotlib`)."
    ) from e
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt

  return plt


def _save(plt, fig, path: str) -> str:
  fig.tight_layout()
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  fig.savefig(path, dpi=100)
  plt.close(fig)
  return path


def plot_loss_curves(
  records: Sequence[dict], path: str, *, keys: Sequence[str] = ('loss',), title: str | None = None
) -> str:
  """Plots `keys` of `metrics.jsonl` records against `step` and saves a PNG."""
  plt = _pyplot()
  fig, ax = plt.subplots(figsize=(6, 4))
  for key in keys:
    pts = [(r['step'], r[key]) for r in records if key in r and isinstance(r[key], (int, float))]
    if pts:
      steps, values = zip(*pts)
      ax.plot(steps, values, label=key)
  ax.set_xlabel('step')
  ax.set_ylabel('value')
  ax.legend()
  if title:
    ax.set_title(title)
  return _save(plt, fig, path)


def plot_latent_scatter(
  points: np.ndarray, labels: np.ndarray | None, path: str, *, title: str = 'latent means'
) -> str:
  """Scatter of 2-D points `[N, 2]` coloured by integer `labels` `[N]` (None: one colour)."""
  plt = _pyplot()
  fig, ax = plt.subplots(figsize=(5, 5))
  if labels is None:
    ax.scatter(points[:, 0], points[:, 1], s=8)
  else:
    sc = ax.scatter(points[:, 0], points[:, 1], c=labels, cmap='tab10', s=8)
    ax.legend(*sc.legend_elements(), loc='best', fontsize='small', title='label')
  ax.set_title(title)
  return _save(plt, fig, path)
