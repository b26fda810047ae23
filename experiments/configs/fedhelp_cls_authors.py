# Copyright 2026 The fedhelp_jax Authors. Licensed under the Apache License 2.0.
"""FedHelp vs baselines under the authors' protocol (PneumoniaMNIST).

Split: ``common.authors_split`` (6 silos, IID by size with shares
0.6/0.2/0.08/0.06/0.04/0.02 of the training split, the first two large; test
shares with the global label mix; 10% reserved before partitioning).
Recipe: ``common.authors_recipe`` for every method (Adam 1e-3, coupled
weight decay 1e-4, batch 4, public batch 4, one local epoch, uniform
averaging, 50 rounds). FM: ``common.outside_fm`` (a proxy trained once on
OrganAMNIST, queried once on held-out OrganAMNIST images, 11-way answers).

Models as in ``fedhelp_cls``: ``S`` a small CNN, ``L_k`` a ResNet-8.

Commands:
  python -m experiments.run --config experiments/configs/fedhelp_cls_authors.py
  python -m experiments.fedhelp_table --experiment=cls_authors
"""

import ml_collections

from experiments.configs import common
from experiments.configs import fedhelp_cls_hetero

METHODS = fedhelp_cls_hetero.METHODS


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """The authors'-protocol classification config; ``arg`` the algorithm.

  The heterogeneous config (same recipe, same FM) on the authors' split.
  """
  c = fedhelp_cls_hetero.get_config(arg)
  common.authors_split(c)
  return c
