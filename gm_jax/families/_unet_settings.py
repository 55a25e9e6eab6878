"""The U-Net settings of the diffusion, EDM and consistency families, in one place.

Each of those families writes `{**_unet_settings.DEFAULTS, ...}` into its own `DEFAULTS`
(consistency with a narrower default width), calls `check_config` from its own and builds
its network with `build_unet`; diffusion and EDM add the class conditioning of
classifier-free guidance (`CONDITIONING_DEFAULTS`, `check_conditioning`).
"""

from __future__ import annotations

from gm_jax.models import diffusion as dm

# the U-Net (models.diffusion.UNet)
DEFAULTS = {
  'channels': 64,
  'channel_mults': (1, 2),
  'num_res_blocks': 1,
  'attention': False,
  'dropout_rate': 0.1,
}
DEFAULTS_DOC = {
  'channels': 'U-Net base width',
  'channel_mults': 'U-Net width multiplier per resolution',
  'num_res_blocks': 'residual blocks per U-Net resolution',
  'attention': 'self-attention at the lowest resolution',
  'dropout_rate': 'dropout in the residual blocks, in [0, 1)',
}

# class conditioning and classifier-free guidance (scale 0: unconditional, 1: conditional)
CONDITIONING_DEFAULTS = {
  'conditional': False,
  'cond_drop_rate': 0.1,
  'guidance_scale': 1.0,
}
CONDITIONING_DOC = {
  'conditional': 'class-conditional model (with classifier-free guidance)',
  'cond_drop_rate': 'probability of dropping the label in training (guidance)',
  'guidance_scale': 'classifier-free guidance scale (0: unconditional, 1: conditional)',
}


def check_positive_ints(config, names) -> None:
  """A ValueError names the first of `names` that is not an integer > 0."""
  for name in names:
    value = config[name]
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
      raise ValueError(f'config.{name} must be a positive integer; got {value!r}')


def check_config(config) -> None:
  """The U-Net fields of `DEFAULTS`; errors name the field."""
  check_positive_ints(config, ('channels', 'num_res_blocks'))
  if not config.channel_mults or any(
    not isinstance(m, int) or m <= 0 for m in config.channel_mults
  ):
    raise ValueError(
      f'config.channel_mults must be positive integers; got {config.channel_mults!r}'
    )
  if not 0.0 <= config.dropout_rate < 1.0:
    raise ValueError(f'config.dropout_rate must be in [0, 1); got {config.dropout_rate!r}')


def check_conditioning(config, info) -> None:
  """`conditional` (needs labels in dataset `info`) and `cond_drop_rate`."""
  if config.conditional and not info.num_classes:
    raise ValueError(f'config.conditional=True needs labels; {info.name!r} has none')
  if not 0.0 <= config.cond_drop_rate < 1.0:
    raise ValueError(f'config.cond_drop_rate must be in [0, 1); got {config.cond_drop_rate!r}')


def build_unet(config, info, *, num_classes: int = 0, fourier_exponents=()) -> dm.UNet:
  """The `UNet` of `config`'s U-Net fields, checked against the image shape of `info`.

  Args:
    num_classes: 0 for an unconditional network, else the dataset's classes (the null
      class of classifier-free guidance is `num_classes`).
    fourier_exponents: Fourier-feature exponents of the input (VDM).
  """
  net = dm.UNet(
    channels=config.channels,
    channel_mults=tuple(config.channel_mults),
    num_res_blocks=config.num_res_blocks,
    attention=bool(config.attention),
    num_classes=num_classes,
    fourier_exponents=tuple(fourier_exponents),
    dropout_rate=float(config.dropout_rate),
  )
  dm.check_image_shape(net, info.shape)
  return net
