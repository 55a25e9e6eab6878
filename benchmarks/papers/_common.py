"""Shared by the scripts in `benchmarks/papers/`: run a row through the trainer, print tables.

Every row is one `gm_jax.main`-equivalent run: `configs/<name>.py` plus overrides, in
its own workdir. Re-running a script resumes each row from its newest checkpoint; a row
that has finished training is only evaluated again (so a larger `--eval_k` costs no
training). The Markdown table has, per row: the paper's value, ours, the evaluation
protocol, the budget (steps, wall time of this invocation, device) and the command that
reproduces it.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shlex
import sys
import time
from typing import Any, Callable, Optional

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
if REPO not in sys.path:
  sys.path.insert(0, REPO)


class ModelNotAvailable(SystemExit):
  """The row's `config.model` is not registered or its module does not import yet."""


@dataclasses.dataclass
class Row:
  """One line of a paper's table.

  Attributes:
    label: what the paper calls it, e.g. 'VAE (k = 1), one stochastic layer'.
    paper: the paper's number (and unit) as text, e.g. '86.76 nats'.
    config: configs/<config>.py to start from.
    overrides: config fields that define the paper's protocol.
    metric: `(eval.json dict) -> str` giving our number in the paper's unit.
    protocol: how both numbers are measured.
  """

  label: str
  paper: str
  config: str
  overrides: dict
  metric: Callable[[dict], str]
  protocol: str
  key: str = ''


def parser(description: str) -> argparse.ArgumentParser:
  p = argparse.ArgumentParser(description=description)
  p.add_argument('--workdir', default=os.path.expanduser('~/gm_jax_papers'),
                 help='base folder; each row trains in WORKDIR/<script>/<row>')
  p.add_argument('--rows', default=None, help='comma-separated row keys (default: all)')
  p.add_argument('--steps', type=int, default=None,
                 help='override num_train_steps (the budget) for every row')
  p.add_argument('--data_dir', default=None, help='tfds data_dir holding mnist_offline')
  p.add_argument('--set', action='append', default=[], metavar='FIELD=VALUE',
                 help='extra config override (Python literal), repeatable')
  p.add_argument('--list', action='store_true', help='list the rows and exit')
  return p


def _load_config(name: str):
  from gm_jax import demo
  return demo.load_config(os.path.join(REPO, 'configs', f'{name}.py'))


def parse_set(item: str) -> tuple[str, Any]:
  """`--set FIELD=VALUE` -> `(FIELD, VALUE as a Python literal, or the bare word as a str)`."""
  from gm_jax import bench
  return bench.parse_set(item)


def check_model(model: str) -> Callable:
  """`gm_jax.families.train_and_evaluate` where `model` is registered, or exits with a
  message saying what is missing."""
  from gm_jax import families
  try:
    families.module_for(model)
  except ValueError as e:
    raise ModelNotAvailable(f'{e}; this table needs that family. Add its module to '
                            'gm_jax/families/ (docs/families.md), then re-run this '
                            'script.') from e
  except ImportError as e:
    raise ModelNotAvailable(
        f'config.model {model!r} is registered but its family does not import: {e}. '
        'This table needs that family; re-run when it has landed.') from e
  return families.train_and_evaluate


def check_binarize(config, train_and_evaluate) -> None:
  """Exits if the row binarises but the family of `config.model` ignores `config.binarize`
  (`train_and_evaluate`: `gm_jax.families.train_and_evaluate`, or a module's own)."""
  from gm_jax import families
  from gm_jax.families import _binarization as binarization
  from gm_jax.train import defaults
  if defaults.complete(config, binarization.DEFAULTS).binarize == 'none':
    return
  if train_and_evaluate is families.train_and_evaluate:
    module = families.module_for(config.model)
  else:
    module = sys.modules[train_and_evaluate.__module__]
  if not hasattr(module, 'binarization'):
    raise ModelNotAvailable(
        f'config.binarize={config.binarize!r}, but {module.__name__} does not apply it: '
        'its `prepare` hook must binarise the splits and its make_family wrap the family '
        '(gm_jax/families/_binarization.py), as gm_jax/families/vae.py does. Without it '
        'the row would train on grey levels and not be comparable.')


def device_name() -> str:
  import jax
  d = jax.devices()[0]
  if d.platform == 'cpu':
    return f'CPU ({os.cpu_count()} cores visible)'
  return getattr(d, 'device_kind', d.platform)


def selected(rows: list[Row], args) -> list[Row]:
  """The rows named by `args.rows` (all when it is empty); an unknown key is an error."""
  if not args.rows:
    return list(rows)
  wanted = args.rows.split(',')
  unknown = sorted(set(wanted) - {r.key for r in rows})
  if unknown:
    raise SystemExit(f'unknown row(s) {", ".join(unknown)}; this script has '
                     f'{", ".join(r.key for r in rows)}')
  return [r for r in rows if r.key in wanted]


