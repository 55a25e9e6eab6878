"""benchmarks/papers/_common.py: budget cells, row selection, row configs."""

import ast
import importlib.util
import os
import re
import sys

import pytest

_PAPERS = os.path.join(os.path.dirname(__file__), '..', '..', 'benchmarks', 'papers')


def _load_script(name: str, module_name: str):
  """benchmarks/papers/ is a folder of scripts, not a package: load one by its path (no
  sys.path edit). The scripts `import _common`, so that one is registered as `_common`."""
  spec = importlib.util.spec_from_file_location(module_name, os.path.join(_PAPERS, f'{name}.py'))
  module = importlib.util.module_from_spec(spec)
  sys.modules[module_name] = module  # dataclasses look their module up there
  spec.loader.exec_module(module)
  return module


_common = _load_script('_common', '_common')


def _record(steps, planned):
  return dict(
    label='VAE',
    paper='86.76 nats',
    ours='89.82 nats (iwae-5000)',
    protocol='p',
    steps=steps,
    planned_steps=planned,
    batch_size=500,
    wall_s=120.0,
    device='NVIDIA H100 80GB HBM3',
    command='python x.py',
    eval={'train_steps_per_s': 200.0},
  )


def test_budget_of_a_run_stopped_by_its_time_budget():
  table = _common.markdown('t', [_record(138_023, 150_000)])
  assert (
    '138,023 steps (stopped by config.max_train_seconds; schedule planned over '
    '150,000) x 500, 200 steps/s = 11.5 min of training steps'
  ) in table


def test_budget_of_a_finished_run():
  table = _common.markdown('t', [_record(100_000, 100_000)])
  assert '| 100,000 steps x 500, 200 steps/s = 8.3 min of training steps;' in table
  assert 'stopped' not in table


def test_budget_of_a_slow_run_keeps_three_significant_digits():
  record = dict(_record(6_896, 7_000), eval={'train_steps_per_s': 1.2705})
  assert ' x 500, 1.27 steps/s = 90.5 min of training steps' in _common.markdown('t', [record])
  record['eval'] = {}  # no speed recorded: no rate in the cell
  assert (
    '| 6,896 steps (stopped by config.max_train_seconds; schedule planned over 7,000) x 500; '
    'this invocation' in _common.markdown('t', [record])
  )


def test_budget_of_a_run_started_from_another_runs_parameters():
  record = dict(
    _record(13_000, 13_000),
    eval={'train_steps_per_s': 3.0, 'init_from_step': 10_768, 'init_from': '/runs/glow'},
  )
  assert (
    '13,000 steps x 500, 3 steps/s = 72.2 min of training steps, started from the '
    'parameters of a run of 10,768 steps (`init_from=/runs/glow`); this invocation'
  ) in _common.markdown('t', [record])


def _args(**kw):
  args = _common.parser('t').parse_args([])
  for k, v in kw.items():
    setattr(args, k, v)
  return args


ROWS = [
  _common.Row(
    key=k, label=k, paper='1', config='vae', overrides=dict(latent_dim=7), metric=str, protocol='p'
  )
  for k in ('a', 'b', 'c')
]


def test_rows_are_selected_in_table_order_and_an_unknown_key_is_named():
  assert [r.key for r in _common.selected(ROWS, _args())] == ['a', 'b', 'c']
  assert [r.key for r in _common.selected(ROWS, _args(rows='c,a'))] == ['a', 'c']
  with pytest.raises(SystemExit, match=r'unknown row\(s\) vae_k2; this script has a, b, c'):
    _common.selected(ROWS, _args(rows='a,vae_k2'))


def test_row_config_applies_overrides_steps_and_sets_in_that_order():
  args = _args(workdir='/w', steps=123, set=['latent_dim=9', 'activation=tanh'])
  config, workdir = _common.row_config('iwae_table1', ROWS[1], args)
  assert workdir == os.path.join('/w', 'iwae_table1', 'b')
  assert (config.num_train_steps, config.latent_dim, config.activation) == (123, 9, 'tanh')
  config, _ = _common.row_config('iwae_table1', ROWS[1], _args())
  assert config.latent_dim == 7


def test_a_set_field_nothing_reads_is_named_with_close_matches():
  with pytest.raises(SystemExit, match=r"no field 'logit_alpa' .*row b.*did you mean logit_alpha"):
    _common.row_config('t', ROWS[1], _args(set=['logit_alpa=1e-6']))
  with pytest.raises(SystemExit, match=r"--set needs FIELD=VALUE; got 'beta'"):
    _common.row_config('t', ROWS[1], _args(set=['beta']))
  # Fields of the config, of the row's overrides, and optional ones trainers read pass.
  config, _ = _common.row_config(
    't',
    ROWS[1],
    _args(set=['batch_size=8', 'latent_dim=3', 'kl_warmup_steps=10', 'progress_bar=False']),
  )
  assert (config.batch_size, config.latent_dim, config.kl_warmup_steps) == (8, 3, 10)


