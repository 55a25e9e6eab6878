"""`train_and_evaluate` for naive Bayes and logistic regression on the embedded digits.

The numbers are checked against scikit-learn fitted on the same split.
"""

import importlib.util
import json
import os

import numpy as np
import pytest
from scipy import special
from sklearn import metrics
from sklearn import naive_bayes

from gm_jax import data as gm_data
from gm_jax import families
from gm_jax.evaluate import calibration

_CONFIGS = os.path.join(os.path.dirname(__file__), '..', '..', 'configs')


def _load_config(name, **overrides):
  spec = importlib.util.spec_from_file_location(name, os.path.join(_CONFIGS, f'{name}.py'))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  config = module.get_config()
  config.update(overrides)
  return config


@pytest.fixture(scope='session')
def splits(data_dir):
  return gm_data.load_splits('digits', data_dir=data_dir, validation_fraction=0.1)


def test_naive_bayes_matches_sklearn_on_the_same_split(tmp_path, data_dir, splits):
  config = _load_config('naive_bayes', data_dir=data_dir, num_samples=20)
  results = families.train_and_evaluate(config, str(tmp_path))

  with open(tmp_path / 'eval.json') as f:
    assert json.load(f) == pytest.approx(results)
  for key in (
    'model',
    'dataset',
    'train_steps_per_s',
    'test_accuracy',
    'test_log_loss',
    'test_ece',
    'test_nll_nats',
    'test_bpd',
  ):
    assert key in results, key
  assert results['bound'] == 'exact'
  assert (tmp_path / 'samples.png').exists()
  assert (tmp_path / 'checkpoints' / '1').is_dir()
  with open(tmp_path / 'metrics.jsonl') as f:
    records = [json.loads(line) for line in f]
  assert records[0]['step'] == 1 and np.isfinite(records[0]['loss'])

  # Independent computation: sklearn's CategoricalNB on the same 17-level pixels.
  flat = lambda a: a['image'].reshape(len(a['image']), -1)
  sk = naive_bayes.CategoricalNB(alpha=1.0, min_categories=17).fit(
    flat(splits.train), splits.train['label']
  )
  x_test, y_test = flat(splits.test), splits.test['label']
  probs = sk.predict_proba(x_test)
  assert results['test_accuracy'] == pytest.approx(sk.score(x_test, y_test), abs=1e-6)
  assert results['test_log_loss'] == pytest.approx(
    metrics.log_loss(y_test, probs, labels=range(10)), rel=1e-4
  )
  assert results['test_ece'] == pytest.approx(
    float(calibration.expected_calibration_error(probs.astype(np.float32), y_test)), abs=1e-4
  )
  nll = -np.mean(special.logsumexp(sk.predict_joint_log_proba(x_test), axis=1))
  assert results['test_nll_nats'] == pytest.approx(nll, rel=1e-5)
  assert results['test_bpd'] == pytest.approx(nll / (64 * np.log(2)), rel=1e-5)
  assert results['test_bpd'] < np.log2(17)  # better than uniform over 17 levels


@pytest.mark.parametrize('variant', ['bernoulli', 'gaussian'])
def test_naive_bayes_other_variants(tmp_path, data_dir, variant):
  config = _load_config('naive_bayes', data_dir=data_dir, nb_variant=variant, num_samples=10)
  results = families.train_and_evaluate(config, str(tmp_path))
  assert results['test_accuracy'] > 0.7
  assert 'test_bpd' not in results  # not a model of the 17-level pixels
  assert (tmp_path / 'samples.png').exists()


def test_logreg_trains_and_checkpoints(tmp_path, data_dir):
  config = _load_config(
    'logreg',
    data_dir=data_dir,
    num_train_steps=200,
    log_every=50,
    eval_every=100,
    checkpoint_every=100,
    progress_bar=False,
  )
  results = families.train_and_evaluate(config, str(tmp_path))
  for key in (
    'model',
    'dataset',
    'train_steps_per_s',
    'test_accuracy',
    'test_log_loss',
    'test_ece',
  ):
    assert key in results, key
  assert results['test_accuracy'] > 0.85
  assert sorted(os.listdir(tmp_path / 'checkpoints')) == ['100', '200']
  with open(tmp_path / 'metrics.jsonl') as f:
    losses = [r['loss'] for r in map(json.loads, f) if 'loss' in r]
  assert losses[-1] < losses[0]  # resuming: tests/families/test_contract.py


@pytest.mark.parametrize(
  'name,overrides,field',
  [
    ('naive_bayes', dict(nb_variant='poisson'), 'nb_variant'),
    ('naive_bayes', dict(alpha=0.0), 'alpha'),
    ('naive_bayes', dict(parallel='pmap'), 'parallel'),
    ('naive_bayes', dict(batch_size=0), 'batch_size'),
    ('naive_bayes', dict(validation_fraction=1.0), 'validation_fraction'),
    ('logreg', dict(l2=-1.0), 'l2'),
    ('logreg', dict(learning_rate=0.0), 'learning_rate'),
    ('logreg', dict(model='svm'), 'model'),
  ],
)
def test_bad_config_names_the_field(tmp_path, name, overrides, field):
  config = _load_config(name)
  config.update(overrides)
  with pytest.raises(ValueError, match=field):
    families.train_and_evaluate(config, str(tmp_path))
