"""Active latent units of a trained IWAE-table row (Burda et al. 2016, Section 5.2).

    python benchmarks/papers/active_units.py --workdir=WORKDIR --rows=vae_k1 [--steps N] \
        [--set FIELD=VALUE ...] [--num_samples 100]

Takes the same `--workdir`, `--rows`, `--steps` and `--set` as the `iwae_table1.py` run
that trained the row (they rebuild its config), reads the best parameters of its newest
checkpoint, and prints JSON per row: the number of units with
`Cov_x(E_q[u | x]) > 0.01` on the 10,000 test images (binarised as the row evaluates
them), per stochastic layer, and the row's linear-probe accuracy from its `eval.json`
when there is one.
"""

import json
import os

import _common
import iwae_table1


def main(argv=None):
  p = _common.parser(__doc__.split('\n\n')[0])
  p.add_argument('--num_samples', type=int, default=100,
                 help='draws of z per image for the second layer E_q[z2 | x]')
  args = p.parse_args(argv)
  import jax
  from gm_jax.evaluate import activity
  from gm_jax import families
  from gm_jax.families import vae
  from gm_jax.train import checkpoint as ckpt_lib

  results = []
  for row in _common.selected(iwae_table1.ROWS, args):
    config, workdir = _common.row_config('iwae_table1', row, args)
    directory = os.path.join(workdir, 'checkpoints')
    step = None
    if os.path.isdir(directory):  # read only: is_primary=False creates and moves nothing
      with ckpt_lib.Checkpointer(directory, is_primary=False) as checkpointer:
        step = checkpointer.latest_step()
        state = checkpointer.read(step) if step is not None else None
    if step is None:
      raise SystemExit(f'{row.key}: no checkpoint in {directory}; train the row first '
                       '(benchmarks/papers/iwae_table1.py with the same arguments)')
    config, _, splits = families.setup(config)  # the binarised splits the row trained on
    model = vae.build_model(config, splits.info)
    means = activity.vae_expected_means(model, state['best_params'], splits.test['image'],
                                        jax.random.key(0), num_samples=args.num_samples)
    rec = dict(row=row.key, checkpoint_step=step, best_step=int(state['best_step']),
               threshold=activity.THRESHOLD, num_samples=args.num_samples,
               active=activity.active_units(means))
    eval_path = os.path.join(workdir, 'eval.json')
    if os.path.exists(eval_path):
      with open(eval_path) as f:
        rec['linear_probe_accuracy'] = json.load(f).get('linear_probe_accuracy')
    results.append(rec)
    print(json.dumps(rec, sort_keys=True), flush=True)
  return results


if __name__ == '__main__':
  main()
