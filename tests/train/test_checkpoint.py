"""Checkpointer: config mismatches are refused from the saved metadata, before any read."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from gm_jax.train import checkpoint as ckpt_lib


def _state(width=4):
  params = {
    'dense': {
      'kernel': jnp.arange(width * 3, dtype=jnp.float32).reshape(width, 3),
      'bias': jnp.ones((3,)),
    }
  }
  tx = optax.chain(optax.clip_by_global_norm(1.0), optax.adam(1e-3))
  return {'step': jnp.asarray(7, jnp.int32), 'params': params, 'opt_state': tx.init(params)}


def test_optax_state_round_trips_through_the_metadata_check(tmp_path):
  state = _state()
  with ckpt_lib.Checkpointer(str(tmp_path / 'checkpoints')) as ck:
    ck.save(7, state)
  zeros = jax.tree.map(jnp.zeros_like, state)
  with ckpt_lib.Checkpointer(str(tmp_path / 'checkpoints')) as ck:
    assert ck._metadata_mismatch(7, zeros) is None  # named tuples are saved as lists
    step, restored = ck.restore_latest(zeros)
  assert step == 7
  for a, b in zip(jax.tree.leaves(restored), jax.tree.leaves(state)):
    np.testing.assert_array_equal(a, b)


def test_a_different_shape_is_refused_without_reading_any_array(tmp_path, monkeypatch):
  with ckpt_lib.Checkpointer(str(tmp_path / 'checkpoints')) as ck:
    ck.save(7, _state(width=4))
  ck = ckpt_lib.Checkpointer(str(tmp_path / 'checkpoints'))

  def no_read(*a, **k):
    raise AssertionError('restore was attempted')

  monkeypatch.setattr(ck._manager, 'restore', no_read)
  with pytest.raises(
    ckpt_lib.CheckpointError, match=r'does not match.*dense\.kernel.*\(4, 3\).*\(5, 3\)'
  ):
    ck.restore_latest(_state(width=5))
  with pytest.raises(ckpt_lib.CheckpointMismatchError, match=r'\(4, 3\).*\(5, 3\)'):
    ck.restore(7, _state(width=5))  # the public single-step restore checks first too
  ck.close()
  assert os.listdir(tmp_path / 'checkpoints') == ['7']
  assert not (tmp_path / 'corrupt_checkpoints').exists()


def test_a_different_number_of_arrays_is_refused(tmp_path):
  with ckpt_lib.Checkpointer(str(tmp_path / 'checkpoints')) as ck:
    ck.save(7, _state())
    bigger = dict(_state(), extra=jnp.zeros(()))
    n_saved = len(jax.tree.leaves(_state()))
    with pytest.raises(
      ckpt_lib.CheckpointError, match=f'{n_saved} arrays saved, the model has {n_saved + 1}'
    ):
      ck.restore_latest(bigger)
  assert os.listdir(tmp_path / 'checkpoints') == ['7']


def test_read_returns_the_saved_arrays_without_a_target_and_changes_nothing(tmp_path):
  state = _state()
  with ckpt_lib.Checkpointer(str(tmp_path / 'checkpoints')) as ck:
    ck.save(7, state)
  with ckpt_lib.Checkpointer(str(tmp_path / 'checkpoints'), is_primary=False) as ck:
    raw = ck.read(7)
    assert ck.all_steps() == [7]
  np.testing.assert_array_equal(
    raw['params']['dense']['kernel'], state['params']['dense']['kernel']
  )
  assert int(raw['step']) == 7


def test_a_missing_step_is_named_with_the_saved_ones(tmp_path):
  state = _state()
  with ckpt_lib.Checkpointer(str(tmp_path / 'checkpoints')) as ck:
    ck.save(7, state)
    with pytest.raises(
      ckpt_lib.CheckpointError, match=r'no checkpoint for step 8 .*saved steps: 7\)'
    ):
      ck.read(8)
    with pytest.raises(ckpt_lib.CheckpointError, match='no checkpoint for step 6 '):
      ck.restore(6, state)
  with ckpt_lib.Checkpointer(str(tmp_path / 'empty')) as ck:
    with pytest.raises(ckpt_lib.CheckpointError, match=r'saved steps: none'):
      ck.read(0)
