"""The registry (`gm_jax/families/__init__.py`), chiefly a family from outside gm_jax:
found through its entry point, trained by `python -m gm_jax.main`.

The package is written into `tmp_path` (a diagonal Gaussian density on the digits' bin
centres, its `.dist-info` declaring the `gm_jax.families` entry point, and a config
file), and nothing of gm_jax is edited. Broken entry points are named.
"""

import json
import math
import os
import subprocess
import sys
import textwrap

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest
from scipy import stats

from gm_jax import data as gm_data
from gm_jax import families

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

FAMILY = '''
"""A diagonal Gaussian over the bin centres `(k + 1/2) / L` of an image's levels."""
import jax
import jax.numpy as jnp
import numpy as np

from gm_jax.train.family import Family

MODELS = ('diag_gauss',)
DEFAULTS = {'init_log_scale': 0.0}
DEFAULTS_DOC = {'init_log_scale': 'log standard deviation of every pixel at initialisation'}


def check_config(config, info):
  if info.kind != 'image':
    raise ValueError(f'config.dataset={info.name!r}: diag_gauss needs images')
  if not np.isfinite(config.init_log_scale):
    raise ValueError(f'config.init_log_scale must be finite, got {config.init_log_scale!r}')


def make_family(config, info):
  levels, dims = info.num_levels, info.num_dims

  def nll(params, images):  # [B]: -log density of the bin centres + D log L, in nats
    x = (jnp.reshape(images, (images.shape[0], -1)).astype(jnp.float32) + 0.5) / levels
    z = (x - params['mean']) * jnp.exp(-params['log_scale'])
    log_p = -0.5 * z ** 2 - params['log_scale'] - 0.5 * jnp.log(2 * jnp.pi)
    return -jnp.sum(log_p, -1) + dims * jnp.log(levels)

  def init(key, batch):
    del key, batch
    return {'mean': jnp.full((dims,), 0.5), 'log_scale': jnp.full((dims,), config.init_log_scale)}

  def loss(params, batch, key, *, train):
    del key, train
    value = nll(params, jnp.asarray(batch['image']))
    return jnp.mean(value), {'bpd': jnp.mean(value) / (dims * jnp.log(2.0))}

  def evaluate(params, splits, key, cfg):
    del key, cfg
    value = np.asarray(nll(params, jnp.asarray(splits.test['image'])), np.float64)
    return {'test_nll_nats': float(value.mean()),
            'test_bpd': float(value.mean() / (dims * np.log(2.0)))}

  def sample(params, key, num):
    x = params['mean'] + jnp.exp(params['log_scale']) * jax.random.normal(key, (num, dims))
    k = jnp.clip(jnp.floor(x * levels), 0, levels - 1)
    return np.asarray(k, np.uint8).reshape((num,) + tuple(info.shape))

  return Family(name=config.model, init=init, loss=loss, evaluate=evaluate, sample=sample,
                validation_metric=None)
'''

CONFIG = """
import ml_collections


def get_config():
  return ml_collections.ConfigDict(dict(
      model='diag_gauss', dataset='digits', data_dir={data_dir!r}, batch_size=32,
      num_train_steps=4, learning_rate=0.05, seed=0, checkpoint_every=2, log_every=2,
      parallel='none', num_samples=4, progress_bar=False))
"""


def _dist_info(root, name, entry_points):
  info = root / f'{name}-0.1.dist-info'
  info.mkdir()
  (info / 'METADATA').write_text(f'Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n')
  (info / 'entry_points.txt').write_text('[gm_jax.families]\n' + entry_points + '\n')


def _main(root, config_file, workdir, *extra):
  env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(root), REPO]))
  return subprocess.run(
    [
      sys.executable,
      '-m',
      'gm_jax.main',
      f'--config={config_file}',
      f'--workdir={workdir}',
      *extra,
    ],
    cwd=str(root),
    env=env,
    capture_output=True,
    text=True,
    timeout=600,
  )


def _params(workdir):
  with ocp.CheckpointManager(os.path.join(workdir, 'checkpoints')) as mngr:
    restored = mngr.restore(mngr.latest_step(), args=ocp.args.StandardRestore())
  return jax.tree.map(np.asarray, restored['params'])


