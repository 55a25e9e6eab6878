"""Flax modules and pure model functions, one family per module.

`models.vae` (VAE, ConditionalVAE, ELBO/IWAE objectives), `models.classifiers` (naive
Bayes and logistic regression), `models.flows` (NICE, RealNVP, Glow),
`models.autoregressive` (CausalConvLM, PixelCNN), `models.gan` (DCGAN networks and the
three GAN objectives), `models.cyclegan` (ResNet generator, PatchGAN, image pool).
"""

from gm_jax.models import autoregressive
from gm_jax.models import classifiers
from gm_jax.models import cyclegan
from gm_jax.models import flows
from gm_jax.models import gan
from gm_jax.models import vae
from gm_jax.models.vae import ConditionalVAE
from gm_jax.models.vae import VAE

__all__ = ('autoregressive', 'classifiers', 'cyclegan', 'flows', 'gan', 'vae', 'VAE',
           'ConditionalVAE')
