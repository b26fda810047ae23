# Copyright 2026 The fedhelp_jax Authors. Licensed under the Apache License 2.0.
"""The environment and port of test subprocesses that start jax anew."""

import os
import socket

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def cpu_env(devices: int) -> dict[str, str]:
  """This environment with jax on CPU and ``devices`` host devices (any
  device count already in ``XLA_FLAGS`` replaced), the repository root
  importable and ``FEDHELP_HOST_DEVICES`` matching."""
  env = dict(os.environ)
  env['JAX_PLATFORMS'] = 'cpu'
  env['FEDHELP_HOST_DEVICES'] = str(devices)
  flags = [f for f in env.get('XLA_FLAGS', '').split()
           if 'host_platform_device_count' not in f]
  env['XLA_FLAGS'] = ' '.join(
      flags + [f'--xla_force_host_platform_device_count={devices}'])
  env['PYTHONPATH'] = os.pathsep.join(
      p for p in (ROOT, env.get('PYTHONPATH')) if p)
  return env


def free_port() -> int:
  """A TCP port free on 127.0.0.1 now (the OS picks it for port 0)."""
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]
