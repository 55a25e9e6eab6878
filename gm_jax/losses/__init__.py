"""Loss functions: arrays in, one value per example (`[B]`) out.

Axis 0 is the batch. Log-probabilities and KLs are summed over the other axes;
GAN and cycle losses average them; the diffusion and flow-matching regressions
sum their squared errors. Hyper-parameters are keyword-only. None of
these functions calls a model, so callers can weight, mask, `vmap` or `mean`
the results as they need.
"""

from gm_jax.losses._bounds import autoregressive_nll
from gm_jax.losses._bounds import bits_per_dim
from gm_jax.losses._bounds import elbo
from gm_jax.losses._bounds import flow_nll
from gm_jax.losses._bounds import iwae_bound
from gm_jax.losses._consistency import consistency_loss
from gm_jax.losses._diffusion import diffusion_loss
from gm_jax.losses._diffusion import flow_matching_loss
from gm_jax.losses._divergences import gaussian_kl
from gm_jax.losses._edm import edm_loss
from gm_jax.losses._gan import cycle_consistency_loss
from gm_jax.losses._gan import discriminator_loss
from gm_jax.losses._gan import generator_minimax_loss
from gm_jax.losses._gan import generator_nonsaturating_loss
from gm_jax.losses._gan import lsgan_discriminator_loss
from gm_jax.losses._gan import lsgan_generator_loss
from gm_jax.losses._likelihoods import bernoulli_log_prob
from gm_jax.losses._likelihoods import categorical_log_prob
from gm_jax.losses._likelihoods import discretized_logistic_log_prob
from gm_jax.losses._likelihoods import discretized_logistic_mixture_log_prob
from gm_jax.losses._likelihoods import gaussian_log_prob

__all__ = (
  'autoregressive_nll',
  'bernoulli_log_prob',
  'bits_per_dim',
  'categorical_log_prob',
  'consistency_loss',
  'cycle_consistency_loss',
  'diffusion_loss',
  'discretized_logistic_log_prob',
  'discretized_logistic_mixture_log_prob',
  'discriminator_loss',
  'edm_loss',
  'elbo',
  'flow_matching_loss',
  'flow_nll',
  'gaussian_kl',
  'gaussian_log_prob',
  'generator_minimax_loss',
  'generator_nonsaturating_loss',
  'iwae_bound',
  'lsgan_discriminator_loss',
  'lsgan_generator_loss',
)
