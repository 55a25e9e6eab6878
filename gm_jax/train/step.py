"""The train step the loop runs, and several of them per dispatch.

`make_train_step` is written once for one device (`axis_name` for pmap); data
parallelism wraps it (`gm_jax.parallel`). `make_multi_step` runs `steps_per_loop` of
them in one `lax.scan`, each on a batch gathered on the device (from resident training
arrays) or put there by the host, laid out by `chunk_layout` so that every device gets
its own shard of every step's batch.
"""

from __future__ import annotations

import contextlib
import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax

from gm_jax import parallel
from gm_jax.nn import ema as ema_lib
from gm_jax.nn import precision as precision_lib
from gm_jax.train.family import Family


def make_train_step(
  family: Family,
  tx: optax.GradientTransformation,
  train_key,
  *,
  group_size: int = 1,
  matmul_precision: str = 'default',
  compute_dtype: str = 'float32',
  ema_decay: float = 0.0,
):
  """The single-device train step `(state, batch, *, axis_name=None) -> (state, metrics)`.

  `batch` is this device's shard of the global batch, split into groups of
  `group_size` examples with keys folded from their global group index; with
  `axis_name` (pmap) the shard-mean loss, metrics and gradients are averaged over
  that axis, which equals the global-batch mean because the shards have equal sizes.
  A family with `loss_takes_step` receives the step being taken (int32 scalar) as the
  keyword `step`. A family with a `train_update` (e.g. two alternating optimisers) runs
  that instead of `tx`; it receives the same step key and does its own `pmean` over
  `axis_name`.

  `compute_dtype` ('float32' | 'bfloat16') and `matmul_precision` ('default' | 'high' |
  'highest') apply to what the loss or update computes (`gm_jax.nn.precision`);
  parameters, gradients and optimiser state stay float32.

  `ema_decay > 0`: after the update, `state['ema_params']` (the average of
  `ema_part(family, params)`, see `ema_state`) takes one `nn.ema.ema_update` with the
  warm-up count `state['step']` (the updates averaged so far), on the device, outside
  the compute-dtype policy (float32). 0: the step is the one without EMA, bit for bit.
  """
  step_fn = _make_train_step(
    family,
    tx,
    train_key,
    group_size=group_size,
    matmul_precision=matmul_precision,
    compute_dtype=compute_dtype,
  )
  if not ema_decay:
    return step_fn
  decay = float(ema_decay)

  def ema_train_step(state, batch, *, axis_name=None):
    new_state, metrics = step_fn(state, batch, axis_name=axis_name)
    # Every device holds the same new parameters (pmean'd gradients): so is the average.
    ema = ema_lib.ema_update(
      state['ema_params'], ema_part(family, new_state['params']), decay=decay, count=state['step']
    )
    return dict(new_state, ema_params=ema), metrics

  return ema_train_step


def ema_part(family: Family, params):
  """What EMA averages: `params`' entries `family.ema_keys` (a dict), or all of `params`."""
  if family.ema_keys is None:
    return params
  return {k: params[k] for k in family.ema_keys}


def ema_state(family: Family, params):
  """The starting average of `params` (`state['ema_params']` at step 0): float32.

  Raises:
    ValueError: `family.ema_keys` names an entry that `params` does not have.
  """
  missing = [k for k in family.ema_keys or () if k not in params]
  if missing:
    raise ValueError(
      f'Family.ema_keys of {family.name!r} names {missing}, not entries of its params '
      f'({sorted(params)})'
    )
  return ema_lib.ema_init(ema_part(family, params))


def with_ema(family: Family, params, ema):
  """The weights evaluated with EMA on: `params` with its averaged part replaced by `ema`."""
  if family.ema_keys is None:
    return ema
  return dict(params, **ema)


def _make_train_step(
  family: Family,
  tx: optax.GradientTransformation,
  train_key,
  *,
  group_size: int,
  matmul_precision: str,
  compute_dtype: str,
):
  precision = None if matmul_precision == 'default' else matmul_precision
  precision_lib.resolve(compute_dtype)

  def policy():
    return _both(
      jax.default_matmul_precision(precision), precision_lib.compute_dtype(compute_dtype)
    )

  if family.train_update is not None:
    update = family.train_update.update

    def own_train_step(state, batch, *, axis_name=None):
      key = jax.random.fold_in(train_key, state['step'])
      with policy():
        params, opt_state, metrics = update(
          state['params'], state['opt_state'], batch, key, step=state['step'], axis_name=axis_name
        )
      return dict(state, step=state['step'] + 1, params=params, opt_state=opt_state), metrics

    return own_train_step

  def train_step(state, batch, *, axis_name=None):
    key = jax.random.fold_in(train_key, state['step'])
    offset = parallel.shard_offset(parallel.batch_size_of(batch), axis_name)
    loss = family.loss
    if family.loss_takes_step:  # e.g. a weight that is warmed up over the steps
      loss = functools.partial(family.loss, step=state['step'])

    def loss_fn(p):
      return parallel.mean_over_groups(
        loss, p, batch, key, group_size=group_size, offset=offset, train=True
      )

    with policy():
      (loss, metrics), grads = jax.value_and_grad(loss_fn, has_aux=True)(state['params'])
    if axis_name is not None:
      loss, metrics, grads = jax.lax.pmean((loss, metrics, grads), axis_name)
    updates, opt_state = tx.update(grads, state['opt_state'], state['params'])
    params = optax.apply_updates(state['params'], updates)
    metrics = dict(metrics, loss=loss, grad_norm=optax.global_norm(grads))
    new_state = dict(state, step=state['step'] + 1, params=params, opt_state=opt_state)
    return new_state, metrics

  return train_step


