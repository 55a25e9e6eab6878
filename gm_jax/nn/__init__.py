"""Layers shared by families: `nn.layers` (MLP, input scaling), `nn.flows` (bijectors),
`nn.autoregressive` (causal convolutions, PixelCNN masks), `nn.ema` (parameter averages),
`nn.splines` (the rational-quadratic spline), `nn.made` (MADE masks),
`nn.autoregressive_flows` (MAF and spline flow steps), `nn.iaf` (inverse autoregressive flow
steps), `nn.vq` (vector quantisation)."""

from gm_jax.nn import autoregressive
from gm_jax.nn import autoregressive_flows
from gm_jax.nn import ema
from gm_jax.nn import flows
from gm_jax.nn import iaf
from gm_jax.nn import layers
from gm_jax.nn import made
from gm_jax.nn import splines
from gm_jax.nn import vq
from gm_jax.nn.layers import MLP

__all__ = (
  'MLP',
  'autoregressive',
  'autoregressive_flows',
  'ema',
  'flows',
  'iaf',
  'layers',
  'made',
  'splines',
  'vq',
)
