"""The family-module contract (docs/families.md), checked for every registered model.

Each model's module exposes `MODELS`, `DEFAULTS` (each entry documented in
`DEFAULTS_DOC`), `check_config` (a bad value is an error naming its field) and
`make_family`; the model has a shipped config, a `demo.DEMO_RUNS` row and a
`tests/configs_snapshot.json` entry; and it trains a few steps through
`gm_jax.families.train_and_evaluate` on tiny settings, killed after the first
checkpoint, resumed, evaluated and sampled. That run (tests/families/conftest.py
`contract_run`, once per test process) is the one the family's own tests read too, with
the settings they need (`SHARED`).
"""

import glob
import importlib
import json
import math
import os

import pytest

from gm_jax import data as gm_data
from gm_jax import demo
from gm_jax import families
from tests.families.conftest import checkpoint_steps

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MODELS = families.model_names()

# Tiny widths and few evaluation draws: every shipped config's field of these names is
# overridden (only where the config has it).
TINY = {
  'hidden': (8,),
  'latent_dim': 2,
  'top_hidden': (8,),
  'num_couplings': 2,
  'num_hidden_layers': 1,
  'num_scales': 1,
  'steps_per_scale': 1,
  'num_checkerboard': 1,
  'num_channel': 1,
  'num_final': 1,
  'channels': 8,
  'latent_channels': 2,
  'groups_per_scale': (1,),
  'normalization': 'none',
  'num_layers': 1,
  'dilations': (1, 2),
  'generator_features': (8, 8),
  'discriminator_features': (8, 8),
  'generator_filters': 4,
  'discriminator_filters': 4,
  'num_residual_blocks': 1,
  'discriminator_layers': 1,
  'pool_size': 4,
  'channel_mults': (1,),
  'num_res_blocks': 1,
  'attention': False,
  'iwae_samples': 2,
  'iwae_batch_size': 64,
  'eval_dequant_samples': 1,
  'eval_bound_samples': 1,
  'likelihood_steps': 2,
  'timing_samplers': (),
  'sample_steps': 2,
  'fid_samplers': ('dpmpp_2m:2',),
  'trajectory_samples': 2,
  'fid_num_samples': 16,
  'sample_batch_size': 16,
  'val_samples': 1,
  'sample_length': 8,
  'picture_temperatures': (1.0,),
  'loss_group_size': 1,
  'num_pairs': 16,
  'val_pairs': 8,
  'teacher_steps': 2,
  'num_bins': 2,
}
# Smaller data where the shipped config's is large: CycleGAN between two digit classes.
DATA = {'cyclegan': {'dataset': 'digits', 'domain_a': '0', 'domain_b': '1'}}
# Settings a family's own tests need of the same run, on top of TINY (they read
# `contract_run(model)`): VDM class-conditional with a learned schedule and a timed DDPM
# (test_diffusion); flow matching's exact-trace likelihood and a timed Euler sampler
# (test_diffusion); a class-conditional DCGAN (test_gan); a VQ-VAE of 8 codes (test_vqvae);
# the HVAE of test_hvae, the CVAE of test_vae, the PixelCNN and char_lm of
# test_autoregressive, the NICE of test_flows.
# The compared and timed runs train 4 steps, killed after step 2: a step between two logs
# or checkpoints is timed (eval.json's train_steps_per_s; a checkpoint every step times none).
_TIMED = dict(num_train_steps=4, checkpoint_every=2, log_every=2, eval_every=2)
SHARED = {
  'diffusion': dict(
    _TIMED,
    conditional=True,
    noise_schedule='learned',
    timing_samplers=('ddpm:3',),
    timing_fid_samples=16,
    eval_bound_samples=2,
  ),
  'flow_matching': dict(
    _TIMED,
    timing_samplers=('euler:2',),
    likelihood_solver='euler',
    likelihood_steps=1,
    exact_trace_max_dims=64,
  ),
  'dcgan': dict(_TIMED, conditional=True),
  'cyclegan': _TIMED,
  'vqvae': dict(hidden=8, num_codes=8, embed_dim=4),
  # Long enough to learn (better than uniform: test_hvae, test_vae, test_autoregressive).
  'hvae': dict(
    groups_per_scale=(1, 1),
    channels=8,
    latent_channels=2,
    cells_per_group=0,
    output_cells=1,
    normalization='weight',
    spectral_reg=0.0,
    grad_skip_norm=0.0,
    num_train_steps=30,
    batch_size=32,
    warmup_steps=100,
    log_every=10,
    eval_every=15,
    checkpoint_every=15,
    iwae_samples=5,
    iwae_batch_size=360,
    num_samples=8,
    picture_temperatures=(1.0, 0.5),
  ),
  'cvae': dict(
    hidden=(64,),
    latent_dim=4,
    num_train_steps=80,
    batch_size=32,
    warmup_steps=100,
    log_every=20,
    eval_every=40,
    checkpoint_every=40,
    iwae_samples=20,
  ),
  'pixelcnn': dict(
    num_layers=2,
    learning_rate=3e-3,
    num_train_steps=30,
    batch_size=16,
    log_every=10,
    eval_every=10,
    checkpoint_every=10,
    max_to_keep=5,
    num_samples=4,
  ),
  'nice': dict(
    num_couplings=4,
    hidden=32,
    num_hidden_layers=1,
    num_train_steps=40,
    batch_size=32,
    log_every=10,
    eval_every=20,
    checkpoint_every=20,
    eval_dequant_samples=2,
    num_samples=10,
  ),
  'char_lm': dict(
    dilations=(1, 2, 4),
    num_train_steps=20,
    batch_size=16,
    log_every=10,
    eval_every=10,
    checkpoint_every=10,
    max_to_keep=5,
    sample_length=50,
    num_samples=2,
  ),
}
# Models whose resumed run is also compared, leaf for leaf, with an uninterrupted one.
COMPARED = ('diffusion', 'dcgan', 'cyclegan')
# The tests that read one run share a worker under `--dist loadgroup` (the run is a session
# fixture, per worker): reflow reads the flow_matching run (its teacher), vqvae_prior the
# vqvae run (its first stage).
GROUPS = {
  'diffusion': 'diffusion_train',
  'edm': 'edm_run',
  'flow_matching': 'flow_runs',
  'reflow': 'flow_runs',
  'dcgan': 'gan_runs',
  'cyclegan': 'gan_runs',
  'vqvae': 'vqvae_runs',
  'vqvae_prior': 'vqvae_runs',
  'hvae': 'hvae_run',
  'cvae': 'cvae_run',
  'pixelcnn': 'ar_runs',
  'char_lm': 'ar_runs',
  'nice': 'nice_run',
}
# A bad value of one family setting per module (or model), and the field it names.
BAD = {
  'logreg': ('l2', -1.0),
  'vae': ('objective', 'nonsense'),
  'hvae': ('free_bits', -1.0),
  'flows': ('coupling_scale', 'nonsense'),
  'nsf': ('num_bins', 1),
  'maf': ('permutation', 'nonsense'),
  'vqvae': ('num_codes', 1),
  'vqvae_prior': ('first_stage_workdir', '/nonexistent/vqvae'),
  'autoregressive': ('dropout_rate', 1.5),
  'gan': ('gan_loss', 'nonsense'),
  'cyclegan': ('pool_size', -1),
  'diffusion': ('sample_steps', 0),
  'edm': ('sampler', 'nonsense'),
  'classifiers': ('nb_variant', 'nonsense'),
  'consistency': ('ct_final_scales', 0),
  'reflow': ('num_pairs', 0),
}


