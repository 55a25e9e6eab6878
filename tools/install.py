"""`pip install ARGS` into this interpreter's environment, done by uv when it can.

    .venv/bin/python tools/install.py -e '.[tfds,plots]' -c constraints.txt

The Makefile's install steps. uv (pinned in constraints.txt, installed by pip from the
same registry) unpacks the same pinned wheels in parallel: a fresh `.venv` with every
extra took 20 s against pip's 115 s on the 2-core machine (same `pip freeze`). uv reads
neither pip.conf nor `PIP_*`, so pip's effective settings (`pip config list`: index URLs,
find-links, constraints, certificate) are passed on as uv's flags, with pip's rule of
taking the best version from all indexes (`--index-strategy unsafe-best-match`). Where
pip is configured in a way this does not translate, or uv fails, pip does the install
(the reason is printed).
"""

import os
import shlex
import subprocess
import sys

UV_PIN = 'uv==0.13.9'
# pip settings that change nothing about what is installed.
_HARMLESS = {
  'default-timeout',
  'timeout',
  'disable-pip-version-check',
  'retries',
  'progress-bar',
  'quiet',
  'no-cache-dir',
  'cache-dir',
  'root-user-action',
  'break-system-packages',
}


def pip_settings() -> dict[str, str]:
  """pip's effective settings, later scopes (site, env) overriding earlier ones."""
  out = subprocess.run(
    [sys.executable, '-m', 'pip', 'config', 'list'], capture_output=True, text=True, check=True
  ).stdout
  settings = {}
  for line in out.splitlines():
    key, _, value = line.partition('=')
    name = key.rsplit('.', 1)[-1]
    settings[name] = value.strip().strip('\'"')
  return settings


def uv_flags(settings: dict[str, str]) -> list[str] | str:
  """uv's flags for pip's `settings`, or why they cannot be translated."""
  flags = ['--index-strategy', 'unsafe-best-match']
  for name, value in settings.items():
    values = value.split()
    if name == 'index-url':
      flags += ['--index-url', values[0]]
    elif name == 'extra-index-url':
      for v in values:
        flags += ['--extra-index-url', v]
    elif name == 'find-links':
      for v in values:
        flags += ['--find-links', v]
    elif name == 'constraint':
      for v in values:
        flags += ['--constraint', v]
    elif name == 'no-index':
      if value.lower() in ('1', 'true', 'yes', 'on'):
        flags.append('--no-index')
    elif name == 'cert':
      pass  # passed as SSL_CERT_FILE
    elif name not in _HARMLESS:
      return f'pip setting {name}={value!r} has no uv translation here'
  return flags


def main(args: list[str]) -> int:
  pip = [sys.executable, '-m', 'pip', 'install', *args]
  if os.environ.get('GM_JAX_INSTALL_WITH_PIP'):
    return subprocess.call(pip)
  settings = pip_settings()
  flags = uv_flags(settings)
  uv = os.path.join(os.path.dirname(sys.executable), 'uv')
  if isinstance(flags, str):
    why = flags
  elif not os.path.exists(uv) and subprocess.call(
    [sys.executable, '-m', 'pip', 'install', '-q', UV_PIN]
  ):
    why = f'could not install {UV_PIN}'
  else:
    env = dict(os.environ)
    if 'cert' in settings:
      env.setdefault('SSL_CERT_FILE', settings['cert'])
    cmd = [uv, 'pip', 'install', '--python', sys.executable, *flags, *args]
    if subprocess.call(cmd, env=env) == 0:
      return 0
    why = f'{shlex.join(cmd)} failed'
  print(f'tools/install.py: {why}; installing with pip.', file=sys.stderr)
  return subprocess.call(pip)


if __name__ == '__main__':
  sys.exit(main(sys.argv[1:]))
