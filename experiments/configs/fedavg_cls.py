# Copyright 2026 The fedhelp_jax Authors. Licensed under the Apache License 2.0.
"""FedAvg on PneumoniaMNIST with 3 large and 20 small silos (the default).

Command:
  python -m experiments.run --config experiments/configs/fedavg_cls.py

Variants: ``--config experiments/configs/fedavg_cls.py:fedprox`` (or
``local``) swaps the algorithm; any field can be overridden on the command
line, e.g. ``--config.rounds=50``.
"""

from experiments.configs import common


def get_config(arg: str | None = None):
  config = common.classification_base()
  if arg:
    config.algorithm = arg
  common.algorithm_hparams(config)
  return config
