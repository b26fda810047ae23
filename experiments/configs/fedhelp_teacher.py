# Copyright 2026 The fedhelp_jax Authors. Licensed under the Apache License 2.0.
"""FedHelp with a teacher worth distilling (PneumoniaMNIST, authors'
protocol): a weaker shared model ``S`` (CNN 4/8, dense 16) and a wider
large model ``L_k`` (ResNet-8 at width 2), so the large silos' private
model can out-teach the federated ``S``. Everything else is the
authors'-protocol config (``fedhelp_cls_authors``), for every method.

Precondition, reported by ``experiments.fedhelp_power`` (method
``local_large``: each silo trains ``L`` alone): ``L`` trained alone on a
large silo beats the federated ``S`` on the common test set. Ablation:
``fedhelp_no_forward_kd`` (step A's KD from ``L_k`` into ``S`` off).

  python -m experiments.fedhelp_power --experiment=teacher \\
      --methods=fedhelp,fedhelp_no_forward_kd,fedavg,local_large \\
      --out=experiments/results/fedhelp_teacher
"""

import ml_collections

from experiments.configs import fedhelp_cls_authors

METHODS = fedhelp_cls_authors.METHODS


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  c = fedhelp_cls_authors.get_config(arg)
  c.model = ml_collections.ConfigDict(
      {'name': 'cnn', 'features': (4, 8), 'dense': 16, 'norm': 'group',
       'conv': 'xla'})
  c.large_model = ml_collections.ConfigDict(
      {'name': 'resnet', 'depth': 8, 'width': 2, 'norm': 'group',
       'conv': 'xla'})
  return c
