# Copyright 2026 The fedhelp_jax Authors. Licensed under the Apache License 2.0.
"""Shared pieces of the benchmarks: the workload, timing, device records.

Benchmarks import only jax, flax, optax, numpy and the compiled-round part of
``fedhelp_jax`` (no TFDS, scikit-learn or orbax), so they run on a bare
CUDA+JAX machine. The workload is a synthetic federation with the shapes of
the real one (28x28x1 PneumoniaMNIST-style images, 2 classes): throughput
does not depend on pixel values, and synthetic data keeps the benchmark
self-contained at any silo count.
"""

import json
import os
import platform
import statistics
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from fedhelp_jax import engine
from fedhelp_jax import models
from fedhelp_jax import tasks
from fedhelp_jax.algorithms import common
from fedhelp_jax.algorithms import fedavg

RESULTS_DIR = os.path.join(os.path.dirname(__file__), 'results')


def device_record() -> dict[str, Any]:
  """Backend, device kind and count, jax version, host CPUs and load."""
  dev = jax.devices()[0]
  rec = {'backend': jax.default_backend(), 'device': dev.device_kind,
         'num_devices': jax.device_count(), 'jax': jax.__version__,
         'host_cpus': os.cpu_count(), 'platform': platform.platform(),
         'python': platform.python_version()}
  rec['host_cpu_model'] = _cpu_model()
  if hasattr(os, 'getloadavg'):
    # Another process on the host skews CPU timings; record the load so a
    # reader can tell.
    rec['load_avg_1m_at_start'] = round(os.getloadavg()[0], 2)
  return rec


def _cpu_model() -> str:
  try:
    with open('/proc/cpuinfo') as f:
      for line in f:
        if line.startswith('model name'):
          return line.split(':', 1)[1].strip()
  except OSError:
    pass
  return platform.processor() or 'unknown'


def make_federation(num_silos: int, examples: int, *, hw: int = 28,
                    channels: int = 1, num_classes: int = 2, seed: int = 0,
                    features: int | None = None):
  """One group 'silos' of ``num_silos`` silos with ``examples`` each.

  Images ``[C, N, hw, hw, channels]`` (or vectors ``[C, N, features]`` when
  ``features`` is given) and labels ``[C, N]``; weights are by samples.
  """
  rng = np.random.default_rng(seed)
  shape = ((num_silos, examples, features) if features
           else (num_silos, examples, hw, hw, channels))
  x = rng.random(shape, dtype=np.float32)
  y = rng.integers(0, num_classes, (num_silos, examples)).astype(np.int32)
  group = {'x': x, 'y': y, 'n': np.full((num_silos,), examples, np.int32)}
  weights = np.full((num_silos,), 1.0 / num_silos, np.float32)
  return {'silos': group}, {'silos': weights}


def fedavg_workload(model: str, *, batch_size: int, local_steps: int,
                    num_classes: int = 2, dtype: str = 'float32',
                    conv: str = 'xla', model_kwargs=None):
  """FedAvg with ``model`` ('cnn' or 'logreg'), SGD+momentum local steps.

  ``model_kwargs`` (e.g. ``{'features': (4, 8), 'dense': 16}`` for smoke
  runs) are passed on to ``models.make_model``.
  """
  kwargs = {'num_classes': num_classes, 'dtype': dtype,
            **(model_kwargs or {})}
  if model == 'cnn':
    kwargs['conv'] = conv
  module = models.make_model(model, **kwargs)
  local = common.LocalConfig(batch_size=batch_size, local_steps=local_steps)
  alg = fedavg.fedavg(module, tasks.classification(num_classes), local,
                      ('silos',))
  hparams = {k: jnp.float32(v)
             for k, v in fedavg.default_hparams('fedavg').items()}
  return alg, hparams


def block(tree):
  return jax.tree.map(lambda x: x.block_until_ready(), tree)


def check_finite(tree, what: str) -> None:
  """Raises if any float leaf of ``tree`` holds a NaN or an infinity.

  Timings of a program that trains on NaNs are not timings of the program
  the library runs; a benchmark checks its state after the warm-up call.
  """
  bad = [jax.tree_util.keystr(path) for path, leaf
         in jax.tree_util.tree_leaves_with_path(tree)
         if jnp.issubdtype(jnp.asarray(leaf).dtype, jnp.floating)
         and not bool(jnp.all(jnp.isfinite(leaf)))]
  if bad:
    raise RuntimeError(f'{what}: non-finite values after one call in '
                       f'{bad[:5]}; the benchmark would time a broken '
                       'program.')


def time_calls(fn: Callable[[], Any], repeats: int) -> list[float]:
  """Wall times of ``repeats`` calls of ``fn`` (which must block)."""
  times = []
  for _ in range(repeats):
    t0 = time.perf_counter()
    fn()
    times.append(time.perf_counter() - t0)
  return times


def median(xs):
  return float(statistics.median(xs))


def peak_device_bytes():
  """Peak bytes in use on device 0 (None where the backend does not say)."""
  stats = jax.devices()[0].memory_stats()
  if not stats:
    return None
  return stats.get('peak_bytes_in_use')


def host_maxrss_mb() -> float | None:
  try:
    import resource  # pylint: disable=g-import-not-at-top
  except ImportError:
    return None
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def compiled_rounds(alg, rounds_per_call: int, *, strategy: str,
                    chunk_size: int | None = None,
                    clients_per_round: int | None = None):
  """``run_rounds`` of the FedAvg round (jitted, state donated); with
  ``clients_per_round``, that many silos are drawn each round."""
  round_fn = engine.build_round(
      alg, ('silos',), strategy=strategy, chunk_size=chunk_size,
      clients_per_round={'silos': clients_per_round or 0})
  # check=False: timing only; the data here is synthetic and valid.
  return (engine.run_rounds(round_fn, rounds_per_call, check=False),
          round_fn.strategy)


def write_result(name: str, record: dict[str, Any], out_dir: str) -> str:
  os.makedirs(out_dir, exist_ok=True)
  path = os.path.join(out_dir, f"{name}-{record['backend']}.json")
  with open(path, 'w') as f:
    json.dump(record, f, indent=1, sort_keys=True)
  return path
