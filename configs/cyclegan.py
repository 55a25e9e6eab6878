"""CycleGAN's default config: the `photo_patches` china <-> flower run.

See `configs/cyclegan_photos.py` for the command and the expected numbers.
"""

import importlib.util
import os

_spec = importlib.util.spec_from_file_location(
    'gm_config_cyclegan_photos',
    os.path.join(os.path.dirname(os.path.abspath(__file__)), 'cyclegan_photos.py'))
_photos = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_photos)


def get_config():
  return _photos.get_config()
