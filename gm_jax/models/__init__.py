"""Flax modules, one family per module: `models.vae`, `models.flows`, `models.classifiers`."""

from gm_jax.models import vae
from gm_jax.models.vae import ConditionalVAE
from gm_jax.models.vae import VAE

__all__ = ('vae', 'VAE', 'ConditionalVAE')
