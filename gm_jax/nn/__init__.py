"""Layers shared by families: `nn.layers` (MLP, input scaling), `nn.flows` (bijectors),
`nn.autoregressive` (causal convolutions, PixelCNN masks), `nn.ema` (parameter averages)."""

from gm_jax.nn import autoregressive
from gm_jax.nn import ema
from gm_jax.nn import flows
from gm_jax.nn import layers
from gm_jax.nn.layers import MLP

__all__ = ('autoregressive', 'ema', 'flows', 'layers', 'MLP')
