# Copyright 2026 The fedhelp_jax Authors. Licensed under the Apache License 2.0.
"""One process of a multi-process ``run_experiment``, for the tests.

``tests/test_multiprocess_run.py`` starts this file N times (N local
processes on 127.0.0.1, one host device each) or once with N host devices.
It runs the tiny config sharded over every device of every process and
writes, outside the run's workdir, a JSON file with what the test compares:
the summary's metrics, the per-silo train losses of the metrics log, and a
digest of the final server parameters (gathered by every process).

Usage: python tests/multiprocess_run_worker.py OUT.json WORKDIR ROUNDS \
    [COORDINATOR NUM_PROCESSES PROCESS_ID] [--stop_after=R]
"""

import json
import os
import sys

sys.path.insert(1, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# pylint: disable=g-import-not-at-top,wrong-import-position
from fedhelp_jax import distributed


def main(argv):
  out_path, workdir, rounds = argv[1], argv[2], int(argv[3])
  flags = [a for a in argv[4:] if not a.startswith('--')]
  stop_after = [int(a.split('=')[1]) for a in argv[4:]
                if a.startswith('--stop_after=')]
  if flags:
    distributed.initialize(flags[0], int(flags[1]), int(flags[2]))
  import jax
  import numpy as np
  from fedhelp_jax import engine
  from fedhelp_jax import experiment
  from fedhelp_jax import runner
  from tests import tiny_config

  config = tiny_config.get_config()
  config.rounds = rounds
  config.eval_every = 2
  config.num_devices = 0  # Every device of every process.
  kept = {}
  real_run = runner.run

  def run_and_keep(*args, **kwargs):
    if stop_after:  # A preempted run: stop after a checkpointed chunk.
      kwargs['rounds'] = stop_after[0]
    results = real_run(*args, **kwargs)
    kept['server'] = engine.fetch(results[0].state.server)
    return results

  runner.run = run_and_keep
  summary = experiment.run_experiment(config, workdir)
  leaves = [np.asarray(x, np.float64) for x in jax.tree.leaves(kept['server'])]
  record = {
      'process_index': jax.process_index(),
      'process_count': jax.process_count(),
      'devices': jax.device_count(),
      'final': summary['final']['summary'],
      'clients': summary['final']['clients'],
      'server_sum': [float(x.sum()) for x in leaves],
      'server_flat': np.concatenate([x.ravel() for x in leaves]).tolist(),
  }
  with open(out_path, 'w') as f:
    json.dump(record, f)


if __name__ == '__main__':
  main(sys.argv)
