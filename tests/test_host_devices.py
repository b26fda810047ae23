# Copyright 2026 The fedhelp_jax Authors. Licensed under the Apache License 2.0.
"""host_devices.configure: one host device per core, set before jax starts."""

import pytest

from fedhelp_jax import host_devices

_NO_JAX = {}  # Stands for sys.modules before jax is imported.


def test_asks_for_one_device_per_core_with_single_threaded_ops(monkeypatch):
  monkeypatch.setattr(host_devices, 'usable_cores', lambda: 3)
  env = {'XLA_FLAGS': '--xla_dump_to=/tmp/x'}
  line = host_devices.configure(env, _NO_JAX)
  assert env['XLA_FLAGS'] == (
      '--xla_dump_to=/tmp/x --xla_force_host_platform_device_count=3 '
      '--xla_cpu_multi_thread_eigen=false')
  assert 'host devices: 3' in line


@pytest.mark.parametrize('env,modules,says', [
    # The user's own device count wins.
    ({'XLA_FLAGS': '--xla_force_host_platform_device_count=8'}, _NO_JAX,
     'as XLA_FLAGS sets them'),
    # Opt-out.
    ({'FEDHELP_HOST_DEVICES': '1'}, _NO_JAX, 'one (FEDHELP_HOST_DEVICES=1)'),
    # Too late once jax is imported.
    ({}, {'jax': object()}, 'jax was imported'),
])
def test_leaves_the_flags_alone(env, modules, says):
  before = dict(env)
  assert says in host_devices.configure(env, modules)
  assert env == before


def test_explicit_count_and_bad_value():
  env = {'FEDHELP_HOST_DEVICES': '2'}
  host_devices.configure(env, _NO_JAX)
  assert '--xla_force_host_platform_device_count=2' in env['XLA_FLAGS']
  with pytest.raises(ValueError, match='FEDHELP_HOST_DEVICES'):
    host_devices.configure({'FEDHELP_HOST_DEVICES': 'many'}, _NO_JAX)
