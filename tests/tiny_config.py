# Copyright 2026 The fedhelp_jax Authors. Licensed under the Apache License 2.0.
"""A tiny PneumoniaMNIST federation for end-to-end reliability tests.

One large silo (64 images) and three small ones (16-24 images), 2 local steps
of batch 16, a small CNN (and a ResNet-8 as the large private model): a round
takes milliseconds on CPU, so tests pay mostly for compilation. Built on
``fedhelp_cls`` so that every registered algorithm finds its settings. Used
in-process and through the CLI:

  python -m experiments.run --config tests/tiny_config.py --workdir /tmp/t
  python -m experiments.run --config tests/tiny_config.py:ditto ...
"""

import ml_collections

from experiments.configs import fedhelp_cls

ROUNDS = 8


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """The tiny config; ``arg`` picks the algorithm (default fedavg)."""
  c = fedhelp_cls.get_config(arg or 'fedavg')
  c.partition.num_large = 1
  c.partition.num_small = 3
  c.partition.large_size = 64
  c.partition.small_size = (16, 24)
  c.partition.test_size = 20
  c.model = ml_collections.ConfigDict(
      {'name': 'cnn', 'features': (4, 8), 'dense': 16, 'norm': 'group'})
  c.local.local_steps = 2
  c.local.batch_size = 16
  c.fm.proxy_steps = 20
  c.fedhelp.public_batch_size = 8
  c.feddf.server_steps = 2
  c.feddf.num_public = 32
  c.rounds = ROUNDS
  c.eval_every = 1
  c.progress = False
  return c