def test_an_entry_point_family_trains_checkpoints_evaluates_and_resumes(tmp_path, data_dir):
  root = tmp_path / 'site'
  (root / 'gm_ext_gauss').mkdir(parents=True)
  (root / 'gm_ext_gauss' / '__init__.py').write_text('')
  (root / 'gm_ext_gauss' / 'family.py').write_text(FAMILY)
  _dist_info(root, 'gm_ext_gauss', 'diag_gauss = gm_ext_gauss.family')
  config_file = root / 'diag_gauss_config.py'
  config_file.write_text(CONFIG.format(data_dir=data_dir))
  workdir = tmp_path / 'run'

  first = _main(root, config_file, workdir)
  assert first.returncode == 0, first.stderr[-3000:]
  assert sorted(int(s) for s in os.listdir(workdir / 'checkpoints') if s.isdigit())[-1] == 4
  ev = json.loads((workdir / 'eval.json').read_text())
  assert ev['model'] == 'diag_gauss' and (workdir / 'samples.png').exists()
  # The family's test NLL, recomputed with SciPy from the checkpointed parameters.
  params = _params(workdir)
  test = gm_data.load_splits('digits', data_dir=data_dir).test['image']
  x = (test.reshape(len(test), -1).astype(np.float64) + 0.5) / 17
  nll = lambda mean, log_scale: (
    x.shape[1] * math.log(17) - stats.norm.logpdf(x, mean, np.exp(log_scale)).sum(-1).mean()
  )
  np.testing.assert_allclose(
    ev['test_nll_nats'], nll(params['mean'], params['log_scale']), rtol=1e-5
  )
  assert ev['test_nll_nats'] < nll(0.5, 0.0)  # 4 steps of Adam improve on the initialisation

  # The same command with more steps resumes from step 4 (a constant learning rate).
  second = _main(root, config_file, workdir, '--config.num_train_steps=6')
  assert second.returncode == 0, second.stderr[-3000:]
  assert 'Resuming diag_gauss' in second.stdout + second.stderr
  assert json.loads((workdir / 'eval.json').read_text())['train_steps'] == 6


@pytest.fixture
def site(tmp_path, monkeypatch):
  """`tmp_path/site` on sys.path; the registry forgets what it found before and after."""
  root = tmp_path / 'site'
  root.mkdir()
  monkeypatch.syspath_prepend(str(root))
  families.clear_cache()
  yield root
  families.clear_cache()


def test_an_entry_point_that_fails_to_import_is_named(site):
  (site / 'gm_ext_broken.py').write_text('import no_such_module_anywhere\n')
  _dist_info(site, 'gm_ext_broken', 'broken = gm_ext_broken')
  with pytest.raises(
    ImportError,
    match=r'broken = gm_ext_broken .*gm_ext_broken.*'
    r'failed to import: ModuleNotFoundError',
  ):
    families.model_names()


def test_an_entry_point_module_without_the_contract_is_named(site):
  (site / 'gm_ext_partial.py').write_text("MODELS = ('partial',)\n")
  _dist_info(site, 'gm_ext_partial', 'partial = gm_ext_partial')
  with pytest.raises(
    ValueError,
    match=r'gm_ext_partial .*lacks DEFAULTS, DEFAULTS_DOC, '
    r'check_config, make_family',
  ):
    families.model_names()


def test_a_model_name_claimed_twice_is_named(site):
  (site / 'gm_ext_twin.py').write_text(
    textwrap.dedent("""
      MODELS = ('vae',)
      DEFAULTS = DEFAULTS_DOC = {}
      check_config = make_family = None
  """)
  )
  _dist_info(site, 'gm_ext_twin', 'twin = gm_ext_twin')
  with pytest.raises(
    ValueError,
    match=r"'vae' is claimed by two families: "
    r'gm_jax.families.vae .* and gm_ext_twin',
  ):
    families.model_names()


def test_resuming_a_run_saved_without_a_family_default_lets_it_through(tmp_path):
  """A config.json written before the family listed a setting (it trained at the default)
  resumes; one that set another value does not."""
  import ml_collections

  from gm_jax.train import family as family_lib
  from gm_jax.train import run_config

  module = families.module_for('realnvp')
  config = families.complete(ml_collections.ConfigDict({'model': 'realnvp', 'seed': 0}))
  saved = {k: v for k, v in config.to_dict().items() if k != 'num_couplings'}
  (tmp_path / run_config.FILENAME).write_text(json.dumps(saved))
  fam = family_lib.Family(
    name='realnvp',
    init=None,
    loss=None,
    evaluate=None,
    resume_may_change=frozenset({'eval_dequant_samples'}),
  )
  out = families.resuming_without_defaults(fam, module, config, str(tmp_path))
  assert out.resume_may_change == {'eval_dequant_samples', 'num_couplings'}
  assert run_config.changes(saved, config, may_change=out.resume_may_change) == []
  assert run_config.changes(saved, config) == ['num_couplings: (absent) -> 4']
  config.num_couplings = 8  # not the default: a change the trainer names
  out = families.resuming_without_defaults(fam, module, config, str(tmp_path))
  assert run_config.changes(saved, config, may_change=out.resume_may_change) == [
    'num_couplings: (absent) -> 8'
  ]
