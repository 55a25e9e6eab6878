"""`make demo`: train every family briefly on the embedded data and summarise.

    python -m gm_jax.demo --out demo [--only vae,cvae] [--data_dir DIR]

For each model it trains `configs/<model>.py` with the demo's shorter settings into
`<out>/<model>/` (checkpoints, metrics.jsonl, eval.json, samples.png, loss.png, ...),
then writes `<out>/summary.md` (one row per model) and `<out>/summary.json`.
Re-running resumes/reuses the finished runs.
"""

from gm_jax import _xla

_xla.configure_cpu_flags()

import argparse
import importlib.util
import json
import os
import sys
import time
import traceback

from gm_jax import _config_path

# model -> (config file, overrides for a brief run). Families add their rows here.
DEMO_RUNS = {
  'vae': ('vae.py', {'num_train_steps': 1000, 'iwae_samples': 200}),
  'cvae': ('cvae.py', {'num_train_steps': 1000, 'iwae_samples': 200}),
  'hvae': ('hvae.py', {'num_train_steps': 600, 'iwae_samples': 100}),
  'nice': ('nice.py', {'num_train_steps': 1000}),
  'realnvp': ('realnvp.py', {'num_train_steps': 500}),
  'glow': ('glow.py', {'num_train_steps': 600}),
  'maf': ('maf.py', {'num_train_steps': 300, 'eval_dequant_samples': 2}),  # budget ~20 s
  'nsf': ('nsf.py', {'num_train_steps': 300, 'eval_dequant_samples': 2}),  # budget ~20 s
  'vqvae': ('vqvae.py', {'num_train_steps': 300}),  # budget ~20 s
  # The second stage reads the first's workdir: '{out}' is the demo's --out.
  'vqvae_prior': (
    'vqvae_prior.py',
    {'num_train_steps': 300, 'first_stage_workdir': '{out}/vqvae', 'fid_num_samples': 500},
  ),  # budget ~20 s
  'dcgan': ('dcgan.py', {'num_train_steps': 1000}),
  'cyclegan': ('cyclegan_photos.py', {'num_train_steps': 150}),
  'pixelcnn': ('pixelcnn.py', {'num_train_steps': 300}),
  'char_lm': ('char_lm.py', {'num_train_steps': 400, 'sample_length': 200}),
  'diffusion': (
    'diffusion.py',
    {'num_train_steps': 1000, 'eval_bound_samples': 4, 'timing_samplers': ('ddim:50',)},
  ),
  'flow_matching': (
    'flow_matching.py',
    {'num_train_steps': 1000, 'timing_samplers': ('euler:50',)},
  ),
  'naive_bayes': ('naive_bayes.py', {}),
  'logreg': ('logreg.py', {}),
}

# The measured comparison across families (3 seeds each) is too long for the demo; the
# summary links the committed table and says how to regenerate it.
FAMILY_TABLE_NOTE = (
  'The classic family comparison (stability over 3 seeds, likelihood, sampling speed, '
  'representation, time to target), measured: benchmarks/results/family_table.md; '
  'regenerate with `make family-table` (~30 minutes on 2 cores).'
)

CONFIG_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'configs')


