"""Imports run downward (docs/families.md, STYLE.md habit 1), read from the source's AST.

`losses`, `nn`, `models`, `parallel`, `data` and `evaluate` import neither the trainer
(`gm_jax.train`) nor a family (`gm_jax.families`); the trainer imports no family; and no
module of gm_jax imports one that imports it back (imports inside functions included).
"""

import ast
import os

import pytest

ROOT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'gm_jax')
LOWER = ('losses', 'nn', 'models', 'parallel', 'data', 'evaluate')


def _module_name(path: str) -> str:
  rel = os.path.relpath(path, os.path.dirname(ROOT))[:-3].replace(os.sep, '.')
  return rel[: -len('.__init__')] if rel.endswith('.__init__') else rel


def _is_module(name: str) -> bool:
  base = os.path.join(os.path.dirname(ROOT), *name.split('.'))
  return os.path.exists(base + '.py') or os.path.exists(os.path.join(base, '__init__.py'))


def _imports(path: str) -> set[str]:
  """The gm_jax modules `path` imports (a `from package import name` counts the submodule
  `package.name` where there is one, else `package`)."""
  with open(path) as f:
    tree = ast.parse(f.read(), path)
  me = _module_name(path)
  package = me if path.endswith('__init__.py') else me.rsplit('.', 1)[0]
  out = set()
  for node in ast.walk(tree):
    if isinstance(node, ast.Import):
      out |= {a.name for a in node.names if a.name.split('.')[0] == 'gm_jax'}
    elif isinstance(node, ast.ImportFrom):
      if node.level:
        base = package.split('.')
        base = base[: len(base) - node.level + 1]
        source = '.'.join(base + ([node.module] if node.module else []))
      else:
        source = node.module or ''
      if source.split('.')[0] != 'gm_jax':
        continue
      for alias in node.names:
        full = f'{source}.{alias.name}'
        out.add(full if _is_module(full) else source)
  out.discard(me)
  return out


def _graph() -> dict[str, set[str]]:
  graph = {}
  for folder, _, files in os.walk(ROOT):
    for name in files:
      if name.endswith('.py'):
        path = os.path.join(folder, name)
        graph[_module_name(path)] = _imports(path)
  return graph


GRAPH = _graph()


def _layer(module: str) -> str:
  parts = module.split('.')
  return parts[1] if len(parts) > 1 else ''


def test_the_graph_is_read():
  assert 'gm_jax.families.vae' in GRAPH and 'gm_jax.train.optim' in GRAPH['gm_jax.families.vae']
  assert 'gm_jax.families' in GRAPH['gm_jax.main']


@pytest.mark.parametrize('layer', LOWER)
def test_lower_layers_import_neither_the_trainer_nor_a_family(layer):
  bad = {
    m: sorted(i for i in imports if _layer(i) in ('train', 'families'))
    for m, imports in GRAPH.items()
    if _layer(m) == layer
  }
  assert not {m: i for m, i in bad.items() if i}


def test_the_trainer_imports_no_family():
  bad = {
    m: sorted(i for i in imports if _layer(i) == 'families')
    for m, imports in GRAPH.items()
    if _layer(m) == 'train'
  }
  assert not {m: i for m, i in bad.items() if i}


def _cycles(graph):
  """The strongly connected components with more than one module (Tarjan)."""
  index, low, stack, on_stack, out = {}, {}, [], set(), []

  def visit(v):
    index[v] = low[v] = len(index)
    stack.append(v)
    on_stack.add(v)
    for w in graph.get(v, ()):
      if w not in index:
        visit(w)
        low[v] = min(low[v], low[w])
      elif w in on_stack:
        low[v] = min(low[v], index[w])
    if low[v] == index[v]:
      component = set()
      while True:
        w = stack.pop()
        on_stack.discard(w)
        component.add(w)
        if w == v:
          break
      if len(component) > 1:
        out.append(frozenset(component))

  for v in sorted(graph):
    if v not in index:
      visit(v)
  return out


def test_cycle_finder_finds_a_loop():
  assert _cycles({'a': {'b'}, 'b': {'c'}, 'c': {'a'}, 'd': {'a'}}) == [frozenset('abc')]


def test_no_import_loop():
  # A package's __init__ re-exporting its submodules, which import names back from the
  # package, is how Python packages are built, not a loop between modules: edges into
  # a package from its own submodules are left out.
  graph = {m: {i for i in imports if not m.startswith(i + '.')} for m, imports in GRAPH.items()}
  assert sorted(map(sorted, set(_cycles(graph)))) == []
