# Copyright 2026 The fedhelp_jax Authors. Licensed under the Apache License 2.0.
"""Data layer: real medical datasets, silo partitions and packed groups.

The pure-numpy parts (partition, pack, site_shift) are imported eagerly; the
TFDS-backed loaders (``load``, ``builders``) are imported on first use, so
packing or partitioning arrays never pays for importing TFDS.
"""

import importlib
from typing import Any

from fedhelp_jax.data.pack import pack_group
from fedhelp_jax.data.partition import dirichlet_label_skew
from fedhelp_jax.data.partition import large_small_split
from fedhelp_jax.data.partition import quantity_skew
from fedhelp_jax.data.partition import stratified_shares
from fedhelp_jax.data.partition import train_test_split_per_client
from fedhelp_jax.data.site_shift import apply_site_shift
from fedhelp_jax.data.site_shift import brain_federation_raw
from fedhelp_jax.data.site_shift import brain_silos
from fedhelp_jax.data.site_shift import sample_site_shifts
from fedhelp_jax.data.site_shift import SiteShift

# Public name -> module that defines it (imported lazily, needs TFDS).
_LAZY = {
    'load_medmnist': 'load',
    'load_brain_slices': 'load',
    'load_breast_cancer_tabular': 'load',
    'breast_cancer_raw': 'load',
    'stratified_split': 'load',
    'validate_arrays': 'load',
    'default_data_dir': 'load',
    'MedMNIST': 'builders',
    'MNIBrainSlices': 'builders',
    'MEDMNIST_SUBSETS': 'builders',
}


def __getattr__(name: str) -> Any:
  if name in _LAZY:
    module = importlib.import_module(f'fedhelp_jax.data.{_LAZY[name]}')
    return getattr(module, name)
  raise AttributeError(f'module {__name__!r} has no attribute {name!r}')


__all__ = [
    'SiteShift', 'apply_site_shift', 'brain_federation_raw', 'brain_silos',
    'dirichlet_label_skew', 'large_small_split',
    'pack_group', 'quantity_skew', 'sample_site_shifts',
    'stratified_shares',
    'train_test_split_per_client', *_LAZY,
]