def load_config(path: str):
  """Imports a `configs/*.py` file and returns its `get_config()`."""
  _config_path.add_config_root(path)
  spec = importlib.util.spec_from_file_location('gm_config_' + os.path.basename(path)[:-3], path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config()


def _fmt(value, digits=3):
  if value is None:
    return '-'
  if isinstance(value, float):
    return f'{value:.{digits}f}' if abs(value) < 1e4 else f'{value:.3g}'
  return str(value)


def summary_table(rows: list[dict]) -> str:
  """Markdown table, one row per model's eval.json."""
  header = (
    '| model | dataset | test bits/dim (text: bits/char) | bound | test accuracy | '
    'test log-loss | test ECE | FID (floor) | translation acc. | train steps/s | '
    'samples/s |'
  )
  lines = [header, '|' + '---|' * 11]
  for r in rows:
    lines.append(
      '| '
      + ' | '.join(
        [
          r.get('model', '?') + (' (p(x&#124;y))' if r.get('likelihood') == 'p(x|y)' else ''),
          r.get('dataset', '?'),
          _fmt(r.get('test_bpd')),
          _fmt(r.get('bound')),
          _fmt(r.get('test_accuracy')),
          _fmt(r.get('test_log_loss')),
          _fmt(r.get('test_ece')),
          # GANs have no likelihood: FID with its real-data floor; CycleGAN's accuracy.
          '-' if r.get('fid') is None else f'{_fmt(r["fid"], 2)} ({_fmt(r.get("fid_floor"), 2)})',
          _fmt(r.get('translation_accuracy')),
          _fmt(r.get('train_steps_per_s'), 1),
          _fmt(r.get('samples_per_s'), 0),
        ]
      )
      + ' |'
    )
  return '\n'.join(lines) + '\n'


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--out', default='demo')
  parser.add_argument('--only', default='', help='comma-separated models (default: all)')
  parser.add_argument('--data_dir', default=None)
  args = parser.parse_args(argv)

  from gm_jax import families

  wanted = [m for m in args.only.split(',') if m] or list(DEMO_RUNS)
  os.makedirs(args.out, exist_ok=True)
  rows, failures = [], []
  t_start = time.time()
  for model in wanted:
    cfg_file, overrides = DEMO_RUNS[model]
    cfg_path = os.path.join(CONFIG_DIR, cfg_file)
    if not os.path.exists(cfg_path):
      print(f'[demo] {model}: {cfg_file} not in this build, skipped', flush=True)
      continue
    try:
      families.module_for(model)
    except ValueError as e:
      print(f'[demo] {model}: skipped ({e})', flush=True)
      continue
    config = load_config(cfg_path)
    for k, v in overrides.items():
      if isinstance(v, str) and '{out}' in v:
        v = v.replace('{out}', args.out)
      config[k] = v
    if args.data_dir:
      config.data_dir = args.data_dir
    config.progress_bar = False
    workdir = os.path.join(args.out, model)
    print(f'[demo] {model}: training {config.num_train_steps} steps -> {workdir}', flush=True)
    t0 = time.time()
    try:
      result = families.train_and_evaluate(config, workdir)
    except Exception:
      traceback.print_exc()
      failures.append(model)
      continue
    result['demo_seconds'] = round(time.time() - t0, 1)
    rows.append(result)
    print(
      f'[demo] {model}: '
      + json.dumps(
        {
          k: result.get(k)
          for k in (
            'test_bpd',
            'bound',
            'test_accuracy',
            'train_steps_per_s',
            'samples_per_s',
            'fid',
            'fid_floor',
            'translation_accuracy',
            'demo_seconds',
          )
        }
      ),
      flush=True,
    )

  table = summary_table(rows)
  with open(os.path.join(args.out, 'summary.md'), 'w') as f:
    f.write('# gm_jax demo summary\n\n')
    f.write(
      'Embedded datasets; bits/dim of the discrete data (digits: 17 levels). '
      'Reference points on the digits test split: uniform 4.087, Gaussian mixture '
      '2.743, logistic autoregressive 2.063 bits/dim.\n\n'
    )
    f.write(table)
    f.write(
      f'\nTotal time: {time.time() - t_start:.0f} s. Per-model folders hold '
      'samples.png, loss.png and eval.json.\n'
    )
    f.write(f'\n{FAMILY_TABLE_NOTE}\n')
  with open(os.path.join(args.out, 'summary.json'), 'w') as f:
    json.dump(rows, f, indent=2, sort_keys=True)
  print('\n' + table)
  print(f'[demo] wrote {os.path.join(args.out, "summary.md")} in {time.time() - t_start:.0f} s')
  if failures:
    print(f'[demo] FAILED: {", ".join(failures)}', file=sys.stderr)
    return 1
  return 0


if __name__ == '__main__':
  sys.exit(main())
