"""Per-example GAN and CycleGAN objectives (all to be minimised).

Discriminator outputs may be one logit per example, `[B]`, or a patch map
(PatchGAN), e.g. `[B, h, w, 1]`; the non-batch axes are *averaged*, so a patch
discriminator's loss has the same scale as a global one and a `[B]` input is
returned elementwise.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from gm_jax.losses import _shapes


def _as_batched(name: str, x) -> jnp.ndarray:
  x = jnp.asarray(x)
  _shapes.batch_rank_check(name, x.shape)
  return x


def _check_same_batch(name_a: str, a: jnp.ndarray, name_b: str, b: jnp.ndarray) -> None:
  if a.shape[0] != b.shape[0]:
    raise ValueError(
      f'{name_a} {a.shape} and {name_b} {b.shape} must have the same batch size (axis 0).'
    )


@_shapes.float32_reductions
def discriminator_loss(real_logits: jnp.ndarray, fake_logits: jnp.ndarray) -> jnp.ndarray:
  """Minimax discriminator loss `-log D(x) - log(1 - D(G(z)))`.

  With `D = sigmoid(logits)` this is `softplus(-real) + softplus(fake)`
  (Goodfellow et al. 2014, "Generative Adversarial Nets", eq. 1, negated).

  Args:
    real_logits: `[B]` or `[B, ...]` discriminator logits on real data.
    fake_logits: `[B]` or `[B, ...]` discriminator logits on generated data,
      with the same batch size.

  Returns:
    `[B]` losses; the non-batch axes of each input are averaged.
  """
  real = _as_batched('real_logits', real_logits)
  fake = _as_batched('fake_logits', fake_logits)
  _check_same_batch('real_logits', real, 'fake_logits', fake)
  return _shapes.mean_non_batch(jax.nn.softplus(-real)) + _shapes.mean_non_batch(
    jax.nn.softplus(fake)
  )


@_shapes.float32_reductions
def generator_minimax_loss(fake_logits: jnp.ndarray) -> jnp.ndarray:
  """Original (saturating) generator loss `log(1 - D(G(z)))`, minimised.

  `log(1 - sigmoid(l)) = -softplus(l)` (Goodfellow et al. 2014, eq. 1). Its
  gradient vanishes when D confidently rejects fakes; prefer
  `generator_nonsaturating_loss` for training.

  Args:
    fake_logits: `[B]` or `[B, ...]` discriminator logits on generated data.

  Returns:
    `[B]` losses; non-batch axes averaged.
  """
  fake = _as_batched('fake_logits', fake_logits)
  return _shapes.mean_non_batch(-jax.nn.softplus(fake))


@_shapes.float32_reductions
def generator_nonsaturating_loss(fake_logits: jnp.ndarray) -> jnp.ndarray:
  """Non-saturating generator loss `-log D(G(z)) = softplus(-l)`.

  Goodfellow et al. 2014, Sec. 3 ("maximize log D(G(z))").

  Args:
    fake_logits: `[B]` or `[B, ...]` discriminator logits on generated data.

  Returns:
    `[B]` losses; non-batch axes averaged.
  """
  fake = _as_batched('fake_logits', fake_logits)
  return _shapes.mean_non_batch(jax.nn.softplus(-fake))


@_shapes.float32_reductions
def lsgan_discriminator_loss(real_out: jnp.ndarray, fake_out: jnp.ndarray) -> jnp.ndarray:
  """Least-squares discriminator loss `0.5 (D(x) - 1)^2 + 0.5 D(G(z))^2`.

  Mao et al. 2017, "Least Squares Generative Adversarial Networks", eq. 2 with
  targets a = 0 (fake), b = 1 (real). The outputs are raw scores, not logits
  passed through a sigmoid.

  Args:
    real_out: `[B]` or `[B, ...]` discriminator outputs on real data.
    fake_out: `[B]` or `[B, ...]` discriminator outputs on generated data, with
      the same batch size.

  Returns:
    `[B]` losses; the non-batch axes of each input are averaged.
  """
  real = _as_batched('real_out', real_out)
  fake = _as_batched('fake_out', fake_out)
  _check_same_batch('real_out', real, 'fake_out', fake)
  return 0.5 * (
    _shapes.mean_non_batch(jnp.square(real - 1.0)) + _shapes.mean_non_batch(jnp.square(fake))
  )


@_shapes.float32_reductions
def lsgan_generator_loss(fake_out: jnp.ndarray) -> jnp.ndarray:
  """Least-squares generator loss `0.5 (D(G(z)) - 1)^2`.

  Mao et al. 2017, eq. 2 with c = 1.

  Args:
    fake_out: `[B]` or `[B, ...]` discriminator outputs on generated data.

  Returns:
    `[B]` losses; non-batch axes averaged.
  """
  fake = _as_batched('fake_out', fake_out)
  return 0.5 * _shapes.mean_non_batch(jnp.square(fake - 1.0))


@_shapes.float32_reductions
def cycle_consistency_loss(x: jnp.ndarray, x_cycled: jnp.ndarray) -> jnp.ndarray:
  """Cycle-consistency loss `mean |x - F(G(x))|` per example.

  Zhu et al. 2017, "Unpaired Image-to-Image Translation using Cycle-Consistent
  Adversarial Networks", eq. 2 (L1, averaged here over the non-batch axes).

  Args:
    x: `[B, ...]` inputs.
    x_cycled: `[B, ...]` reconstructions after a round trip, same shape as `x`.

  Returns:
    `[B]` mean absolute errors.
  """
  x = _as_batched('x', x)
  x_cycled = jnp.asarray(x_cycled)
  if x.shape != x_cycled.shape:
    raise ValueError(f'x {x.shape} and x_cycled {x_cycled.shape} must have the same shape.')
  return _shapes.mean_non_batch(jnp.abs(x - x_cycled))