def _config_names_of(model):
  """Shipped config files (names without .py) whose `model` is `model`, its own first."""
  names = sorted(os.path.basename(p)[:-3] for p in glob.glob(os.path.join(REPO, 'configs', '*.py')))
  names = [n for n in names if n not in ('__init__', 'common')]
  own = [n for n in names if n == model]
  return own + [
    n
    for n in names
    if n != model and importlib.import_module(f'configs.{n}').get_config().model == model
  ]


# Models whose tiny run starts from another shipped config than their own: configs/consistency.py
# distils a trained EDM run (test_consistency.py distils this module's tiny EDM run); the
# contract trains consistency without a teacher.
TINY_FROM = {'consistency': 'consistency_training'}


def _shipped_config(model):
  names = _config_names_of(model)
  assert names, f'no configs/*.py has model={model!r}'
  name = TINY_FROM.get(model, names[0])
  assert name in names, (model, name)
  return importlib.import_module(f'configs.{name}').get_config()


def _tiny(model, data_dir):
  config = _shipped_config(model)
  with config.unlocked():
    for name, value in TINY.items():
      if name in config:
        old = config[name]
        config[name] = (
          value if isinstance(old, (tuple, list)) or not isinstance(value, tuple) else value[0]
        )
    config.update(DATA.get(model, {}))
    if model == 'vqvae_prior':  # a second stage; contract_run trains its first
      config.first_stage_workdir = _first_stage_config_only(data_dir)
    # naive Bayes: its evaluation chunk (the fit is one full-batch step)
    config.batch_size = 8
    config.update(
      data_dir=data_dir,
      num_train_steps=3,
      checkpoint_every=1,
      log_every=1,
      eval_every=1,
      warmup_steps=0,
      # = fid_num_samples and sample_batch_size: samples.png reuses the FID draw's program
      num_samples=16,
      eval_batch_size=64,
      steps_per_loop=1,
      progress_bar=False,
    )
    config.update(SHARED.get(model, {}))
  return config


