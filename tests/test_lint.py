"""The linter passes on the whole project (rules in ruff.toml)."""

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
