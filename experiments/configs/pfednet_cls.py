# Copyright 2026 The fedhelp_jax Authors. Licensed under the Apache License 2.0.
"""pFedNet on PneumoniaMNIST (real pediatric chest X-rays) with a small CNN.

The paper's image classification task is LUNA16 nodules with a DenseNet;
here a CPU-sized stand-in: 2 large silos (300 images each, IID) and 6 small
silos (30-80 images, Dirichlet(0.5) label skew), each scored on its own
label-matched draw of 60 images from the official test split. Model: CNN
with 2 conv layers (8, 16 channels, GroupNorm) and a 32-unit dense layer;
the classifier head is personalized (the official DenseNet split), the rest
is shared. Similarity graph: kNN (k=3) on label-proportion sketches.

Commands:
  python -m experiments.run --config experiments/configs/pfednet_cls.py
  python -m experiments.pfednet_sweep --task=cls

Budget: well under a minute per run on a 2-core CPU (15 rounds of 5 local
steps, batch 16). Results: ``experiments/results/pfednet_cls/``.
"""

import ml_collections

from experiments.configs import common
from experiments.configs import pfednet_tabular

METHODS = pfednet_tabular.METHODS


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """The classification config; ``arg`` picks the algorithm."""
  c = pfednet_tabular.get_config(arg)
  c.dataset = ml_collections.ConfigDict(
      {'name': 'medmnist', 'subset': 'pneumonia',
       **common.dataset_paths()})
  c.partition = ml_collections.ConfigDict(
      {'num_large': 2, 'num_small': 6, 'large_size': 300,
       'small_size': (30, 80), 'label_skew_alpha': 0.5, 'test_size': 60})
  c.model = ml_collections.ConfigDict(
      {'name': 'cnn', 'features': (8, 16), 'dense': 32, 'norm': 'group',
       'conv': 'xla'})
  c.local = common.local_training(batch_size=16, local_steps=5)
  c.hparams.lr = 0.05
  c.rounds = 15
  c.eval_every = 5
  return c
