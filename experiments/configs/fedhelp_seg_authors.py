# Copyright 2026 The fedhelp_jax Authors. Licensed under the Apache License 2.0.
"""FedHelp segmentation on the authors' segmentation recipe.

Brain-slice silos of ``fedhelp_seg`` (2 large + 4 small simulated sites),
every method on Adam 1e-4 (coupled weight decay 1e-4), batch 4, public batch
4, one local epoch, uniform averaging. FM knowledge from data disjoint from
every silo: the proxy UNet trains on half of the slice pool that no silo
holds and is queried once on the other half (``fm.proxy_data =
'unassigned'``), never on silo data.

  python -m experiments.fedhelp_table --experiment=seg_authors
"""

import ml_collections

from experiments.configs import common
from experiments.configs import fedhelp_seg

METHODS = fedhelp_seg.METHODS


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  c = fedhelp_seg.get_config(arg)
  common.authors_recipe(c, lr=1e-4)
  c.fm.proxy_data = 'unassigned'
  c.feddf.server_batch_size = 4
  return c
