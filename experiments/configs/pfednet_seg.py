# Copyright 2026 The fedhelp_jax Authors. Licensed under the Apache License 2.0.
"""pFedNet on simulated multi-site brain-tissue segmentation with a UNet.

SIMULATION (as ``fedhelp_seg.py``): every slice comes from ONE template
brain (MNI ICBM152 2009a, 64x64, 3 classes: background/CSF, grey matter,
white matter); silos differ by orientation, slice range and a synthetic
scanner (``fedhelp_jax.data.site_shift``). The paper's task is BraTS2017
tumour segmentation, which is not available offline.

Silos: 2 large (100 slices) and 4 small (12-20 slices), 25% of each silo's
slices held out as its test set. Model: UNet, base width 4, 3 levels
(~30k parameters), GroupNorm; the decoder and the final 1x1 conv are
personalized (the official BraTS split), encoder and bottleneck shared.
Similarity graph: kNN (k=3) on each silo's mean image (the official imaging
sketch). Metric: Dice (foreground mean over grey and white matter).

Commands:
  python -m experiments.run --config experiments/configs/pfednet_seg.py
  python -m experiments.pfednet_sweep --task=seg

Budget: about 1.5 minutes per run on a 2-core CPU (30 rounds of 10 local
steps, batch 8; with 20 rounds of 4 steps every method stayed near Dice
0.35, under-trained). Results: ``experiments/results/pfednet_seg/``.
"""

import ml_collections

from experiments.configs import common
from experiments.configs import pfednet_tabular

METHODS = pfednet_tabular.METHODS


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """The segmentation config; ``arg`` picks the algorithm."""
  c = pfednet_tabular.get_config(arg)
  common.make_brain_segmentation(c)
  c.local = common.local_training(batch_size=8, local_steps=10)
  c.hparams.lr = 0.05
  c.rounds = 30
  c.eval_every = 10
  return c
