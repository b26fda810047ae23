# Copyright 2026 The fedhelp_jax Authors. Licensed under the Apache License 2.0.
"""FedHelp ablations on the authors' protocol (``fedhelp_cls_authors``).

Each name is a variant of the authors'-protocol config that changes ONE
thing, so the table ranks the causes of FedHelp's small-silo result:

  fedhelp                 the default (OrganAMNIST FM, uniform averaging)
  fedhelp_no_fm           no FM knowledge: the public KD step is removed
                          (``fedhelp.fm_kd=False``; a zero ``lambda_fm``
                          would still take an Adam + weight-decay step on
                          the backbone, which is not "no FM")
  fedhelp_no_forward_kd   step A without the KD term (lambda_forward = 0)
  fedhelp_samples         sample-weighted instead of uniform averaging
  fedhelp_code_rank_sign  the rank hinge with the authors' code's sign
  fedhelp_fm_reserved     FM trained on the reserved in-domain split
  fedhelp_fm_large_pooled FM trained on the large silos' pooled data
  fedavg, fedavg_samples  the FedAvg reference, uniform and sample-weighted

  python -m experiments.fedhelp_table --experiment=ablations
"""

import ml_collections

from experiments.configs import fedhelp_cls_authors

# variant -> (algorithm, {dotted field: value}).
VARIANTS = {
    'fedhelp': ('fedhelp', {}),
    'fedhelp_no_fm': ('fedhelp', {'fedhelp.fm_kd': False}),
    'fedhelp_no_forward_kd': ('fedhelp', {'hparams.lambda_forward': 0.0}),
    'fedhelp_samples': ('fedhelp', {'aggregation': 'samples'}),
    'fedhelp_code_rank_sign': ('fedhelp', {'fedhelp.rank_sign': -1}),
    'fedhelp_fm_reserved': ('fedhelp', {'fm.proxy_data': 'reserved',
                                        'fm.proxy_steps': 600}),
    'fedhelp_fm_large_pooled': ('fedhelp', {'fm.proxy_data': 'large_pooled',
                                            'fm.proxy_steps': 600}),
    'fedavg': ('fedavg', {}),
    'fedavg_samples': ('fedavg', {'aggregation': 'samples'}),
}
METHODS = tuple(VARIANTS)


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """The variant ``arg`` (default 'fedhelp') of the authors' protocol."""
  from fedhelp_jax import sweep  # pylint: disable=g-import-not-at-top
  name = arg or 'fedhelp'
  if name not in VARIANTS:
    raise ValueError(f'unknown ablation {name!r}; expected one of '
                     f'{list(VARIANTS)}.')
  algorithm, fields = VARIANTS[name]
  c = fedhelp_cls_authors.get_config(algorithm)
  for key, value in fields.items():
    sweep.set_field(c, key, value)
  return c
