"""Flax modules and pure model functions, one family per module.

`models.vae` (VAE, ConditionalVAE, ELBO/IWAE objectives), `models.classifiers` (naive
Bayes and logistic regression), `models.flows` (NICE, RealNVP, Glow).
"""

from gm_jax.models import classifiers
from gm_jax.models import flows
from gm_jax.models import vae
from gm_jax.models.vae import ConditionalVAE
from gm_jax.models.vae import VAE

__all__ = ('classifiers', 'flows', 'vae', 'VAE', 'ConditionalVAE')
