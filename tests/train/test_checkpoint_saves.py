"""Checkpoint saves under pressure (#40 part 4): frequent async saves under a tiny
max_to_keep (the prune race), no orbax deletion warnings, a failed save named."""

import errno
import logging
import os

import numpy as np
import pytest

from gm_jax.train import checkpoint as ckpt_lib


class _Records(logging.Handler):
  def __init__(self):
    super().__init__(logging.DEBUG)
    self.messages = []

  def emit(self, record):
    self.messages.append(record.getMessage())


@pytest.mark.parametrize('max_to_keep', [1, 2])
def test_frequent_async_saves_keep_the_newest_and_warn_nothing(tmp_path, max_to_keep):
  records = _Records()
  logging.getLogger('absl').addHandler(records)
  try:
    ck = ckpt_lib.Checkpointer(str(tmp_path), max_to_keep=max_to_keep, asynchronous=True)
    state = {'w': np.arange(4, dtype=np.float32), 'step': np.int32(0)}
    for step in range(1, 31):
      ck.save(step, dict(state, step=np.int32(step)))
      assert len(ck.all_steps()) <= max_to_keep + 1  # the one in flight is not listed
    ck.close()
  finally:
    logging.getLogger('absl').removeHandler(records)
  assert [m for m in records.messages if 'for deletion' in m] == []
  assert sorted(int(d) for d in os.listdir(tmp_path)) == list(range(31 - max_to_keep, 31))
  reader = ckpt_lib.Checkpointer(str(tmp_path), max_to_keep=None)
  assert int(reader.read(30)['step']) == 30
  reader.close()


def test_a_failed_background_save_names_its_step_why_and_the_intact_ones(tmp_path, monkeypatch):
  ck = ckpt_lib.Checkpointer(str(tmp_path), max_to_keep=5, asynchronous=True)
  state = {'w': np.zeros(3, np.float32)}
  ck.save(4, state)
  ck.save(8, state)
  ck.wait()
  # Step 12's writer runs out of space in the background (as TensorStore reports it).
  monkeypatch.setattr(ck._manager, 'save', lambda step, args: True)

  def full_disk():
    raise ValueError(
      'RESOURCE_EXHAUSTED: Failed to write 204 bytes to file 20: '
      "No space left on device [os_error_code='28']"
    )

  ck.save(12, state)
  monkeypatch.setattr(ck._manager, 'wait_until_finished', full_disk)
  with pytest.raises(
    ckpt_lib.CheckpointSaveError,
    match=r'checkpoint 12 could not be saved: no space left on device '
    r'\(.* MiB free on .*\); intact checkpoints: 4, 8 \(a re-run '
    r'resumes from 8\)',
  ):
    ck.save(16, state)
  ck.close()  # the failure is not raised a second time


def test_a_save_that_fails_at_once_names_its_step(tmp_path, monkeypatch):
  ck = ckpt_lib.Checkpointer(str(tmp_path), max_to_keep=5)

  def no_space(step, args):
    raise OSError(errno.ENOSPC, 'No space left on device')

  monkeypatch.setattr(ck._manager, 'save', no_space)
  with pytest.raises(
    ckpt_lib.CheckpointSaveError, match='checkpoint 3 .*no space.*no checkpoint is intact'
  ):
    ck.save(3, {'w': np.zeros(2, np.float32)})
  ck.close()
