# Copyright 2026 The fedhelp_jax Authors. Licensed under the Apache License 2.0.
"""The package has no import cycle, and no import hides in a function to
dodge one.

The graph is read from the source (module-level imports, with the AST), so
the check costs milliseconds and names the cycle; one fresh interpreter then
imports every module for real. Importing ``pkg.sub`` runs ``pkg/__init__``
first; that parent edge is Python's, not the code's, and is not counted (the
algorithm registry in ``algorithms/__init__`` imports its algorithms, which
import their siblings).
"""

import ast
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = 'fedhelp_jax'
# Imports allowed inside functions: heavy dependencies kept off the import
# path of the compiled core (TFDS, orbax), never a cycle.
LAZY_OK = {'fedhelp_jax.data', 'fedhelp_jax.data.builders',
           'fedhelp_jax.data.load', 'fedhelp_jax.checkpoint'}


def _modules() -> dict[str, str]:
  found = {}
  for dirpath, _, files in os.walk(os.path.join(ROOT, PACKAGE)):
    for f in files:
      if f.endswith('.py'):
        rel = os.path.relpath(os.path.join(dirpath, f), ROOT)[:-3]
        name = rel.replace(os.sep, '.')
        found[name.removesuffix('.__init__')] = os.path.join(dirpath, f)
  return found


def _targets(node, modules):
  """Package modules an import statement loads."""
  if isinstance(node, ast.Import):
    return [a.name for a in node.names if a.name in modules]
  if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
    out = [f'{node.module}.{a.name}' for a in node.names
           if f'{node.module}.{a.name}' in modules]
    if not out and node.module in modules:
      out = [node.module]
    return out
  return []


def _graph():
  modules = _modules()
  edges, lazy = {}, []
  for name, path in modules.items():
    with open(path) as f:
      tree = ast.parse(f.read())
    edges[name] = {t for node in tree.body for t in _targets(node, modules)}
    for fn in ast.walk(tree):
      if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
        for node in ast.walk(fn):
          lazy += [(name, t) for t in _targets(node, modules)]
  return edges, lazy


def _find_cycle(edges):
  state, stack = {}, []

  def visit(n):
    state[n] = 'open'
    stack.append(n)
    for m in sorted(edges.get(n, ())):
      if state.get(m) == 'open':
        return stack[stack.index(m):] + [m]
      if m not in state:
        found = visit(m)
        if found:
          return found
    state[n] = 'done'
    stack.pop()
    return None

  for n in sorted(edges):
    if n not in state:
      found = visit(n)
      if found:
        return found
  return None


def test_no_import_cycle_in_the_package():
  edges, _ = _graph()
  assert len(edges) > 30  # The walk found the package.
  assert _find_cycle(edges) is None, ' -> '.join(_find_cycle(edges))


def test_the_cycle_finder_finds_a_cycle():
  assert _find_cycle({'a': {'b'}, 'b': {'c'}, 'c': {'a'}}) == [
      'a', 'b', 'c', 'a']
  assert _find_cycle({'a': {'b'}, 'b': set()}) is None


def test_no_import_inside_a_function_except_heavy_dependencies():
  _, lazy = _graph()
  hidden = sorted({(m, t) for m, t in lazy if t not in LAZY_OK})
  assert not hidden, f'function-level imports (move them to the top): {hidden}'


def test_every_module_imports_in_a_fresh_interpreter():
  names = sorted(_modules())
  code = ('import importlib, sys\n'
          f'for name in {names!r}:\n'
          '  importlib.import_module(name)\n'
          'print(len(sys.modules))\n')
  done = subprocess.run([sys.executable, '-c', code], cwd=ROOT, text=True,
                        capture_output=True, timeout=300, check=False,
                        env=dict(os.environ, JAX_PLATFORMS='cpu'))
  assert done.returncode == 0, done.stderr[-3000:]


def test_experiment_configs_import_from_outside_the_repository(tmp_path):
  # The docs' sweep example imports configs; `pip install -e .` (the README's
  # set-up) installs `experiments` beside `fedhelp_jax`.
  env = {k: v for k, v in os.environ.items() if k != 'PYTHONPATH'}
  done = subprocess.run(
      [sys.executable, '-c', 'from experiments.configs import fedavg_cls; '
       'print(fedavg_cls.get_config().algorithm)'],
      cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
      check=False)
  assert done.returncode == 0 and done.stdout.strip() == 'fedavg', done.stderr