@contextlib.contextmanager
def _both(a, b):
  with a, b:
    yield


def chunk_layout(per_step: list[dict], group: int) -> dict:
  """`K` local batches `[B_l, ...]` -> one `[K * B_l, ...]` batch in device-major order.

  Row order `[group, K, B_l / group]`: `put_batch` splits the leading axis evenly
  over this process's `group` devices, so each device receives its own shard of all
  `K` batches (`unchunk` undoes it inside the step).
  """

  def arrange(*xs):
    x = np.stack(xs)  # [K, B_l, ...]
    k, b = x.shape[:2]
    x = x.reshape((k, group, b // group) + x.shape[2:]).swapaxes(0, 1)
    return x.reshape((k * b,) + x.shape[3:])

  return jax.tree.map(arrange, *per_step)


def unchunk(tree, steps: int, group: int):
  """Inverse of `chunk_layout` on the array the step sees: `[K, B_view, ...]`."""

  def split(x):
    x = x.reshape((group, steps, -1) + x.shape[1:]).swapaxes(0, 1)
    return x.reshape((steps, -1) + x.shape[3:])

  return jax.tree.map(split, tree)


def make_multi_step(step_fn, *, steps: int, view_devices: int, resident: bool):
  """`steps` applications of `step_fn` in one `lax.scan`: `(state, chunk) -> (state, metrics)`.

  `chunk` is `chunk_layout` of the steps' batches (or of their example indices,
  `{'index': int32}`, when `resident`: then `state['data']` holds the training arrays
  and each step gathers its batch on the device). `view_devices`: the devices whose
  shards the step function sees at once (1 under pmap and on one device, all under
  sharding). Metrics come back stacked, `[steps]` per entry.

  One step runs without a loop. On CPU, a step with a convolution is unrolled: XLA:CPU
  (jaxlib 0.10.2) compiles a convolution's kernel gradient inside a while loop to a
  slow generic loop nest (measured: [64, 8, 8, 64] 3x3 kernel gradient 10.4 ms plain,
  479 ms in a one-trip `fori_loop`; the diffusion U-Net's train step 82 ms vs
  2,577 ms). Every other step keeps the rolled `lax.scan` (compile time independent of
  `steps`; the digits logistic regression at 25 steps a dispatch: 8,200 steps/s rolled,
  3,300 unrolled, bit-identical to one step a dispatch rolled, not unrolled).
  """

  def multi(state, chunk, *, axis_name=None):
    per_step = unchunk(chunk, steps, view_devices)
    data = state.get('data')

    def body(carry, batch):
      if resident:
        batch = jax.tree.map(lambda a: jnp.take(a, batch['index'], axis=0), data)
      carry, metrics = step_fn(carry, batch, axis_name=axis_name)
      return carry, metrics

    inner = {k: v for k, v in state.items() if k != 'data'}
    if steps == 1:
      inner, metrics = body(inner, jax.tree.map(lambda a: a[0], per_step))
      metrics = jax.tree.map(lambda m: m[None], metrics)
    else:
      unroll = 1
      if jax.default_backend() == 'cpu' and _has_convolution(
        functools.partial(body, inner), jax.tree.map(lambda a: a[0], per_step)
      ):
        unroll = steps
      inner, metrics = jax.lax.scan(body, inner, per_step, unroll=unroll)
    if data is not None:
      inner['data'] = data
    return inner, metrics

  return multi


def _has_convolution(fn, *args) -> bool:
  """Whether `fn(*args)` (traced, not run) holds a convolution, in any sub-computation."""

  def subs(value):  # the jaxprs among an equation's parameters (cond's branches...)
    if hasattr(value, 'eqns'):
      yield value
    elif hasattr(value, 'jaxpr') and hasattr(value.jaxpr, 'eqns'):
      yield value.jaxpr
    elif isinstance(value, (tuple, list)):
      for v in value:
        yield from subs(v)

  def walk(jaxpr) -> bool:
    for eqn in jaxpr.eqns:
      if eqn.primitive.name == 'conv_general_dilated':
        return True
      if any(walk(sub) for v in eqn.params.values() for sub in subs(v)):
        return True
    return False

  return walk(jax.make_jaxpr(fn)(*args).jaxpr)
