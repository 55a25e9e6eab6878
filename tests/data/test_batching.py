"""gm_jax.data.batching: deterministic batches as a function of (step, seed)."""

import numpy as np
import pytest

from gm_jax import data


def _indexed(n):
  return {'index': np.arange(n), 'x': np.arange(n) * 10.0}


def test_batch_at_step_matches_definition():
  n, bs, seed = 53, 8, 3
  arrays = _indexed(n)
  steps_per_epoch = n // bs
  for step in (0, 5, 6, 7, 20):
    epoch, pos = divmod(step, steps_per_epoch)
    perm = np.random.default_rng([seed, epoch]).permutation(n)
    want = perm[pos * bs : (pos + 1) * bs]
    got = data.batch_at_step(arrays, step, batch_size=bs, seed=seed)
    np.testing.assert_array_equal(got['index'], want)
    np.testing.assert_array_equal(got['x'], want * 10.0)


def test_batch_at_step_is_a_pure_function_of_step_and_seed():
  arrays = _indexed(40)
  forward = [data.batch_at_step(arrays, s, batch_size=8, seed=1)['index'] for s in range(12)]
  backward = [
    data.batch_at_step(arrays, s, batch_size=8, seed=1)['index'] for s in reversed(range(12))
  ][::-1]
  for a, b in zip(forward, backward):
    np.testing.assert_array_equal(a, b)
  other = data.batch_at_step(arrays, 0, batch_size=8, seed=2)['index']
  assert not np.array_equal(forward[0], other)


def test_each_epoch_covers_every_example_once():
  arrays = _indexed(40)
  epochs = []
  for epoch in range(3):
    seen = np.concatenate(
      [data.batch_at_step(arrays, epoch * 5 + s, batch_size=8, seed=0)['index'] for s in range(5)]
    )
    np.testing.assert_array_equal(np.sort(seen), np.arange(40))
    epochs.append(seen)
  assert not np.array_equal(epochs[0], epochs[1])


def test_remainder_is_skipped_without_repeats():
  arrays = _indexed(43)  # 5 batches of 8; 3 examples skipped per epoch.
  seen = np.concatenate(
    [data.batch_at_step(arrays, s, batch_size=8, seed=0)['index'] for s in range(5)]
  )
  assert len(np.unique(seen)) == 40


def test_shards_concatenate_to_the_global_batch():
  arrays = _indexed(64)
  for step in (0, 9):
    full = data.batch_at_step(arrays, step, batch_size=16, seed=4)
    shards = [
      data.batch_at_step(arrays, step, batch_size=16, seed=4, shard_index=i, shard_count=4)
      for i in range(4)
    ]
    assert all(len(s['index']) == 4 for s in shards)
    for key in full:
      np.testing.assert_array_equal(np.concatenate([s[key] for s in shards]), full[key])


@pytest.mark.parametrize(
  'kwargs, match',
  [
    (dict(batch_size=0), 'batch_size must be positive'),
    (dict(batch_size=-4), 'batch_size must be positive'),
    (dict(batch_size=11), 'larger than the number of examples'),
    (dict(batch_size=6, shard_count=4), 'divisible by shard_count'),
    (dict(batch_size=4, shard_count=2, shard_index=2), 'shard_index'),
    (dict(batch_size=4, seed=-1), 'seed'),
  ],
)
def test_batch_at_step_errors(kwargs, match):
  kwargs = {'seed': 0, **kwargs}
  with pytest.raises(ValueError, match=match):
    data.batch_at_step(_indexed(10), 0, **kwargs)


def test_batch_at_step_on_real_data(digits_splits):
  batch = data.batch_at_step(digits_splits.train, 7, batch_size=32, seed=0)
  assert batch['image'].shape == (32, 8, 8, 1)
  assert batch['label'].shape == (32,)


# --- iterate_batches ---------------------------------------------------------


def test_iterate_batches_in_order_with_short_last_batch():
  arrays = _indexed(10)
  batches = list(data.iterate_batches(arrays, 4))
  assert [len(b['index']) for b in batches] == [4, 4, 2]
  np.testing.assert_array_equal(np.concatenate([b['index'] for b in batches]), np.arange(10))
  with pytest.raises(ValueError, match='batch_size must be positive'):
    list(data.iterate_batches(arrays, 0))
