"""`_fewstep.fid_by_steps`: every step count is scored on samples from the same key (the
same initial noise), timed on another draw; the FIDs land under their step counts."""

import jax
import ml_collections
import numpy as np

from gm_jax import data as gm_data
from gm_jax.evaluate import sample_metrics
from gm_jax.families import _fewstep


def test_every_step_count_is_scored_on_the_same_initial_noise(monkeypatch):
  info = gm_data.get_info('digits')
  splits = gm_data.Splits(
    train={'image': np.zeros((6, 8, 8, 1), np.uint8)}, validation={}, test={}, info=info
  )
  config = ml_collections.ConfigDict(
    dict(fid_steps=(1, 2, 4), sample_steps=2, fid_num_samples=0, fid_network='classifier')
  )
  calls = []

  def sample_with(params, key, num, steps):
    calls.append((tuple(np.asarray(jax.random.key_data(key))), num, steps))
    return np.full((num, 8, 8, 1), steps, np.uint8)

  scored = []

  def fake_metrics(config, samples, splits, *, cache_dir=None):
    scored.append(int(samples[0, 0, 0, 0]))
    return {'fid': 10.0 + samples[0, 0, 0, 0], 'class_coverage': 10}

  monkeypatch.setattr(sample_metrics, 'sample_metrics', fake_metrics)
  key = jax.random.key(5)
  out = _fewstep.fid_by_steps(sample_with, None, splits, key, config)
  assert out['fid_by_steps'] == {'1': 11.0, '2': 12.0, '4': 14.0}
  assert out['fid'] == 12.0 and out['nfe'] == 2 and scored == [1, 2, 4]
  assert set(out['samples_per_s_by_steps']) == {'1', '2', '4'}
  scoring, timing = calls[0::2], calls[1::2]
  assert [c[2] for c in scoring] == [1, 2, 4] and all(c[1] == 6 for c in calls)
  assert len({c[0] for c in scoring}) == 1  # one key: the same initial noise
  assert scoring[0][0] == tuple(np.asarray(jax.random.key_data(jax.random.fold_in(key, 1))))
  assert all(t[0] != scoring[0][0] for t in timing)  # timed on another draw
