"""Which module trains which `config.model` (imported lazily: TF-free until used)."""

from __future__ import annotations

import importlib

# model name -> module exposing `train_and_evaluate(config, workdir) -> dict`.
MODELS = {
    'vae': 'gm_jax.train.vae',
    'cvae': 'gm_jax.train.vae',
    'hvae': 'gm_jax.train.hvae',
    'nice': 'gm_jax.train.flows',
    'realnvp': 'gm_jax.train.flows',
    'glow': 'gm_jax.train.flows',
    'dcgan': 'gm_jax.train.gan',
    'cyclegan': 'gm_jax.train.cyclegan',
    'pixelcnn': 'gm_jax.train.autoregressive',
    'char_lm': 'gm_jax.train.autoregressive',
    'naive_bayes': 'gm_jax.train.classifiers',
    'logreg': 'gm_jax.train.classifiers',
    'diffusion': 'gm_jax.train.diffusion',
    'flow_matching': 'gm_jax.train.diffusion',
}


def trainer_for(model: str):
  """Returns the `train_and_evaluate` function for `model`, or a ValueError naming it."""
  if model not in MODELS:
    raise ValueError(f'unknown config.model {model!r}; known models: {", ".join(sorted(MODELS))}')
  try:
    module = importlib.import_module(MODELS[model])
  except ModuleNotFoundError as e:
    raise ValueError(f'config.model {model!r} is not available in this build ({e})') from e
  return module.train_and_evaluate
