# Copyright 2026 The fedhelp_jax Authors. Licensed under the Apache License 2.0.
"""Config fuzzing: random overrides either validate or raise ONE line.

Hypothesis draws overrides of the tiny config (``tests/tiny_config.py``),
as a config file built from JSON/YAML could hold them: wrong types,
out-of-range and non-finite numbers, absurd sizes, empty or replaced groups,
unknown fields. Each config must either pass ``validate.validate_config``
and ``validate.validate_partition_fits`` (against the PneumoniaMNIST split
sizes) or raise a ``ConfigError`` of one line naming a ``config.`` field and
the fix; any other exception is a bug. Validation only: nothing is trained.
On the command line ``ml_collections`` refuses unknown fields and wrong
types before this (``test_reliability.test_cli_flag_errors_are_one_line``).
"""

import copy

from hypothesis import given
from hypothesis import HealthCheck
from hypothesis import settings
from hypothesis import strategies as st
import ml_collections
import numpy as np
import pytest

from fedhelp_jax import algorithms
from fedhelp_jax import validate
from tests import tiny_config

_PLAIN = tiny_config.get_config().to_dict()
# PneumoniaMNIST's training and test split sizes.
_RAW = {'train_y': np.zeros(4708, np.int32), 'test_y': np.zeros(624, np.int32)}


def _paths(tree, prefix=''):
  """Dotted paths of the leaves and of the groups (dicts) of ``tree``."""
  leaves, groups = [], []
  for key, value in tree.items():
    path = f'{prefix}{key}'
    if isinstance(value, dict):
      groups.append(path)
      sub_leaves, sub_groups = _paths(value, f'{path}.')
      leaves += sub_leaves
      groups += sub_groups
    else:
      leaves.append(path)
  return leaves, groups


_LEAVES, _GROUPS = _paths(_PLAIN)

_VALUES = st.one_of(
    st.none(), st.booleans(),
    st.integers(-3, 10),  # Near the edges of ranges.
    st.integers(-10**12, 10**12),  # Absurd sizes.
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=8),
    st.sampled_from(['vmap', 'fedavg', 'adam', 'cnn', 'shares', 'skip']),
    st.lists(st.integers(-5, 100), max_size=4),
    st.tuples(st.integers(-5, 100), st.integers(-5, 100)),
    st.lists(st.floats(-1, 2), max_size=4),
    st.dictionaries(st.sampled_from(['large', 'small', 'lr', 'x']),
                    st.integers(-2, 5), max_size=2),
)

_OVERRIDES = st.one_of(
    st.tuples(st.just('set'), st.sampled_from(_LEAVES), _VALUES),
    st.tuples(st.just('replace_group'), st.sampled_from(_GROUPS),
              st.sampled_from([{}, None, 0, 'x', [], [1, 2]])),
    st.tuples(st.just('unknown'), st.sampled_from([''] + _GROUPS),
              st.text('abcdefghijklmnopqrstuvwxyz_', min_size=1,
                      max_size=10)),
)


def _apply(plain, override):
  kind, path, value = override
  if kind == 'unknown':
    node = plain
    for part in filter(None, path.split('.')):
      node = node[part]
    node.setdefault(f'zz_{value}', 1)  # A field no config has.
    return
  *parents, leaf = path.split('.')
  node = plain
  for part in parents:
    node = node[part]
  node[leaf] = value


@settings(max_examples=50, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_OVERRIDES, min_size=1, max_size=3))
def test_fuzz_config_overrides_validate_or_raise_one_line(overrides):
  plain = copy.deepcopy(_PLAIN)
  for override in overrides:
    try:
      _apply(plain, override)
    except (AttributeError, KeyError, TypeError):  # A replaced parent.
      pass
  config = ml_collections.ConfigDict(plain)
  try:
    validate.validate_config(config)
    validate.validate_partition_fits(config, _RAW)
  except validate.ConfigError as e:
    message = str(e)
    assert '\n' not in message, message
    assert message.startswith('config.'), message
    assert ' Fix: ' in message, message


def test_every_algorithm_section_refuses_unknown_keys_at_config_time():
  sections = {n: algorithms.spec(n).section.name for n in algorithms.names()
              if algorithms.spec(n).section is not None}
  assert {'fedhelp', 'pfednet', 'feddf', 'ifca'} <= set(sections)
  for name, section in sections.items():
    config = tiny_config.get_config(name)
    validate.validate_config(config)  # The registered defaults parse.
    config[section] = dict(config.get(section) or {}, colour='blue')
    with pytest.raises(validate.ConfigError,
                       match=rf'config\.{section}\.colour: is not a '):
      validate.validate_config(config)
