"""The classic comparison table of generative-model families, measured on the digits.

    python benchmarks/family_table.py [--seeds 0,1,2] [--rows pixelcnn,vae,hvae,realnvp,dcgan]
        [--budget table|config] [--workdir /tmp/gm_family_table]
        [--out benchmarks/results/family_table] [--merge] [--set KEY=VALUE ...]
    # the diffusion rows (3,000 steps each, ~10 min a seed), into the existing table:
    python benchmarks/family_table.py --rows diffusion,flow_matching --seeds 0 --merge

One row per family, each trained with the shipped `configs/*.py` on the embedded
digits (8x8, 17 levels; test = last 360 images) for every seed, through the same
trainer and CLI code path as `python -m gm_jax.main` (re-running resumes or reuses
the finished workdirs under `--workdir`). Columns:

- stability: the test metric (bits/dim; FID for the GAN; both for the diffusion rows)
  as mean and std over the seeds, and the number of runs that diverged (non-finite
  loss) or collapsed (class coverage < 5 of 10 where samples are scored);
- likelihood: exact / bound (IWAE-k; VDM's ELBO) / ode (flow matching's
  probability-flow ODE, with its trace estimator) / none, with the test bits/dim;
- sampling speed of the diffusion rows: samples/s of each timed sampler at its step
  count (e.g. DDPM-1000, DDIM-50, HEUN-25; 28x28 with the config's own sampler);
- sampling speed: samples/s of a batch of 64 for the trained 8x8 model (from
  `eval.json`), and for the same architecture at 28x28 with 256 levels (random
  weights: the cost of a draw does not depend on their values), compiled, second call;
- representation: latent size and the test accuracy of a linear probe (standardised
  logistic regression) on the training latents (VAE: posterior means; hierarchical
  VAE: every group's posterior mean; flow: z = f(x)); none for PixelCNN and the GAN
  (no encoder);
- time to target: training seconds (steps / measured train steps/s, validation
  excluded) until the validation metric first reached the family's quality target
  from its issue (VAE and flows < 2.74 bits/dim, the Gaussian-mixture baseline;
  hierarchical VAE < 2.20; PixelCNN < 1.90). The VAEs' validation metric is the
  ELBO, an upper bound of their test NLL, so their time is conservative.

`--budget table` (default) shortens the runs to what 3 seeds x 5 families fit in
about half an hour on a 2-core CPU (the steps are in `TABLE_STEPS`, recorded in the
output); `--budget config` trains each config's own `num_train_steps`.

Writes `<out>.json` (every run's `eval.json` entries plus the rows) and `<out>.md`.
"""

from gm_jax import _xla

_xla.configure_cpu_flags()

import argparse
import ast
import dataclasses
import hashlib
import json
import os
import platform
import sys
import time

import jax
import numpy as np

from gm_jax import families
from gm_jax.data import DatasetInfo
from gm_jax.demo import load_config
from gm_jax.train import loop
from gm_jax.train import metrics as metrics_lib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MNIST_LIKE = DatasetInfo('mnist_offline', 'image', (28, 28, 1), 256, 10)


@dataclasses.dataclass(frozen=True)
class Row:
  family: str  # the table's first column
  model: str  # config.model
  config: str  # configs/<config>
  likelihood: str  # 'exact' | 'bound' | 'none'
  target_bpd: float | None  # quality target on the validation metric (bits/dim)
  table_steps: int  # steps under --budget table
  overrides: tuple = ()


