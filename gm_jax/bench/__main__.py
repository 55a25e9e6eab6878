"""`python -m gm_jax.bench ...`: see `gm_jax.bench` (the package docstring) for the flags."""

import sys

from gm_jax.bench import cli

if __name__ == '__main__':
  sys.exit(cli.run())