def optional_fields() -> frozenset:
  """Config fields that a row's config may lack and `--set` may still name: every family
  setting (the `DEFAULTS` of every registered family module, `gm_jax.families`). The
  shared training settings are not listed: every config has them (configs/common.py)."""
  from gm_jax import families
  return frozenset().union(*(families.module_for(m).DEFAULTS for m in families.model_names()))


def _check_set_field(field: str, row: Row, known) -> None:
  """A `--set` field must be one the row's config, its overrides or a trainer knows."""
  optional = optional_fields()
  if field in known or field in row.overrides or field in optional:
    return
  import difflib
  close = difflib.get_close_matches(field, sorted(set(known) | optional), n=3)
  hint = f'; did you mean {", ".join(close)}?' if close else ''
  raise SystemExit(f'--set {field}=...: configs/{row.config}.py has no field {field!r} and no '
                   f'trainer reads it (row {row.key}){hint}')


def row_config(script: str, row: Row, args, *, extra: Optional[dict] = None):
  """`(config, workdir)` of `row` as `run_rows` trains it (overrides, --steps, --set).

  Raises:
    SystemExit: a `--set` without '=' or naming a field nothing reads (a typo would
      otherwise train the row, for hours, without the change).
  """
  config = _load_config(row.config)
  overrides = dict(row.overrides, **(extra or {}))
  if args.steps is not None:
    overrides['num_train_steps'] = args.steps
  if args.data_dir:
    overrides['data_dir'] = args.data_dir
  for item in args.set:
    field, value = parse_set(item)
    _check_set_field(field, row, config)
    overrides[field] = value
  with config.unlocked():
    config.update(overrides)
  return config, os.path.join(args.workdir, script, row.key)


def run_rows(script: str, rows: list[Row], args, *, extra: Optional[dict] = None) -> list[dict]:
  """Trains (or resumes) and evaluates each selected row; returns one record per row."""
  if args.list:  # the rows `--rows` selects (all by default)
    for r in selected(rows, args):
      print(f'{r.key}: {r.label} (paper {r.paper})')
    raise SystemExit(0)
  records = []
  for row in selected(rows, args):
    config, workdir = row_config(script, row, args, extra=extra)
    train_and_evaluate = check_model(config.model)
    check_binarize(config, train_and_evaluate)
    command = ' '.join(['python', f'benchmarks/papers/{script}.py',
                        f'--workdir={shlex.quote(args.workdir)}', f'--rows={row.key}'] +
                       ([f'--steps={args.steps}'] if args.steps is not None else []) +
                       [f'--set={shlex.quote(s)}' for s in args.set])
    t0 = time.perf_counter()
    result = train_and_evaluate(config, workdir)
    wall = time.perf_counter() - t0
    rec = dict(row=row.key, label=row.label, paper=row.paper, ours=row.metric(result),
               protocol=row.protocol, steps=int(result.get('train_steps', config.num_train_steps)),
               planned_steps=int(config.num_train_steps),
               batch_size=int(config.batch_size), wall_s=wall, device=device_name(),
               command=command, workdir=workdir, eval=result)
    with open(os.path.join(workdir, 'paper_row.json'), 'w') as f:
      json.dump(rec, f, indent=2, sort_keys=True, default=str)
    records.append(rec)
  return records


def markdown(title: str, records: list[dict]) -> str:
  """A Markdown table of `run_rows` records."""
  lines = [f'### {title}', '',
           '| row | paper | ours | protocol | budget | command |',
           '|---|---|---|---|---|---|']
  for r in records:
    steps_per_s = r['eval'].get('train_steps_per_s')
    rate = ''
    if steps_per_s:
      speed = f'{steps_per_s:.0f}' if steps_per_s >= 100 else f'{steps_per_s:.3g}'
      rate = (f', {speed} steps/s = {r["steps"] / steps_per_s / 60:.1f} min of '
              'training steps')
    planned = r.get('planned_steps', r['steps'])
    stopped = (f' (stopped by config.max_train_seconds; schedule planned over {planned:,})'
               if r['steps'] < planned else '')
    source = r['eval'].get('init_from_step')
    warm = (f', started from the parameters of a run of {source:,} steps '
            f"(`init_from={r['eval'].get('init_from')}`)" if source is not None else '')
    budget = (f"{r['steps']:,} steps{stopped} x {r['batch_size']}{rate}{warm}; this invocation "
              f"{r['wall_s'] / 60:.1f} min (loading, validation, eval included) on "
              f"{r['device']}")
    lines.append(f"| {r['label']} | {r['paper']} | {r['ours']} | {r['protocol']} | "
                 f"{budget} | `{r['command']}` |")
  return '\n'.join(lines)


def nats(key: str = 'test_nll_nats') -> Callable[[dict], str]:
  return lambda ev: f"{ev[key]:.2f} nats ({ev.get('bound', '?')})"


def bits_per_dim(key: str = 'test_bpd') -> Callable[[dict], str]:
  return lambda ev: f'{ev[key]:.3f} bits/dim'
