"""The linter passes on the whole project (rules in ruff.toml), and no
function is long without saying why."""

import ast
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_ruff_finds_nothing():
  done = subprocess.run([sys.executable, '-m', 'ruff', 'check', '--no-cache',
                         '--output-format', 'concise', ROOT],
                        cwd=ROOT, capture_output=True, text=True, timeout=120,
                        check=False)
  assert done.returncode == 0, done.stdout + done.stderr


def _long_functions(limit: int = 80):
  """``(path, name, code lines)`` of functions in ``fedhelp_jax/`` whose
  code (docstring excluded) exceeds ``limit`` lines and whose docstring does
  not say why ('Longer than ...')."""
  found = []
  for folder, _, files in os.walk(os.path.join(ROOT, 'fedhelp_jax')):
    for name in files:
      if not name.endswith('.py'):
        continue
      path = os.path.join(folder, name)
      with open(path, encoding='utf-8') as f:
        tree = ast.parse(f.read())
      for node in ast.walk(tree):
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
          continue
        doc = ast.get_docstring(node) or ''
        first = node.body[0]
        skip = (first.end_lineno - first.lineno + 1 if doc else 0)
        code = node.end_lineno - node.lineno + 1 - skip
        if code > limit and 'Longer than' not in doc:
          found.append((os.path.relpath(path, ROOT), node.name, code))
  return found


def test_no_function_is_over_80_lines_of_code_without_a_reason():
  assert not _long_functions(), _long_functions()


def test_the_length_check_sees_a_long_function():
  # The check can fail: below runner.run's 71 lines of code it reports it.
  found = {(path, name) for path, name, _ in _long_functions(60)}
  assert (os.path.join('fedhelp_jax', 'runner.py'), 'run') in found