ROWS = (
  Row('autoregressive (PixelCNN)', 'pixelcnn', 'pixelcnn.py', 'exact', 1.90, 500),
  Row('VAE (MLP)', 'vae', 'vae.py', 'bound', 2.74, 1000, (('iwae_samples', 500),)),
  Row('hierarchical VAE', 'hvae', 'hvae.py', 'bound', 2.20, 800, (('iwae_samples', 200),)),
  Row('flow (RealNVP)', 'realnvp', 'realnvp.py', 'exact', 2.74, 1000),
  Row('GAN (DCGAN)', 'dcgan', 'dcgan.py', 'none', None, 1500),
  # The diffusion rows train their configs' own 3,000 steps (~10 min a seed); their
  # validation metric is the bound (VDM) or the flow-matching loss (no bits/dim target).
  Row('diffusion (VDM)', 'diffusion', 'diffusion.py', 'bound', 2.20, 3000),
  Row('flow matching (OT path)', 'flow_matching', 'flow_matching.py', 'ode', None, 3000),
)
TABLE_STEPS = {r.model: r.table_steps for r in ROWS}


def parse_setting(text: str) -> tuple[str, object]:
  """`--set` 'KEY=VALUE' -> (KEY, VALUE as a Python literal, else the string)."""
  key, sep, value = text.partition('=')
  if not sep or not key:
    raise argparse.ArgumentTypeError(f'--set {text!r}: expected KEY=VALUE')
  try:
    return key, ast.literal_eval(value)
  except (ValueError, SyntaxError):
    return key, value


def apply_settings(config, settings: tuple[tuple[str, object], ...]) -> None:
  """Sets each `--set` field of every row's config; a field the config lacks is named."""
  for key, value in settings:
    if key not in config:
      raise ValueError(f'--set {key}: configs/{config.model}.py has no field {key!r}')
    old = config[key]
    config[key] = tuple(value) if isinstance(old, tuple) and isinstance(value, list) else value


