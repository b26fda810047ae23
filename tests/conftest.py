# Copyright 2026 The fedhelp_jax Authors. Licensed under the Apache License 2.0.
"""Shared test fixtures: tiny synthetic federations and models."""

import os
import shutil
import tempfile

# Tests run on CPU with small shapes; keep XLA from grabbing every core for
# one compile and from preallocating memory.
os.environ.setdefault('JAX_PLATFORMS', 'cpu')


def _share_compilations_within_the_run():
  """Points JAX's persistent compilation cache at one directory per test
  run, shared by the xdist workers and the subprocesses tests start.

  With tiny shapes the suite's time is mostly XLA compiling, and many tests
  compile the same programs (the same round for a reference and for the
  check, a resumed run after its first half): on 2 cores the full suite took
  12 min 15 s without the cache and 9 min 19 s with it, starting empty.
  The directory is new per run (so a run never reuses an earlier run's
  executables) and removed when the run ends. A cache the user configured
  is left alone.
  """
  if 'JAX_COMPILATION_CACHE_DIR' in os.environ:
    return None
  run_id = os.environ.get('PYTEST_XDIST_TESTRUNUID', f'pid{os.getpid()}')
  path = os.path.join(tempfile.gettempdir(), f'fedhelp_jax_tests_{run_id}')
  os.environ['JAX_COMPILATION_CACHE_DIR'] = path
  # Cache every program, not only those that took over a second to build.
  os.environ['JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS'] = '0'
  return path


_COMPILATION_CACHE = _share_compilations_within_the_run()


def _compile_quickly():
  """Asks XLA's CPU backend for its cheapest code generation (LLVM
  optimization level 0), in this process and the subprocesses tests start.

  At the tests' tiny shapes the suite is mostly compiling; optimised
  machine code buys nothing there. One loop-reference test went from 16.7 s
  to 11.0 s (compile 9.2 s -> 5.3 s). Every check compares programs built
  under the same flag, or within a stated tolerance, so none depends on it.
  Production runs and benchmarks never see it. A level the user set is
  left alone.
  """
  flags = os.environ.get('XLA_FLAGS', '')
  if 'xla_backend_optimization_level' not in flags:
    os.environ['XLA_FLAGS'] = (
        flags + ' --xla_backend_optimization_level=0').strip()


_compile_quickly()

import numpy as np  # pylint: disable=g-import-not-at-top
import pytest  # pylint: disable=g-import-not-at-top


def pytest_sessionfinish(session):
  """Removes this run's compilation cache (from the process that made the
  path: the xdist controller, or the only process without xdist)."""
  del session
  if _COMPILATION_CACHE and 'PYTEST_XDIST_WORKER' not in os.environ:
    shutil.rmtree(_COMPILATION_CACHE, ignore_errors=True)


def make_group(rng, sizes, *, hw=8, num_classes=2, test_n=6, seg=False):
  """A packed group (numpy) with silos of the given sizes."""
  c, n = len(sizes), max(sizes)
  x = np.zeros((c, n, hw, hw, 1), np.float32)
  y_shape = (c, n, hw, hw) if seg else (c, n)
  y = np.zeros(y_shape, np.int32)
  for i, s in enumerate(sizes):
    x[i, :s] = rng.random((s, hw, hw, 1), dtype=np.float32)
    y[i, :s] = rng.integers(0, num_classes, (s,) + y_shape[2:])
  tx = rng.random((c, test_n, hw, hw, 1), dtype=np.float32)
  ty = rng.integers(0, num_classes, (c, test_n) + y_shape[2:]).astype(np.int32)
  return {'x': x, 'y': y, 'n': np.asarray(sizes, np.int32), 'test_x': tx,
          'test_y': ty, 'test_n': np.full((c,), test_n, np.int32)}


@pytest.fixture
def two_groups():
  return make_two_groups()


def make_two_groups():
  """2 large + 3 small silos of 8x8 images, sample-count weights."""
  rng = np.random.default_rng(0)
  data = {'large': make_group(rng, [24, 20]),
          'small': make_group(rng, [5, 7, 3])}
  total = sum(d['n'].sum() for d in data.values())
  weights = {g: (d['n'] / total).astype(np.float32) for g, d in data.items()}
  return data, weights


def pytest_collection_modifyitems(items):
  """Runs the 8-device shard check first: its one subprocess takes about
  3.5 minutes, so starting it last would leave one xdist worker idle while
  the other finishes it (``--dist loadfile`` hands out files in order)."""
  items.sort(key=lambda item: item.path.name != 'test_shard.py')


def batch_loss_grad(module, task):
  """``grad(params, x, y)`` of the mean task loss of a params-only model,
  jitted: what hand-written reference loops step with."""
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  from fedhelp_jax import models  # pylint: disable=g-import-not-at-top

  def loss(p, xb, yb):
    out, _ = models.apply_model(module, {'params': p}, xb, train=True)
    return jnp.mean(task.loss(out, yb))
  return jax.jit(jax.grad(loss))



def jit_silo_update(alg):
  """``alg.local_update`` of ONE silo, jitted, taking ``(group, state,
  broadcast, personal, data, hparams, rng)`` (``group`` static) and
  returning its ``types.SiloOutput``: how reference tests step one silo."""
  import jax  # pylint: disable=g-import-not-at-top
  from fedhelp_jax import types  # pylint: disable=g-import-not-at-top

  def one(group, state, broadcast, personal, data, hparams, rng):
    return alg.local_update(
        types.SiloInput(group, state, broadcast, personal, data), hparams, rng)
  return jax.jit(one, static_argnums=0)


def constant_silos(rng, sizes):
  """Groups whose silos each repeat ONE random 8x8 example (``sizes``:
  group -> silo sizes), so any batch order gives the same local steps and a
  hand-written reference needs no schedule, only each silo's step count."""
  data = {}
  for g, n_list in sizes.items():
    c, n = len(n_list), max(n_list)
    one_x = rng.random((c, 1, 8, 8, 1), dtype=np.float32)
    one_y = rng.integers(0, 2, (c, 1)).astype(np.int32)
    data[g] = {'x': np.repeat(one_x, n, axis=1),
               'y': np.repeat(one_y, n, axis=1),
               'n': np.asarray(n_list, np.int32),
               'test_x': one_x, 'test_y': one_y,
               'test_n': np.ones((c,), np.int32)}
  return data
