"""Orbax checkpoints with exact resume and a safe fallback on corruption.

`workdir/checkpoints/<step>/` holds one orbax checkpoint per step (the newest
`max_to_keep` are kept). Restoring tries the newest checkpoint first; a checkpoint
that cannot be read is *moved* to `workdir/corrupt_checkpoints/<step>-<time>/` (never
deleted) and the previous one is tried. No pickle is involved anywhere: orbax writes
array data with TensorStore and metadata as JSON.

Old checkpoints are pruned here, not by orbax: orbax deletes in its background
finalize thread, where a `reload()` of the folder could list a step it was deleting
(a FileNotFoundError on `checkpoints/<step>` under frequent saves, and "Unable to find
the step N for deletion" warnings). Here every operation first waits for the save in
flight, and pruning renames a step out of the step namespace before removing it. A
save that fails in the background (a full disk) raises `CheckpointSaveError` at the
next operation, naming that step, why, and the checkpoints that are intact.
"""

from __future__ import annotations

import errno
import logging
import os
import shutil
import time
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp

PyTree = Any


class CheckpointError(RuntimeError):
  """No checkpoint in a directory could be restored."""


class CheckpointMismatchError(CheckpointError):
  """A readable checkpoint that another config wrote (its arrays do not fit the model)."""


class CheckpointSaveError(CheckpointError):
  """A checkpoint could not be written (e.g. the disk is full); the others are intact."""


def _orbax_filter(record) -> bool:
  """Drops orbax's own tracebacks of a failed background save (`CheckpointSaveError`
  says it in one line); GM_JAX_VERBOSE=1 keeps them."""
  if os.environ.get('GM_JAX_VERBOSE') == '1':
    return True
  if record.levelno < logging.ERROR:
    return True
  # asyncio reports orbax's failed write tasks again when they are collected.
  return 'orbax' not in record.pathname and 'orbax' not in record.getMessage()


logging.getLogger('absl').addFilter(_orbax_filter)
logging.getLogger('asyncio').addFilter(_orbax_filter)


def _no_space(e: BaseException | None) -> bool:
  while e is not None:
    if getattr(e, 'errno', None) in (errno.ENOSPC, errno.EDQUOT) or 'No space left' in str(e):
      return True
    e = e.__cause__ or e.__context__
  return False


