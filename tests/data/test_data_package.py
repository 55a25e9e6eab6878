"""gm_jax.data's package: its public names, and modules that import one way only."""

import ast
import os

import pytest

from gm_jax import data

_PACKAGE = os.path.dirname(os.path.abspath(data.__file__))


def _imports(path: str) -> set[str]:
  """The `gm_jax.data` modules that module `path` imports, wherever the import stands."""
  out = set()
  for node in ast.walk(ast.parse(open(path).read())):
    if isinstance(node, ast.ImportFrom) and node.module == 'gm_jax.data':
      out |= {alias.name for alias in node.names}
    elif isinstance(node, ast.ImportFrom) and (node.module or '').startswith('gm_jax.data.'):
      out.add(node.module.split('.')[2])
    elif isinstance(node, ast.Import):
      out |= {a.name.split('.')[2] for a in node.names if a.name.startswith('gm_jax.data.')}
  return out


def test_no_module_of_gm_jax_data_imports_one_that_imports_it_back():
  modules = {f[:-3] for f in os.listdir(_PACKAGE) if f.endswith('.py') and f != '__init__.py'}
  graph = {m: (_imports(os.path.join(_PACKAGE, f'{m}.py')) & modules) - {m} for m in modules}
  assert graph['stream'] >= {'reading', 'batching', 'catalogue'}  # the graph is read
  done, path = set(), []

  def visit(m):
    if m in path:
      raise AssertionError(f'import cycle: {" -> ".join(path[path.index(m) :] + [m])}')
    if m in done:
      return
    path.append(m)
    for n in sorted(graph[m]):
      visit(n)
    path.pop()
    done.add(m)

  for m in sorted(modules):
    visit(m)


@pytest.mark.parametrize('name', data.__all__)
def test_every_public_name_resolves(name):
  assert getattr(data, name) is not None
