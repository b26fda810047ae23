# Copyright 2026 The fedhelp_jax Authors. Licensed under the Apache License 2.0.
"""A tiny PneumoniaMNIST federation for end-to-end reliability tests.

One large silo (64 images) and three small ones (16-24 images), 2 local steps
of batch 16, a small CNN: a round takes milliseconds on CPU, so tests pay
mostly for compilation. Used in-process and through the CLI:

  python -m experiments.run --config tests/tiny_config.py --workdir /tmp/t
"""

import ml_collections

from experiments.configs import common

ROUNDS = 8


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """The tiny config; ``arg`` picks the algorithm (default fedavg)."""
  c = common.classification_base()
  c.algorithm = arg or 'fedavg'
  c.partition.num_large = 1
  c.partition.num_small = 3
  c.partition.large_size = 64
  c.partition.small_size = (16, 24)
  c.partition.test_size = 20
  c.model = ml_collections.ConfigDict(
      {'name': 'cnn', 'features': (4, 8), 'dense': 16, 'norm': 'group'})
  c.local.local_steps = 2
  c.local.batch_size = 16
  c.rounds = ROUNDS
  c.eval_every = 1
  c.progress = False
  return c
