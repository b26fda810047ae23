# Copyright 2026 The fedhelp_jax Authors. Licensed under the Apache License 2.0.
"""Prints the algorithm table of every registered algorithm, from the specs.

  python -m fedhelp_jax.algorithms

The README's table is this output (``tests/test_readme.py`` checks each of
its rows against it); an algorithm added since is here without a README
edit.
"""

from fedhelp_jax import algorithms

HEADER = ('| name | paper | file | personalised? | samples silos? | '
          'DP (record / silo)? |\n|---|---|---|---|---|---|')

if __name__ == '__main__':
  print(HEADER)
  print('\n'.join(algorithms.table_rows()))