class Checkpointer:
  """Saves and restores a train-state pytree under `directory`.

  Args:
    directory: the `checkpoints/` folder (created if missing).
    max_to_keep: number of newest checkpoints kept on disk.
    is_primary: whether this process writes (multi-host: only process 0).
  """

  def __init__(
    self,
    directory: str,
    *,
    max_to_keep: int | None = 3,
    is_primary: bool = True,
    asynchronous: bool = False,
  ):
    self.directory = os.path.abspath(directory)
    self._is_primary = is_primary
    self._asynchronous = asynchronous
    if is_primary:
      try:
        os.makedirs(self.directory, exist_ok=True)
      except OSError as e:
        raise OSError(f'cannot create checkpoint directory {self.directory!r}: {e}') from e
    self._max_to_keep = max_to_keep
    self._pending: int | None = None  # the step of the save in flight
    self._failed = False  # a background save failed: orbax's manager re-raises it forever
    options = ocp.CheckpointManagerOptions(
      max_to_keep=None,  # pruned by `_prune`, never while a save is in flight
      create=is_primary,
      # Asynchronous saves return once the arrays are copied to host memory and write
      # in the background (the trainer goes on stepping); orbax writes each step to a
      # temporary folder and renames it when complete, so a SIGKILL at any moment
      # leaves the newest *complete* checkpoint the newest step (`all_steps` never
      # lists a half-written one). Synchronous (the default): durable on return.
      enable_async_checkpointing=asynchronous,
      cleanup_tmp_directories=False,
    )
    # The handler is named so that a fresh manager can read a step's metadata before
    # anything was saved or restored through it.
    self._manager = ocp.CheckpointManager(
      self.directory, options=options, item_handlers=ocp.StandardCheckpointHandler()
    )

  def all_steps(self) -> list[int]:
    self._finish_pending()
    self._manager.reload()
    return sorted(self._manager.all_steps())

  def unfinished_steps(self) -> list[int]:
    """Steps whose save never completed (orbax's temporary folders, left by a kill)."""
    found = []
    for name in os.listdir(self.directory) if os.path.isdir(self.directory) else []:
      head, _, tail = name.partition('.orbax-checkpoint-tmp')
      if tail is not None and name != head and head.isdigit():
        found.append(int(head))
    return sorted(found)

  def _finish_pending(self) -> None:
    """Waits for the save in flight; a failure raises `CheckpointSaveError` naming it."""
    step, self._pending = self._pending, None
    if self._failed:
      return
    try:
      self._manager.wait_until_finished()
    except Exception as e:
      self._failed = True
      raise self._save_error(step, e) from e
    if step is not None:
      self._prune()

  def _save_error(self, step: int | None, e: BaseException) -> CheckpointSaveError:
    for name in os.listdir(self.directory):  # the failed step's partial files: free them
      if name.startswith(f'{step}.orbax-checkpoint-tmp'):
        shutil.rmtree(os.path.join(self.directory, name), ignore_errors=True)
    self._manager.reload()
    intact = sorted(self._manager.all_steps())
    if _no_space(e):
      free = shutil.disk_usage(self.directory).free
      why = f'no space left on device ({free / 2**20:.1f} MiB free on {self.directory})'
    else:
      why = f'{type(e).__name__}: {_first_line(e)}'
    kept = (
      f'intact checkpoints: {", ".join(map(str, intact))} (a re-run resumes from {intact[-1]})'
      if intact
      else 'no checkpoint is intact'
    )
    which = f'checkpoint {step}' if step is not None else 'a checkpoint'
    return CheckpointSaveError(f'{which} could not be saved: {why}; {kept}.')

  def _prune(self) -> None:
    """Removes all but the newest `max_to_keep` committed steps, oldest first."""
    # Process 0 alone: under several processes every one saves (orbax's barriers), and
    # two renaming one step would collide.
    if not self._is_primary or self._max_to_keep is None or jax.process_index() != 0:
      return
    self._manager.reload()
    steps = sorted(self._manager.all_steps())
    for step in steps[: max(len(steps) - self._max_to_keep, 0)]:
      src = os.path.join(self.directory, str(step))
      # Renamed first (atomic): a kill mid-removal leaves no half step for orbax to list.
      doomed = os.path.join(self.directory, f'.pruned-{step}')
      os.replace(src, doomed)
      shutil.rmtree(doomed, ignore_errors=True)
    self._manager.reload()

  def latest_step(self) -> int | None:
    steps = self.all_steps()
    return steps[-1] if steps else None

  def save(self, step: int, state: PyTree) -> None:
    """Writes `state` as checkpoint `step` (no-op on non-primary processes)."""
    if not self._is_primary:
      return
    if step in self.all_steps():
      return  # Already saved (e.g. final step re-saved on resume).
    try:
      self._manager.save(step, args=ocp.args.StandardSave(state))
    except Exception as e:
      raise self._save_error(step, e) from e
    self._pending = step
    if not self._asynchronous:
      self._finish_pending()

  def wait(self) -> None:
    """Blocks until every background save is on disk (and old ones are pruned).

    Raises:
      CheckpointSaveError: the save in flight failed.
    """
    self._finish_pending()

  def restore(self, step: int, target: PyTree) -> PyTree:
    """Restores checkpoint `step` into the structure (and dtypes) of `target`.

    Raises:
      CheckpointMismatchError: the saved arrays differ from `target` in number or shape,
        found from the step's metadata before any array is read (a restore that fails
        half-way leaves orbax's other read coroutines un-awaited).
      CheckpointError: there is no checkpoint `step`.
    """
    self._require(step)
    mismatch = self._metadata_mismatch(step, target)
    if mismatch:
      raise CheckpointMismatchError(
        f'checkpoint {os.path.join(self.directory, str(step))} does not match the '
        f'model being trained ({mismatch}). Use a new --workdir for a different config.'
      )
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, target)
    restored = self._manager.restore(step, args=ocp.args.StandardRestore(abstract))
    _check_like(restored, target, step)
    return restored

  def restore_latest(self, target: PyTree) -> tuple[int | None, PyTree]:
    """Restores the newest readable checkpoint.

    Returns:
      `(step, state)`, or `(None, target)` when the directory holds no checkpoint.

    Raises:
      CheckpointError: checkpoints exist but none could be read (all were moved to
        `corrupt_checkpoints/`, and the error lists them).
      CheckpointMismatchError: the newest checkpoint was written by another config
        (nothing is moved).
    """
    steps = self.all_steps()
    failures = []
    for step in reversed(steps):
      try:
        return step, self.restore(step, target)
      except CheckpointMismatchError:
        raise  # another config's checkpoint: refused and left where it is
      except Exception as e:
        if self._readable(step):
          # The files are fine but do not fit this model: a config change, not
          # corruption. Refuse, and leave the checkpoint where it is.
          raise CheckpointError(
            f'checkpoint {os.path.join(self.directory, str(step))} does not match the '
            f'model being trained ({type(e).__name__}: {_first_line(e)}). Use a new '
            '--workdir for a different config.'
          ) from e
        moved = self._quarantine(step)
        msg = (
          f'checkpoint {os.path.join(self.directory, str(step))} is unreadable '
          f'({type(e).__name__}: {e}); moved to {moved}, trying the previous one'
        )
        logging.warning(msg)
        print('WARNING:', msg, flush=True)
        failures.append(f'step {step}: {type(e).__name__}: {_first_line(e)}')
    if failures:
      raise CheckpointError(
        f'no readable checkpoint in {self.directory!r}; tried '
        + '; '.join(failures)
        + '. The unreadable ones were moved to corrupt_checkpoints/ (nothing was deleted).'
      )
    return None, target

  def _metadata_mismatch(self, step: int, target: PyTree) -> str | None:
    """How checkpoint `step`'s saved tree differs from `target`, from its metadata alone.

    Returns None when the leaves agree in number and shapes, or when the metadata cannot
    be read (then the restore decides: corruption is handled there).
    """
    try:
      saved = self._manager.item_metadata(step)
    except Exception:
      return None
    saved = getattr(saved, 'tree', saved)
    if saved is None:
      return None
    # Orbax stores tuples and named tuples as lists, so compare leaves in order (dicts
    # flatten by sorted key either way), not tree types.
    s_leaves = jax.tree.leaves(saved)
    t_leaves = jax.tree.leaves(target)
    if len(s_leaves) != len(t_leaves):
      return f'{len(s_leaves)} arrays saved, the model has {len(t_leaves)}'
    for i, (s, t) in enumerate(zip(s_leaves, t_leaves)):
      s_shape = getattr(s, 'shape', None)
      if s_shape is not None and tuple(s_shape) != tuple(np.shape(t)):
        name = getattr(s, 'name', f'leaf {i}')
        return (
          f'array {name!r} has shape {tuple(s_shape)} on disk where the model '
          f'expects {tuple(np.shape(t))}'
        )
    return None

  def read(self, step: int) -> PyTree:
    """Checkpoint `step` as saved (no target: nested dicts of numpy/jax arrays), e.g. to
    inspect a finished run's parameters without rebuilding its optimiser state.

    Raises:
      CheckpointError: there is no checkpoint `step`.
    """
    self._require(step)
    return self._manager.restore(step, args=ocp.args.StandardRestore())

  def _require(self, step: int) -> None:
    steps = self.all_steps()
    if step not in steps:
      raise CheckpointError(
        f'no checkpoint for step {step} in {self.directory} '
        f'(saved steps: {", ".join(map(str, steps)) or "none"})'
      )

  def _readable(self, step: int) -> bool:
    """Whether checkpoint `step` can be read at all (without a target structure)."""
    try:
      self.read(step)
      return True
    except Exception:
      return False

  def _quarantine(self, step: int) -> str:
    """Moves a bad checkpoint aside so new saves of that step do not collide."""
    src = os.path.join(self.directory, str(step))
    dst_root = os.path.join(os.path.dirname(self.directory), 'corrupt_checkpoints')
    dst = os.path.join(dst_root, f'{step}-{time.strftime("%Y%m%d-%H%M%S")}')
    if self._is_primary and os.path.exists(src):
      os.makedirs(dst_root, exist_ok=True)
      shutil.move(src, dst)
      self._manager.reload()
    return dst

  def close(self) -> None:
    """Waits for the save in flight (raising `CheckpointSaveError` if it failed), then
    closes orbax's manager."""
    try:
      self._finish_pending()
    finally:
      try:
        self._manager.close()
      except Exception:
        if not self._failed:  # else: the failure CheckpointSaveError reported, again
          raise

  def __enter__(self) -> Checkpointer:
    return self

  def __exit__(self, *exc) -> None:
    self.close()


