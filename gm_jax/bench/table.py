"""The Markdown table of bench rows (`python -m gm_jax.bench --table rows.jsonl`)."""

from __future__ import annotations

from collections.abc import Sequence
import json
import os

from gm_jax.bench.configs import BenchError


def summary_table(rows: Sequence[dict]) -> str:
  """Markdown table of rows: the config, its step, the trainer's overhead and the MFU."""

  def fmt(v, spec):
    return '-' if v is None else format(v, spec)

  lines = [
    '| config | batch | K | step ms (median) | steps/s | trainer steps/s | '
    'trainer_overhead | GFLOP/step | achieved TFLOP/s | MFU | load 1m |',
    '|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|',
  ]
  for r in rows:
    flops = r.get('flops_per_step')
    lines.append(
      f'| {os.path.basename(r.get("config") or "") or r["model"]} | {r["global_batch"]} | '
      f'{r.get("steps_per_loop", 1)} | {fmt(r["step_ms_median"], ".3g")} | '
      f'{fmt(r["steps_per_s"], ",.1f")} | {fmt(r["trainer_steps_per_s"], ",.1f")} | '
      f'{fmt(r["trainer_overhead"], ".2f")} | {fmt(flops and flops / 1e9, ".3g")} | '
      f'{fmt(r["achieved_tflops"], ".3f")} | {fmt(r["mfu"], ".2f")} | '
      f'{fmt(r.get("load_avg_1m"), ".1f")} |'
    )
  return '\n'.join(lines)


def read_rows(path: str) -> list[dict]:
  """The rows of a JSONL file `--out` wrote (the last row of each config wins)."""
  try:
    with open(path) as f:
      rows = [json.loads(line) for line in f if line.strip()]
  except OSError as e:
    raise BenchError(f'--table: cannot read {path!r}: {e}') from e
  except json.JSONDecodeError as e:
    raise BenchError(f'--table: {path!r} is not JSONL of bench rows: {e}') from e
  last = {}
  for r in rows:
    if not isinstance(r, dict) or 'model' not in r:
      raise BenchError(f'--table: {path!r} holds a line that is not a bench row')
    last[
      (
        r.get('config'),
        r['model'],
        r.get('compute_dtype'),
        r.get('steps_per_loop'),
        r.get('device_kind'),
      )
    ] = r
  return list(last.values())
