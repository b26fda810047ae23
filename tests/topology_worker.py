# Copyright 2026 The fedhelp_jax Authors. Licensed under the Apache License 2.0.
"""Run by test_topology_resume.py with 4 host devices: a run checkpointed on
one device count resumes on another and ends where a run on the second
count, never interrupted, ends. Prints ``TOPOLOGY_RESULTS <json>``."""

import json
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# pylint: disable=g-import-not-at-top,wrong-import-position
import ml_collections
import numpy as np

from fedhelp_jax import experiment
from tests import tiny_config
# pylint: enable=g-import-not-at-top,wrong-import-position

# (algorithm, devices of the first 2 rounds, devices of the resumed third):
# the tiny federation's groups (1 and 3 silos) are padded on 4 devices, so
# one case adds dummy silos on resume and the other cuts them; pFedNet's
# server holds a per-silo z as well.
CASES = (('fedavg', 1, 4), ('pfednet', 4, 1))


def _config(algorithm, devices, rounds):
  c = tiny_config.get_config(algorithm)
  c.num_devices, c.rounds, c.eval_every = devices, rounds, 1
  if algorithm == 'pfednet':
    # The tiny config's gamma is 0, so the TV prox of uploads leaves them
    # exactly as they are (``jnp.where(gamma > 0, ...)``): building it out
    # changes no number, only drops its while_loops, which made up about 3/4
    # of each of the 3 round programs' compile time here. The prox on a mesh
    # is pinned by test_shard.py ('pfednet_padding', gamma > 0).
    assert c.hparams.gamma == 0, c.hparams.gamma
    c.pfednet = ml_collections.ConfigDict({'compress': False})
  return c


def main(argv):
  cases = [c for c in CASES if not argv[1:] or c[0] in argv[1:]]
  out = {}
  for algorithm, first, second in cases:
    with tempfile.TemporaryDirectory() as resumed_dir, \
        tempfile.TemporaryDirectory() as straight_dir:
      experiment.run_experiment(_config(algorithm, first, 2), resumed_dir)
      with open(os.path.join(resumed_dir, 'checkpoints',
                             'config_hash.json')) as f:
        layout = json.load(f)['layout']
      resumed = experiment.run_experiment(_config(algorithm, second, 3),
                                          resumed_dir)
      straight = experiment.run_experiment(_config(algorithm, second, 3),
                                           straight_dir)
      a, b = resumed['final']['clients'], straight['final']['clients']
      out[f'{algorithm} {first}->{second}'] = {
          'layout': layout,
          'resumed_from': resumed['resumed_from_round'],
          'devices': [resumed['devices'], straight['devices']],
          'max_abs_diff': max(float(np.max(np.abs(np.subtract(a[k], b[k]))))
                              for k in a),
          'silos': len(a['accuracy']),
          # The dead-unit check runs on the mesh too (not an error record).
          'dead_units': sorted(resumed['dead_units'])}
  print('TOPOLOGY_RESULTS ' + json.dumps(out), flush=True)


if __name__ == '__main__':
  main(sys.argv)
