"""The contract between a model family and the generic trainer.

A family is a handful of pure functions. The trainer (`gm_jax.train.loop`) owns
everything else: optimiser, data order, PRNG keys, checkpoints, metrics, NaN guard,
best-on-validation selection, `eval.json` and `samples.png`. Data parallelism
(`gm_jax.parallel`) wraps the same `loss` without the family knowing.

Batches are dicts of NumPy/JAX arrays as produced by `gm_jax.data.batch_at_step`:
image datasets give `{'image': uint8 [B, H, W, C], 'label': int32 [B]}`, text
datasets `{'tokens': int32 [B, T], 'label': int32 [B]}`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
import dataclasses
from typing import Any

import numpy as np
import optax

Params = Any
Batch = Mapping[str, Any]


@dataclasses.dataclass(frozen=True)
class Family:
  """Pure functions that define one trainable model.

  Attributes:
    name: model name written to `eval.json` (e.g. `'vae'`).
    init: `(key, batch) -> params`. `batch` is a real training batch, so layers
      with data-dependent initialisation (ActNorm) can use it.
    loss: `(params, batch, key, *, train: bool) -> (loss, metrics)`; `loss` is a
      scalar (the mean over the batch of the per-example objective to minimise),
      `metrics` a dict of scalars logged to `metrics.jsonl`. Must be jittable.
      `train=False` disables dropout and is what validation uses.
    evaluate: `(params, splits, key, config) -> dict` run once at the end on the
      best parameters; returns the family's entries of `eval.json` (for
      likelihood models `test_nll_nats`, `test_bpd`, `bound`).
    sample: optional `(params, key, num) -> np.ndarray` of uint8 images
      `[num, H, W, C]` on the dataset's level grid, used for `samples.png` and
      `samples_per_s`.
    pictures: optional `(params, splits, key, workdir) -> dict` that writes extra
      figures into `workdir` and may return extra `eval.json` entries.
    validation_metric: name of the entry of `metrics` (computed with
      `train=False` and averaged over the validation split) that selects the best
      parameters; lower is better. `None`: no selection, the last parameters are
      evaluated (e.g. GANs, whose losses do not measure sample quality).
    train_update: optional `TrainUpdate` for objectives that are not one loss
      minimised by one optimiser (a GAN's alternating D and G updates, a full-batch
      fit). When set, the trainer's step calls it instead of differentiating `loss`,
      and `loss` is only evaluated (validation, parallel checks).
    loss_takes_step: whether `loss` takes a keyword `step` (the step being taken, an
      int32 scalar; e.g. a KL warm-up). The trainer passes it when training and
      never inspects the signature.
    evaluate_takes_workdir: whether `evaluate` takes a keyword `workdir` (the run's
      folder, e.g. for the real-data FID statistics cached under `<workdir>/cache`).
      The trainer passes it to the final evaluation; other callers may leave it out.
    optimizer: the `optax.GradientTransformation` that minimises `loss` (families
      without a `train_update`); `None`: `optim.make_optimizer(config)`.
    schedule: `(config) -> optax.Schedule`, the learning rate of each step as this
      family trains under `config` (any config of this model, e.g. a saved one). The
      resume check compares two configs' schedules with it. `None`:
      `optim.learning_rate_schedule`.
    messages: the family's own notes, printed by the trainer when their event
      happens: `'init_from'` (a run starts from another run's parameters, e.g. "the
      KL warm-up restarts"), `'zero_gradient'` (every step since the last log had a
      zero gradient, e.g. "a gradient-skipping threshold below the norms of this
      data does this").
    resume_may_change: this family's config fields that only the final evaluation
      and pictures read (sample counts, temperatures): a resumed run may change them.
    ema_keys: which top-level entries of `params` the trainer averages when
      `config.ema_decay > 0` (the weights validation, `evaluate`, `sample` and `pictures`
      then see have these entries averaged, the others as trained), e.g.
      `('generator',)` for a GAN whose samples need only its generator. `None`: all of
      `params`.
  """

  name: str
  init: Callable[..., Params]
  loss: Callable[..., tuple[Any, dict]]
  evaluate: Callable[..., dict]
  sample: Callable[..., np.ndarray] | None = None
  pictures: Callable[..., dict] | None = None
  validation_metric: str | None = 'loss'
  train_update: TrainUpdate | None = None
  loss_takes_step: bool = False
  evaluate_takes_workdir: bool = False
  optimizer: optax.GradientTransformation | None = None
  schedule: Callable[[Any], optax.Schedule] | None = None
  messages: Mapping[str, str] = dataclasses.field(default_factory=dict)
  resume_may_change: frozenset = frozenset()
  ema_keys: tuple[str, ...] | None = None


@dataclasses.dataclass(frozen=True)
class TrainUpdate:
  """A family's own update rule, an `(init, update)` pair of pure functions (as optax).

  Attributes:
    init: `(params) -> opt_state`, everything the update carries besides `params`
      (several optimisers' states, a CycleGAN image pool); checkpointed with the rest
      of the train state, so a run resumes exactly.
    update: `(params, opt_state, batch, key, *, step, axis_name=None) ->
      (params, opt_state, metrics)`. `params` may hold non-trained collections
      (batch-norm statistics) that the update rewrites. `metrics` must hold a scalar
      `'loss'` (the NaN guard's value). With `axis_name` (pmap) the update sees this
      device's shard and must `lax.pmean` its gradients, metrics and statistics over
      that axis so every device computes the same new state. Noise must be drawn per
      global example (`parallel.shard_offset`) for the modes to agree.
  """

  init: Callable[[Params], Any]
  update: Callable[..., tuple[Params, Any, dict]]
