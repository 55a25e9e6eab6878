"""Flax modules and pure model functions, one family per module.

`models.vae` (VAE, ConditionalVAE, ELBO/IWAE objectives), `models.naive_bayes` and
`models.logistic_regression` (the generative and the discriminative classifier),
`models.flows` (NICE, RealNVP, Glow), `models.autoregressive` (CausalConvLM, PixelCNN),
`models.gan` (DCGAN networks and the three GAN objectives), `models.cyclegan` (ResNet
generator, PatchGAN, image pool).
"""

from gm_jax.models import autoregressive
from gm_jax.models import cyclegan
from gm_jax.models import flows
from gm_jax.models import gan
from gm_jax.models import logistic_regression
from gm_jax.models import naive_bayes
from gm_jax.models import vae
from gm_jax.models.vae import ConditionalVAE
from gm_jax.models.vae import VAE

__all__ = (
  'autoregressive',
  'cyclegan',
  'flows',
  'gan',
  'logistic_regression',
  'naive_bayes',
  'vae',
  'VAE',
  'ConditionalVAE',
)
