# Copyright 2026 The fedhelp_jax Authors. Licensed under the Apache License 2.0.
"""FedHelp vs baselines, heterogeneous setting, on the authors' recipe.

The 3 large + 20 small label-skewed PneumoniaMNIST silos of ``fedhelp_cls``
(each small silo scored on a test draw with its own label mix), trained with
``common.authors_recipe`` and the OrganAMNIST FM of ``common.outside_fm``.

  python -m experiments.fedhelp_table --experiment=cls_hetero
"""

import ml_collections

from experiments.configs import common
from experiments.configs import fedhelp_cls

METHODS = fedhelp_cls.METHODS


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  c = fedhelp_cls.get_config(arg)
  common.authors_recipe(c)
  common.outside_fm(c)
  return c
