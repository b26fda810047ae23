# Copyright 2026 The fedhelp_jax Authors. Licensed under the Apache License 2.0.
"""A positive control for FedHelp's FM channel (BloodMNIST, 8 classes).

Where FM knowledge must help: 90% of the official training split (10,763
images, stratified) is reserved BEFORE partitioning and trains an in-domain
FM proxy that no silo sees; the silos share the other 10% (about 1,196
images) by the authors' shares (two large, four small). The FM is queried
once on the official val split (1,712 images, labels dropped) and answers
over the task's 8 classes. Recipe: ``common.authors_recipe``, rank top-k 5,
every method alike.

Precondition, checked by ``experiments.fedhelp_power`` when ``central`` is
run: the FM's own test accuracy must exceed the interval of ``central``
(the silos' pooled data, trained centrally).

  python -m experiments.fedhelp_power --experiment=blood_positive \\
      --methods=fedhelp,fedhelp_no_fm,fedavg,fedavg_fm,local,central \\
      --out=experiments/results/fedhelp_positive_control
"""

import ml_collections

from experiments.configs import common
from experiments.configs import fedhelp_cls

METHODS = fedhelp_cls.METHODS
RESERVE_FRACTION = 0.9


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  c = fedhelp_cls.get_config(arg)
  c.num_classes = 8
  c.dataset.subset = 'blood'
  common.authors_split(c)
  common.authors_recipe(c)
  c.dataset.train_fraction = 1.0
  c.dataset.reserve_fraction = RESERVE_FRACTION
  c.fm.proxy_data = 'reserved'
  c.fedhelp.rank_k = 5
  return c
