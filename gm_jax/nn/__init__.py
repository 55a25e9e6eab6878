"""Layers shared by families: `nn.layers` (MLP, input scaling), `nn.flows` (bijectors)."""

from gm_jax.nn import flows
from gm_jax.nn import layers
from gm_jax.nn.layers import MLP

__all__ = ('flows', 'layers', 'MLP')
