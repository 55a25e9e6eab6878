"""Runs a test file as a subprocess with N CPU devices and reads back its JSON report.

JAX fixes its device count when it starts, so multi-device checks run in a fresh
process: `--xla_force_host_platform_device_count=N` added to the suite's own
`XLA_FLAGS` (the fast-compile flags of tests/conftest.py).
"""

import json
import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def env(devices: int) -> dict:
  """This process's environment with `devices` CPU devices, the repository importable."""
  flags = os.environ.get('XLA_FLAGS', '')
  return dict(
    os.environ,
    XLA_FLAGS=f'{flags} --xla_force_host_platform_device_count={devices}',
    JAX_PLATFORMS='cpu',
    CUDA_VISIBLE_DEVICES='',
    TF_CPP_MIN_LOG_LEVEL='2',
    PYTHONPATH=REPO,
  )


def run_report(script: str, args: list[str], devices: int) -> dict:
  """`python script *args` on `devices` CPU devices -> its last stdout line, as JSON."""
  proc = subprocess.run(
    [sys.executable, script, *args],
    cwd=REPO,
    env=env(devices),
    capture_output=True,
    text=True,
    timeout=600,
    check=False,
  )
  assert proc.returncode == 0, proc.stderr[-3000:]
  return json.loads(proc.stdout.strip().splitlines()[-1])
