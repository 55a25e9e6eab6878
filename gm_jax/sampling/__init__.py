"""Sampling: autoregressive models, and one sampler suite for every diffusion and flow model.

* `sample(model, params, key, shape, method='cached')`: PixelCNN and the causal LM,
  position by position, naive or with caches (`_autoregressive`).
* The suite over a denoiser `D(x; sigma)` in k-diffusion's convention (`_karras`):
  `karras_sigmas`, `sample_euler`, `sample_heun`, `sample_euler_ancestral`,
  `sample_dpmpp_2m`, the `SAMPLERS` registry with `get_sampler(name)` and `nfe`; the
  adapters `vp_denoiser` (VDM/DDPM noise predictors), `flow_denoiser` (flow-matching
  velocities) and `guided_denoiser` (classifier-free guidance) (`_denoisers`):

      denoise = vp_denoiser(lambda z, lam: eps_net(params, z, lam))
      sigmas = karras_sigmas(10, sigma_min=0.01, sigma_max=80.0)
      x = sample_dpmpp_2m(denoise, noise * sigmas[0], sigmas)

* Each parametrisation's own samplers and the likelihood (`_ode`): `diffusion_sample`
  (DDPM, DDIM, probability-flow ODE), `flow_sample`, `classifier_free_guidance`,
  `probability_flow_velocity`, `odeint`, `ode_log_likelihood`.
"""

from gm_jax.sampling._autoregressive import METHODS
from gm_jax.sampling._autoregressive import sample
from gm_jax.sampling._denoisers import flow_denoiser
from gm_jax.sampling._denoisers import guided_denoiser
from gm_jax.sampling._denoisers import log_snr_from_sigma
from gm_jax.sampling._denoisers import sigma_from_log_snr
from gm_jax.sampling._denoisers import vp_denoiser
from gm_jax.sampling._karras import check_sigmas
from gm_jax.sampling._karras import get_sampler
from gm_jax.sampling._karras import karras_sigmas
from gm_jax.sampling._karras import nfe
from gm_jax.sampling._karras import sample_dpmpp_2m
from gm_jax.sampling._karras import sample_euler
from gm_jax.sampling._karras import sample_euler_ancestral
from gm_jax.sampling._karras import sample_heun
from gm_jax.sampling._karras import SAMPLERS
from gm_jax.sampling._ode import classifier_free_guidance
from gm_jax.sampling._ode import DIFFUSION_METHODS
from gm_jax.sampling._ode import diffusion_sample
from gm_jax.sampling._ode import flow_sample
from gm_jax.sampling._ode import ode_log_likelihood
from gm_jax.sampling._ode import ODE_METHODS
from gm_jax.sampling._ode import odeint
from gm_jax.sampling._ode import probability_flow_velocity
from gm_jax.sampling._ode import TRACES

__all__ = (
  'DIFFUSION_METHODS',
  'METHODS',
  'ODE_METHODS',
  'SAMPLERS',
  'TRACES',
  'check_sigmas',
  'classifier_free_guidance',
  'diffusion_sample',
  'flow_denoiser',
  'flow_sample',
  'get_sampler',
  'guided_denoiser',
  'karras_sigmas',
  'log_snr_from_sigma',
  'nfe',
  'ode_log_likelihood',
  'odeint',
  'probability_flow_velocity',
  'sample',
  'sample_dpmpp_2m',
  'sample_euler',
  'sample_euler_ancestral',
  'sample_heun',
  'sigma_from_log_snr',
  'vp_denoiser',
)
