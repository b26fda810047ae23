# Copyright 2026 The fedhelp_jax Authors. Licensed under the Apache License 2.0.
"""A positive control for FedHelp's FM channel (BloodMNIST, 8 classes).

Where FM knowledge must help: 90% of the official training split (10,763
images, stratified) is reserved BEFORE partitioning and trains an in-domain
FM proxy that no silo sees; the silos share the other 10% (about 1,196
images) by the authors' shares (two large, four small). The FM is queried
once on the official val split (1,712 images, labels dropped) and answers
over the task's 8 classes. Everything else is ``fedhelp_blood_authors``
(the authors' recipe, rank top-k 5), for every method alike.

Precondition, checked by ``experiments.fedhelp_power`` when ``central`` is
run: the FM's own test accuracy must exceed the interval of ``central``
(the silos' pooled data, trained centrally).

  python -m experiments.fedhelp_power --experiment=blood_positive \\
      --methods=fedhelp,fedhelp_no_fm,fedavg,fedavg_fm,local,central \\
      --out=experiments/results/fedhelp_positive_control
"""

import ml_collections

from experiments.configs import fedhelp_blood_authors

METHODS = fedhelp_blood_authors.METHODS
RESERVE_FRACTION = 0.9


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """The BloodMNIST authors'-protocol config, with the whole training split
  and an in-domain FM on the reserved 90% (its proxy training settings,
  1500 Adam steps of batch 64, are those of the outside FM it replaces)."""
  c = fedhelp_blood_authors.get_config(arg)
  c.dataset.train_fraction = 1.0
  c.dataset.reserve_fraction = RESERVE_FRACTION
  c.fm.proxy_data = 'reserved'
  return c