def _module_defaults(source: str) -> set:
  """The keys of module-level `DEFAULTS = {...}` / `X_DEFAULTS = {...}` dicts (a family's own
  settings' defaults, or a shared group of them such as `_unet_settings.CONDITIONING_DEFAULTS`)."""
  keys = set()
  for node in ast.parse(source).body:
    if (
      isinstance(node, ast.Assign)
      and isinstance(node.value, ast.Dict)
      and any(
        isinstance(t, ast.Name) and (t.id == 'DEFAULTS' or t.id.endswith('_DEFAULTS'))
        for t in node.targets
      )
    ):
      keys |= {k.value for k in node.value.keys if isinstance(k, ast.Constant)}
  return keys


def test_optional_fields_are_the_ones_trainers_have_a_default_for():
  """Every family setting with a default is in a family module's `DEFAULTS` (no inline
  `config.get(field, default)` in gm_jax/ or benchmarks/), and those are the optional
  fields."""
  from gm_jax.train import defaults

  repo = os.path.join(os.path.dirname(__file__), '..', '..')
  inline = {'gm_jax': set(), 'benchmarks': set()}
  declared = set()
  for top in ('gm_jax', 'benchmarks'):
    for folder, _, files in os.walk(os.path.join(repo, top)):
      for name in files:
        if name.endswith('.py'):
          with open(os.path.join(folder, name)) as f:
            source = f.read()
          inline[top] |= set(re.findall(r"config\.get\('([a-z_0-9]+)'", source))
          if top == 'gm_jax':
            declared |= _module_defaults(source)
  # gm_jax/bench.py reads `architecture` only to report it (None where absent).
  assert inline['gm_jax'] - {'architecture'} == set()
  # The PyTorch replicas read the trainer's and the families' settings with defaults.
  assert inline['benchmarks'] - set(defaults.TRAINING) <= _common.optional_fields()
  # Modules that spread another's DEFAULTS (`**binarization.DEFAULTS`) declare those too.
  from gm_jax.families import _binarization

  declared |= set(_binarization.DEFAULTS)
  assert declared - set(defaults.TRAINING) == _common.optional_fields()


def test_every_config_has_the_shared_training_settings():
  """What lets OPTIONAL_FIELDS leave out `defaults.TRAINING`: `--set` finds them in the config."""
  from gm_jax.train import defaults

  for name in ('vae', 'glow', 'dcgan', 'naive_bayes', 'cyclegan_photos', 'char_lm'):
    config = _common._load_config(name)
    assert set(defaults.TRAINING) <= set(config), name


def test_list_prints_the_selected_rows_only(capsys):
  with pytest.raises(SystemExit) as exit_info:
    _common.run_rows('t', ROWS, _args(list=True, rows='c'))
  assert exit_info.value.code == 0
  assert capsys.readouterr().out.splitlines() == ['c: c (paper 1)']
  with pytest.raises(SystemExit, match='unknown row'):
    _common.run_rows('t', ROWS, _args(list=True, rows='d'))


def test_gan_loss_names_expand_to_their_rows_at_every_seed():
  gan = _load_script('gan', 'benchmarks_papers_gan')

  assert gan.expand_rows('lsgan,minimax_s1', [0, 1]) == 'lsgan_s0,lsgan_s1,minimax_s1'
  assert gan.expand_rows('', [0, 1, 2]) == ''
  keys = [r.key for r in gan.rows([0, 1, 2])]
  expanded = gan.expand_rows(','.join(gan.LOSSES), [0, 1, 2]).split(',')
  assert expanded == keys  # every row, in the table's order
  assert [
    r.key
    for r in _common.selected(
      gan.rows([0, 1, 2]), _args(rows=gan.expand_rows('non_saturating', [0, 1, 2]))
    )
  ] == ['non_saturating_s0', 'non_saturating_s1', 'non_saturating_s2']


def _trainer_without_binarization(config, workdir):
  del config, workdir


def test_check_binarize_stops_a_binarised_row_whose_trainer_ignores_it():
  import ml_collections

  from gm_jax import families

  # No `binarize` field, or 'none': the default, nothing to check.
  _common.check_binarize(ml_collections.ConfigDict({'model': 'x'}), _trainer_without_binarization)
  config = _common._load_config('vae')
  _common.check_binarize(config, _trainer_without_binarization)
  with config.unlocked():
    config.binarize = 'static'
  _common.check_binarize(config, families.train_and_evaluate)
  with pytest.raises(_common.ModelNotAvailable, match="binarize='static'"):
    _common.check_binarize(config, _trainer_without_binarization)


def test_every_papers_row_config_builds_with_its_overrides():
  """The row overrides fit the types the configs' fields have (configs/common.py types them)."""
  flows, gan, hierarchical_vae, iwae_table1, pixelcnn = (
    _load_script(name, f'benchmarks_papers_{name}')
    for name in ('flows', 'gan', 'hierarchical_vae', 'iwae_table1', 'pixelcnn')
  )

  tables = {
    'flows': flows.ROWS,
    'gan': gan.rows([0, 1]),
    'iwae_table1': iwae_table1.ROWS,
    'hierarchical_vae': hierarchical_vae.ROWS,
    'pixelcnn': pixelcnn.ROWS,
  }
  for script, rows in tables.items():
    for row in rows:
      config, _ = _common.row_config(script, row, _args(workdir='/w'))
      for field, value in row.overrides.items():
        assert config[field] == value, (script, row.key, field)
