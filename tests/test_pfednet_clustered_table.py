# Copyright 2026 The fedhelp_jax Authors. Licensed under the Apache License 2.0.
"""The clustered pFedNet table's pieces, on the real BloodMNIST silos."""

import json

import numpy as np
import pytest

from experiments import pfednet_clustered_table as table


def test_every_method_builds_a_valid_config_differing_only_in_the_graph():
  base = table.method_config('pfednet', 'labels', 3, 2)
  for method in table.METHODS:
    config = table.method_config(method, 'labels', 3, 2)
    assert (config.seed, config.rounds) == (3, 2)
    # One recipe for every method: the learning rate, momentum and local
    # training are the config's, untouched by the method.
    assert config.hparams.lr == base.hparams.lr
    assert config.hparams.momentum == base.hparams.momentum
    assert config.local == base.local
  assert table.method_config('pfednet_oracle', 'rotation', 0,
                             None).pfednet.graph == 'oracle'
  with pytest.raises(ValueError, match='unknown arm'):
    table.method_config('pfednet', 'shuffled', 0, None)


# A real BloodMNIST run (about 25 s on 2 cores): the committed table runs
# this path 120 times, so the default suite keeps only the config check.
@pytest.mark.slow
def test_one_run_scores_every_test_image_and_the_oracle_graph_is_inside():
  lines = []
  part = table.run_one('pfednet_oracle', 'labels', 0, 1, lines.append)
  correct = part['correct']
  # 12 silos x 120 own test images, each right or wrong; run_one itself
  # checks their mean against the run's reported accuracy.
  assert correct.shape == (12 * 120,)
  assert set(np.unique(correct)) <= {0.0, 1.0}
  assert 0.0 <= part['dead_units'] <= 1.0
  quality = json.loads(part['quality'])
  assert quality['across'] == 0 and quality['recall'] == 1.0
  assert quality['edges'] == quality['within_cluster_pairs'] == 18
  assert lines and lines[0].startswith('[pfednet_oracle] labels seed 0: ')


def test_compression_methods_differ_only_in_the_upload_encoder():
  from experiments import pfednet_compression as comp  # pylint: disable=g-import-not-at-top
  base = table.method_config('fedavg', comp.ARM, 1, 2, comp.METHODS)
  # Arm 'none': one cluster, so no silo's labels or images are shifted.
  assert base.partition.clusters == 1
  for method in comp.METHODS:
    config = table.method_config(method, comp.ARM, 1, 2, comp.METHODS)
    assert config.algorithm == 'fedavg'
    assert config.hparams.to_dict() == base.hparams.to_dict()
    assert config.local == base.local
    assert (method == 'fedavg') == (config.get('compression') is None)
  tv = table.method_config('tv_0.01_no_ef', comp.ARM, 1, 2, comp.METHODS)
  assert tv.compression.to_dict() == {'kind': 'tv', 'gamma': 0.01,
                                      'error_feedback': False}
  assert comp.raw_bytes_per_round(1000, 12) == 4 * 1000 * 12
