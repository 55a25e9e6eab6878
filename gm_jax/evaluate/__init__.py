"""Evaluation helpers: calibration metrics, image grids, plots."""

from gm_jax.evaluate import calibration
from gm_jax.evaluate.calibration import expected_calibration_error

__all__ = ('calibration', 'expected_calibration_error')
