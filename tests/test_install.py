"""tools/install.py: pip's settings become uv's flags, or the install falls back to pip."""

import importlib.util
import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope='module')
def install():
  spec = importlib.util.spec_from_file_location(
    'gm_jax_tools_install', os.path.join(ROOT, 'tools', 'install.py')
  )
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def test_pip_settings_translate_to_uv_flags(install):
  flags = install.uv_flags(
    {
      'extra-index-url': 'file:///a/simple file:///b/simple',
      'find-links': '/wheels',
      'constraint': '/etc/c.txt',
      'index-url': 'https://example.org/simple',
      'cert': '/etc/ssl/ca.crt',
      'default-timeout': '180',
      'disable-pip-version-check': '1',
    }
  )
  assert flags == [
    '--index-strategy',
    'unsafe-best-match',  # pip takes the best version over all indexes
    '--extra-index-url',
    'file:///a/simple',
    '--extra-index-url',
    'file:///b/simple',
    '--find-links',
    '/wheels',
    '--constraint',
    '/etc/c.txt',
    '--index-url',
    'https://example.org/simple',
  ]
  assert install.uv_flags({'no-index': 'true'})[-1] == '--no-index'


def test_an_untranslated_pip_setting_means_pip(install):
  why = install.uv_flags({'proxy': 'http://proxy:3128', 'find-links': '/wheels'})
  assert isinstance(why, str) and 'proxy' in why


def test_pip_config_is_read_with_later_scopes_winning(install, monkeypatch):
  out = (
    "global.find-links='/a'\nglobal.extra-index-url='file:///x file:///y'\n:env:.find-links='/b'\n"
  )

  class Done:
    stdout = out

  monkeypatch.setattr(install.subprocess, 'run', lambda *a, **k: Done())
  assert install.pip_settings() == {'find-links': '/b', 'extra-index-url': 'file:///x file:///y'}


def test_forced_pip_runs_pip_with_the_same_arguments(install, monkeypatch):
  calls = []
  monkeypatch.setattr(install.subprocess, 'call', lambda cmd, **k: calls.append(cmd) or 0)
  monkeypatch.setenv('GM_JAX_INSTALL_WITH_PIP', '1')
  assert install.main(['-q', '-e', '.[lint]']) == 0
  assert calls == [[sys.executable, '-m', 'pip', 'install', '-q', '-e', '.[lint]']]


def test_a_failed_uv_install_falls_back_to_pip(install, monkeypatch, tmp_path, capsys):
  calls = []
  monkeypatch.delenv('GM_JAX_INSTALL_WITH_PIP', raising=False)
  monkeypatch.setattr(install, 'pip_settings', lambda: {'find-links': '/wheels'})
  monkeypatch.setattr(install.os.path, 'exists', lambda p: True)  # uv "installed"
  monkeypatch.setattr(
    install.subprocess,
    'call',
    lambda cmd, **k: calls.append(cmd) or (1 if os.path.basename(cmd[0]) == 'uv' else 0),
  )
  assert install.main(['nflows==0.14']) == 0
  assert calls[0][1:4] == ['pip', 'install', '--python'] and calls[0][-1] == 'nflows==0.14'
  assert calls[1] == [sys.executable, '-m', 'pip', 'install', 'nflows==0.14']
  assert 'installing with pip' in capsys.readouterr().err