def source_workdir(source: str) -> str:
  """The absolute workdir that `source` (a workdir or its `checkpoints/` folder) names."""
  source = os.path.abspath(source)
  return os.path.dirname(source) if os.path.basename(source) == 'checkpoints' else source


def load_params(source: str, target_params: PyTree) -> tuple[int, PyTree]:
  """The parameters another run selected, to start a new run from (`config.init_from`).

  Args:
    source: that run's workdir, or its `checkpoints/` folder.
    target_params: the new model's freshly initialised parameters; they give the
      structure, shapes and dtypes the loaded ones must have.

  Returns:
    `(step, params)`: the newest checkpoint's step in `source` and its `best_params`
    (the validation-selected ones; its `params` when it has no `best_params`), cast to
    `target_params`' dtypes. Nothing in `source` is modified.

  Raises:
    CheckpointError: `source` holds no checkpoint, or its newest cannot be read.
    CheckpointMismatchError: its parameters differ from `target_params` in structure or
      shape (another architecture), naming the first difference.
  """
  source = os.path.abspath(source)
  directory = os.path.join(source_workdir(source), 'checkpoints')
  if not os.path.isdir(directory):
    raise CheckpointError(f'config.init_from={source!r}: no checkpoints folder at {directory}')
  reader = Checkpointer(directory, max_to_keep=None, is_primary=False)
  try:
    step = reader.latest_step()
    if step is None:
      raise CheckpointError(f'config.init_from={source!r}: {directory} holds no checkpoint')
    try:
      saved = reader.read(step)
    except Exception as e:
      raise CheckpointError(
        f'config.init_from={source!r}: checkpoint {step} cannot be read '
        f'({type(e).__name__}: {_first_line(e)})'
      ) from e
  finally:
    reader.close()
  saved = saved if isinstance(saved, dict) else {}
  params = saved.get('best_params', saved.get('params'))
  if params is None:
    raise CheckpointError(
      f"config.init_from={source!r}: checkpoint {step} has no 'best_params' or 'params'"
    )
  got = dict(jax.tree_util.tree_flatten_with_path(params)[0])
  want = dict(jax.tree_util.tree_flatten_with_path(target_params)[0])
  name = lambda path: jax.tree_util.keystr(path)
  missing = sorted(name(p) for p in set(want) - set(got))
  extra = sorted(name(p) for p in set(got) - set(want))
  if missing or extra:
    raise CheckpointMismatchError(
      f'config.init_from={source!r}: checkpoint {step} holds other parameters than the '
      f'model (missing {missing[:3]}, unexpected {extra[:3]}); was it another architecture?'
    )
  for path, t in want.items():
    if np.shape(got[path]) != np.shape(t):
      raise CheckpointMismatchError(
        f'config.init_from={source!r}: parameter {name(path)} has shape '
        f'{np.shape(got[path])} in checkpoint {step}, the model has {np.shape(t)}'
      )
  treedef = jax.tree.structure(target_params)
  leaves = [
    jax.numpy.asarray(got[path], dtype=jax.numpy.result_type(t)) for path, t in want.items()
  ]
  return step, jax.tree.unflatten(treedef, leaves)


def _first_line(e: BaseException) -> str:
  text = str(e).strip().splitlines()
  return text[0][:200] if text else ''


def _same_structure(a: Any, b: Any) -> bool:
  """Whether two treedefs are equal (jaxlib's PyTreeDef stub declares no `!=`)."""
  return bool(a == b)


def _check_like(restored: PyTree, target: PyTree, step: int) -> None:
  """Refuses a checkpoint whose tree, shapes or values do not fit `target`."""
  r_leaves, r_def = jax.tree.flatten(restored)
  t_leaves, t_def = jax.tree.flatten(target)
  if not _same_structure(r_def, t_def):
    raise ValueError(
      f'checkpoint {step} has a different structure than the model '
      f'({r_def} vs {t_def}); was it written by another config?'
    )
  for r, t in zip(r_leaves, t_leaves):
    if np.shape(r) != np.shape(t):
      raise ValueError(
        f'checkpoint {step} has an array of shape {np.shape(r)} where the '
        f'model expects {np.shape(t)}; was it written by another config?'
      )