def run_one(
  row: Row,
  seed: int,
  workdir: str,
  budget: str,
  steps: int | None = None,
  data_dir: str | None = None,
  settings: tuple[tuple[str, object], ...] = (),
) -> dict:
  """Trains (or resumes) one seed; returns its eval.json plus bookkeeping."""
  config = load_config(os.path.join(ROOT, 'configs', row.config))
  with config.unlocked():
    config.seed = seed
    config.progress_bar = False
    if data_dir:
      config.data_dir = data_dir
    if budget == 'table':
      config.num_train_steps = row.table_steps
    for k, v in row.overrides:
      config[k] = v
    apply_settings(config, settings)
    if steps is not None:
      config.num_train_steps = steps
      config.checkpoint_every = config.eval_every = config.log_every = max(1, steps // 2)
      config.warmup_steps = min(int(config.get('warmup_steps', 0)), steps // 2)
  os.makedirs(workdir, exist_ok=True)
  t0 = time.time()
  try:
    result = dict(families.train_and_evaluate(config, workdir))
    result['diverged'] = False
  except loop.NonFiniteLossError as e:
    result = {'diverged': True, 'error': str(e)}
  result['wall_s'] = time.time() - t0
  result['train_steps'] = int(config.num_train_steps)
  if not result.get('diverged') and result.get('train_steps_per_s') is None:
    # A run finished by an invocation that trained no step (and whose earlier ones
    # wrote no eval.json): the median of the steps/s its logs recorded.
    logged = [r['steps_per_s'] for r in metrics_lib.read_metrics(workdir) if r.get('steps_per_s')]
    if logged:
      result['train_steps_per_s'] = float(np.median(logged))
      result['train_steps_per_s_source'] = 'median of metrics.jsonl steps_per_s'
  result['time_to_target_s'] = time_to_target(workdir, row, result)
  return result


def time_to_target(workdir: str, row: Row, result: dict) -> float | None:
  """Training seconds until the validation metric first reached `row.target_bpd`."""
  if row.target_bpd is None or result.get('diverged') or not result.get('train_steps_per_s'):
    return None
  metric = next((k[len('best_val_') :] for k in result if k.startswith('best_val_')), None)
  if metric is None:
    return None
  for record in metrics_lib.read_metrics(workdir):
    value = record.get('val_' + metric)
    if value is not None and value <= row.target_bpd:
      return record['step'] / result['train_steps_per_s']
  return None  # not reached within the budget


def sampling_speed_28(
  row: Row, num: int = 64, settings: tuple[tuple[str, object], ...] = ()
) -> float | None:
  """samples/s of `num` 28x28x1, 256-level draws of the row's architecture."""
  config = load_config(os.path.join(ROOT, 'configs', row.config))
  with config.unlocked():
    config.dataset = MNIST_LIKE.name
    apply_settings(config, settings)
  family = families.module_for(row.model).make_family(families.complete(config), MNIST_LIKE)
  if family.sample is None:
    return None
  rng = np.random.default_rng(0)
  batch = {
    'image': rng.integers(0, 256, (int(config.batch_size), 28, 28, 1)).astype(np.uint8),
    'label': rng.integers(0, 10, (int(config.batch_size),)).astype(np.int32),
  }
  params = family.init(jax.random.key(0), batch)
  np.asarray(family.sample(params, jax.random.key(1), num))  # compile
  t0 = time.perf_counter()
  np.asarray(family.sample(params, jax.random.key(2), num))
  return num / (time.perf_counter() - t0)


def _mean_std(values):
  values = [v for v in values if v is not None]
  if not values:
    return None, None
  return float(np.mean(values)), float(np.std(values, ddof=1)) if len(values) > 1 else 0.0


def _sampler_speeds(ok: list[dict]) -> dict:
  """Mean samples/s by sampler name, e.g. {'ddim-50': 16.4, 'ddpm-1000': 0.93}.

  A run's `samples_per_s` belongs to its `sampler` (when it names one); the other timed
  samplers are its `samples_per_s_<name>_<steps>` entries.
  """
  by_name: dict = {}
  for r in ok:
    if r.get('sampler') and r.get('samples_per_s') is not None:
      by_name.setdefault(r['sampler'], []).append(r['samples_per_s'])
    for k, v in r.items():
      if k.startswith('samples_per_s_') and v is not None:
        by_name.setdefault(k[len('samples_per_s_') :].replace('_', '-'), []).append(v)
  return {name: float(np.mean(v)) for name, v in by_name.items()} if by_name else {}


def summarize(row: Row, runs: list[dict], speed_28: float | None) -> dict:
  ok = [r for r in runs if not r.get('diverged')]
  gan = row.likelihood == 'none'
  metric = 'fid' if gan else 'test_bpd'
  mean, std = _mean_std([r.get(metric) for r in ok])
  has_fid = any(r.get('fid') is not None for r in ok)
  collapsed = sum(1 for r in ok if has_fid and (r.get('class_coverage') or 0) < 5)
  times = [r['time_to_target_s'] for r in ok]
  reached = [t for t in times if t is not None]
  return {
    'family': row.family,
    'model': row.model,
    'config': f'configs/{row.config}',
    'seeds': len(runs),
    'steps': runs[0]['train_steps'] if runs else None,
    'metric': metric,
    'mean': mean,
    'std': std,
    'diverged': sum(1 for r in runs if r.get('diverged')),
    'collapsed': collapsed,
    'likelihood': row.likelihood,
    'bound': ok[0].get('bound') if ok else None,
    'fid': _mean_std([r.get('fid') for r in ok]) if has_fid else None,  # (mean, std)
    'fid_floor': _mean_std([r.get('fid_floor') for r in ok])[0] if has_fid else None,
    'class_coverage': (_mean_std([r.get('class_coverage') for r in ok])[0] if has_fid else None),
    'samples_per_s_8x8': _mean_std([r.get('samples_per_s') for r in ok])[0],
    'samples_per_s_by_sampler': _sampler_speeds(ok),
    'samples_per_s_28x28': speed_28,
    'latent_dims': ok[0].get('latent_dims') if ok else None,
    'linear_probe_accuracy': _mean_std([r.get('linear_probe_accuracy') for r in ok])[0],
    'train_steps_per_s': _mean_std([r.get('train_steps_per_s') for r in ok])[0],
    'target_bpd': row.target_bpd,
    'time_to_target_s': float(np.median(reached)) if reached else None,
    'reached_target': f'{len(reached)}/{len(ok)}',
  }


def _f(x, fmt='{:.3f}'):
  return '-' if x is None else fmt.format(x)


def to_markdown(rows: list[dict], meta: dict) -> str:
  lines = [
    '# Generative-model families on the digits, measured',
    '',
    f'{meta["machine"]}; jax {meta["jax"]}; seeds {meta["seeds"]}; budget '
    f'`{meta["budget"]}`; written by `python benchmarks/family_table.py` '
    f'({meta["wall_min"]:.0f} min).',
    'Test split: last 360 digits (8x8, 17 levels). Bits/dim: uniform 4.087, Gaussian '
    'mixture 2.743. GAN: Frechet distance in the features of a digits MLP classifier '
    '(not Inception FID).',
    '',
    '| family | steps | stability: test metric (mean ± std) | diverged / collapsed | '
    'likelihood | samples/s 8x8 | samples/s 28x28 | latent dims | linear probe acc | '
    'train steps/s | time to target |',
    '|---|---:|---|---:|---|---:|---:|---:|---:|---:|---|',
  ]
  for r in rows:
    # (mean, std) of the FID; a GAN row written before rows had 'fid' holds it as its metric.
    fids = r.get('fid') or ((r['mean'], r['std']) if r['metric'] == 'fid' else None)
    fid = (
      f'FID {_f(fids[0], "{:.2f}")}'
      + (f' ± {_f(fids[1], "{:.2f}")}' if r['seeds'] > 1 else '')
      + ' (floor '
      f'{_f(r["fid_floor"], "{:.2f}")}, coverage {_f(r["class_coverage"], "{:.1f}")}/10)'
      if fids
      else ''
    )
    if r['metric'] == 'fid':
      stab, lik = fid, 'none'
    else:
      stab = (
        f'{_f(r["mean"])} ± {_f(r["std"])} bits/dim'
        if r['seeds'] > 1
        else f'{_f(r["mean"])} bits/dim'
      ) + (f'; {fid}' if fid else '')
      lik = (
        f'{r["likelihood"]}'
        + (f' ({r["bound"]})' if r['likelihood'] in ('bound', 'ode') else '')
        + f': {_f(r["mean"])} bits/dim'
      )
    speeds = r.get('samples_per_s_by_sampler') or {}
    speed_8 = (
      '; '.join(f'{name.upper()} {_f(v, "{:,.3g}")}' for name, v in sorted(speeds.items()))
      if len(speeds) > 1
      else _f(r['samples_per_s_8x8'], '{:,.0f}')
    )
    seeds = r.get('seed_list')
    if seeds is not None and seeds != meta['seeds']:
      stab += f' (seeds {seeds})'
    target = (
      '-'
      if r['target_bpd'] is None
      else f'{_f(r["time_to_target_s"], "{:.0f}")} s to < {r["target_bpd"]} '
      f'({r["reached_target"]} seeds)'
    )
    lines.append(
      f'| {r["family"]} | {r["steps"]} | {stab} | {r["diverged"]} / {r["collapsed"]} | '
      f'{lik} | {speed_8} | '
      f'{_f(r["samples_per_s_28x28"], "{:,.1f}")} | {r["latent_dims"] or "-"} | '
      f'{_f(r["linear_probe_accuracy"])} | {_f(r["train_steps_per_s"], "{:.1f}")} | '
      f'{target} |'
    )
  return '\n'.join(lines) + '\n'


def merge_rows(path: str, rows: list[dict], runs: dict) -> tuple[dict, list[dict], dict]:
  """`path`'s table with `rows` (and their `runs`) replacing those of the same model.

  The header (`meta`) stays the existing table's; a merged row keeps its own `seed_list`
  and `measured` (command, jax, date), and the table names its seeds where they differ.
  """
  with open(path) as f:
    old = json.load(f)
  new = {r['model']: r for r in rows}
  order = [r.model for r in ROWS]
  kept = [r for r in old['rows'] if r['model'] not in new]
  for r in kept:
    r.setdefault('seed_list', old['meta']['seeds'])
  merged = sorted(
    kept + rows, key=lambda r: order.index(r['model']) if r['model'] in order else len(order)
  )
  return old['meta'], merged, {**old.get('runs', {}), **runs}


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  p.add_argument('--seeds', default='0,1,2')
  p.add_argument('--rows', default=','.join(r.model for r in ROWS))
  p.add_argument('--budget', default='table', choices=['table', 'config'])
  p.add_argument('--data_dir', default=None, help='tfds data_dir (default: tfds default)')
  p.add_argument(
    '--steps',
    type=int,
    default=None,
    help='train every row this many steps instead (smoke runs, tests)',
  )
  p.add_argument(
    '--set',
    dest='settings',
    action='append',
    type=parse_setting,
    default=[],
    metavar='KEY=VALUE',
    help='a config field of every row, e.g. --set hidden=8 (repeatable; smoke runs, tests)',
  )
  p.add_argument('--workdir', default='/tmp/gm_family_table')
  p.add_argument(
    '--merge',
    action='store_true',
    help='keep the other rows of an existing <out>.json (and its header); the '
    'rows run now replace those of the same model',
  )
  p.add_argument('--out', default=os.path.join(ROOT, 'benchmarks', 'results', 'family_table'))
  args = p.parse_args(argv)
  seeds = [int(s) for s in args.seeds.split(',') if s]
  wanted = args.rows.split(',')
  unknown = set(wanted) - {r.model for r in ROWS}
  if unknown or not seeds:
    p.error(f'unknown rows {sorted(unknown)}' if unknown else '--seeds is empty')
  t0 = time.time()
  settings = tuple(args.settings)
  rows, runs_out = [], {}
  for row in ROWS:
    if row.model not in wanted:
      continue
    runs = []
    for seed in seeds:
      budget = args.budget if args.steps is None else f'steps{args.steps}'
      if settings:  # not the workdirs of the shipped configs
        budget += '-set' + hashlib.sha1(repr(settings).encode()).hexdigest()[:8]
      workdir = os.path.join(args.workdir, budget, row.model, f'seed{seed}')
      result = run_one(row, seed, workdir, args.budget, args.steps, args.data_dir, settings)
      print(
        json.dumps(
          {
            'model': row.model,
            'seed': seed,
            **{
              k: result.get(k)
              for k in ('test_bpd', 'fid', 'diverged', 'time_to_target_s', 'wall_s')
            },
          }
        ),
        flush=True,
      )
      runs.append(result)
    summary = summarize(row, runs, sampling_speed_28(row, settings=settings))
    summary['seed_list'] = seeds
    summary['measured'] = {
      'command': ' '.join(sys.argv),
      'jax': jax.__version__,
      'date': time.strftime('%Y-%m-%d'),
      'budget': args.budget,
      # config fields changed from the shipped configs (`--set`): the row is not theirs
      **({'settings': dict(settings)} if settings else {}),
    }
    print(json.dumps(summary), flush=True)
    rows.append(summary)
    runs_out[row.model] = runs
  meta = {
    'machine': f'{platform.machine()}, {os.cpu_count()} cores',
    'jax': jax.__version__,
    'seeds': seeds,
    'budget': args.budget if args.steps is None else f'{args.steps} steps',
    'table_steps': TABLE_STEPS,
    'wall_min': (time.time() - t0) / 60,
    'command': ' '.join(sys.argv),
  }
  if args.merge and os.path.exists(args.out + '.json'):
    meta, rows, runs_out = merge_rows(args.out + '.json', rows, runs_out)
  os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
  with open(args.out + '.json', 'w') as f:
    json.dump({'meta': meta, 'rows': rows, 'runs': runs_out}, f, indent=1, default=str)
  with open(args.out + '.md', 'w') as f:
    f.write(to_markdown(rows, meta))
  print(to_markdown(rows, meta))


if __name__ == '__main__':
  main()