_FIRST_STAGES: dict = {}


def _first_stage_config_only(data_dir):
  """A workdir holding only the tiny vqvae's config.json: what `check_config` of
  `vqvae_prior` reads (contract_run trains the first stage the prior's run loads)."""
  if data_dir not in _FIRST_STAGES:
    from gm_jax.train import run_config

    # beside the data_dir fixture's folder, in the session's temporary folder (which
    # pytest cleans up; a tempfile.mkdtemp here was left in /tmp by every test process)
    workdir = os.path.join(os.path.dirname(os.path.abspath(data_dir)), 'contract_vqvae_config')
    os.makedirs(workdir, exist_ok=True)
    run_config.save(workdir, families.complete(_tiny('vqvae', data_dir)))
    _FIRST_STAGES[data_dir] = workdir
  return _FIRST_STAGES[data_dir]


def _grouped(models):
  """The models as parameters, each in its `GROUPS` xdist group (if any)."""
  return [
    pytest.param(m, marks=pytest.mark.xdist_group(GROUPS[m])) if m in GROUPS else m for m in models
  ]


@pytest.mark.parametrize('model', MODELS)
def test_module_exposes_the_contract(model):
  module = families.module_for(model)
  assert model in module.MODELS
  assert callable(module.check_config) and callable(module.make_family)
  assert isinstance(module.DEFAULTS, dict) and set(module.DEFAULTS) == set(module.DEFAULTS_DOC)
  for name, doc in module.DEFAULTS_DOC.items():
    assert isinstance(doc, str) and doc.strip() and '\n' not in doc, name
  # A family setting is the family's own: not a shared trainer default.
  from gm_jax.train import defaults

  assert not set(module.DEFAULTS) & set(defaults.TRAINING), model


@pytest.mark.parametrize('model', MODELS)
def test_check_config_names_a_bad_field(model, data_dir):
  module = families.module_for(model)
  field, value = BAD.get(model) or BAD[module.__name__.rsplit('.', 1)[1]]
  config = families.complete(_tiny(model, data_dir))
  module.check_config(config, gm_data.get_info(config.dataset))  # the good config passes
  config[field] = value
  with pytest.raises(ValueError, match=rf'config\.{field}\b'):
    module.check_config(config, gm_data.get_info(config.dataset))


@pytest.mark.parametrize('model', MODELS)
def test_model_has_a_config_a_demo_row_and_a_snapshot(model):
  names = _config_names_of(model)
  assert names, f'configs/{model}.py (or a config with model={model!r}) is missing'
  assert model in demo.DEMO_RUNS, f'gm_jax/demo.py DEMO_RUNS has no {model!r} row'
  assert demo.DEMO_RUNS[model][0][:-3] in names
  with open(os.path.join(REPO, 'tests', 'configs_snapshot.json')) as f:
    snapshot = json.load(f)
  assert set(names) & set(snapshot), f'tests/configs_snapshot.json has no config of {model!r}'


def test_unknown_model_is_named_with_the_known_ones():
  with pytest.raises(
    ValueError, match=r"'no_such_model'.*known models: char_lm, consistency, cvae, "
  ):
    families.module_for('no_such_model')


@pytest.mark.parametrize('model', _grouped(MODELS))
def test_trains_two_steps_resumes_evaluates_and_samples(model, contract_run):
  run = contract_run(model)
  config, workdir, ev = run.config, run.workdir, run.result
  assert run.killed
  saved = run.saved_at_kill
  assert saved and max(saved) < config.num_train_steps, saved
  assert not run.eval_after_kill
  with open(os.path.join(workdir, 'eval.json')) as f:
    assert json.load(f) == json.loads(json.dumps(ev))
  assert ev['model'] == model
  assert max(checkpoint_steps(workdir)) == config.num_train_steps
  if run.identical is not None:  # the resumed run ends where an uninterrupted one does
    assert run.identical
  if ev.get('samples_per_s') is not None:  # sampled (or translated): its pictures or text
    outputs = [n for n in os.listdir(workdir) if n.endswith(('.png', '.txt')) and n != 'loss.png']
    assert outputs, os.listdir(workdir)
  if 'test_bpd' in ev and 'test_nll_nats' in ev:
    info = gm_data.get_info(config.dataset)
    assert math.isclose(
      ev['test_bpd'], ev['test_nll_nats'] / (info.num_dims * math.log(2)), rel_tol=1e-6
    )
