# Copyright 2026 The fedhelp_jax Authors. Licensed under the Apache License 2.0.
"""The user-fixable errors of the library (no imports: every layer uses them).

Messages name the config field or data array and end with ``Fix: ...``.
"""


class ConfigError(ValueError):
  """A config field has a wrong type, range or combination."""


class DataError(ValueError):
  """Packed silo data has a wrong shape, dtype or value."""


def config_error(field: str, problem: str, fix: str) -> ConfigError:
  """``ConfigError`` for ``config.<field>`` with the problem and the fix."""
  return ConfigError(f'config.{field}: {problem} Fix: {fix}')


def data_error(where: str, problem: str, fix: str) -> DataError:
  """``DataError`` for a data array with the problem and the fix."""
  return DataError(f'{where}: {problem} Fix: {fix}')


class DiskFullError(RuntimeError):
  """A write failed for want of disk space (what, where, free and needed)."""
