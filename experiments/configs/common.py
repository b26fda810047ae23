# Copyright 2026 The fedhelp_jax Authors. Licensed under the Apache License 2.0.
"""Defaults shared by every experiment config."""

from typing import Any

import ml_collections
from ml_collections import config_dict

from fedhelp_jax import algorithms


def local_training(*, batch_size: int, local_steps: int | None = None,
                   local_epochs: float | None = None,
                   optimizer: str = 'sgd') -> ml_collections.ConfigDict:
  """``config.local``: exactly one of ``local_steps`` / ``local_epochs``.

  Both fields accept ``None`` from the command line, so the schedule can be
  switched there, e.g. ``--config.local.local_steps=None
  --config.local.local_epochs=1`` (a field created as a plain ``None``, or as
  a typed placeholder, cannot be set to or from ``None`` by flags).
  ``validate_config`` checks the values.
  """
  steps = config_dict.FieldReference(local_steps, field_type=object)
  epochs = config_dict.FieldReference(local_epochs, field_type=object)
  return ml_collections.ConfigDict(
      {'batch_size': batch_size, 'local_steps': steps,
       'local_epochs': epochs, 'optimizer': optimizer})


def dataset_paths() -> dict[str, Any]:
  """``data_dir``, ``manual_dir`` and ``expected_md5``, settable from flags.

  A plain ``None`` field cannot be set from the command line (ml_collections
  refuses to override a NoneType field), so these are typed placeholders:
  ``--config.dataset.manual_dir=/path/to/files`` works.
  """
  return {k: config_dict.placeholder(str)
          for k in ('data_dir', 'manual_dir', 'expected_md5')}


def dp_section() -> ml_collections.ConfigDict:
  """``config.dp`` (``privacy.DPConfig``), off ('none'), with every field
  present so flags can set it: ``--config.dp.level=record
  --config.dp.noise_multiplier=1.0 --config.dp.epsilon=8``."""
  return ml_collections.ConfigDict({
      'level': 'none', 'clip_norm': 1.0, 'noise_multiplier': 1.0,
      'sampling': 'poisson', 'max_batch': config_dict.placeholder(int),
      'accountant': 'pld', 'delta': config_dict.placeholder(float),
      'epsilon': config_dict.placeholder(float), 'on_budget': 'refuse',
      'server_clip': 1.0, 'server_noise_multiplier': 1.0})


def classification_base() -> ml_collections.ConfigDict:
  """PneumoniaMNIST (real pediatric chest X-rays), 3 large + 20 small silos.

  Large silos hold ~1000 training images each; small silos 30-80 each with
  Dirichlet(0.5) label skew. Every silo is scored on its own label-matched
  draw from the official test split. The official val split is the public,
  unlabeled set for one-time foundation-model queries.
  """
  c = ml_collections.ConfigDict()
  c.algorithm = 'fedavg'
  c.task = 'classification'
  c.num_classes = 2
  c.dataset = ml_collections.ConfigDict(
      {'name': 'medmnist', 'subset': 'pneumonia', **dataset_paths()})
  c.partition = ml_collections.ConfigDict(
      {'num_large': 3, 'num_small': 20, 'large_size': 1000,
       'small_size': (30, 80), 'label_skew_alpha': 0.5, 'test_size': 100})
  c.model = ml_collections.ConfigDict(
      {'name': 'cnn', 'norm': 'group',
       'conv': 'xla'})
  c.local = local_training(batch_size=32, local_steps=10)
  # lr 0.05 (with momentum 0.9) collapsed this 32-64 channel CNN to the
  # majority class within 5 rounds (AUC 0.50 for 30 rounds); 0.01 trains
  # (seed 0, 10 rounds: accuracy 0.86, AUC 0.94).
  c.hparams = ml_collections.ConfigDict({'lr': 0.01, 'momentum': 0.9})
  c.aggregation = 'samples'
  c.rounds = 30
  c.eval_every = 5
  c.seed = 0
  c.strategy = 'auto'
  c.chunk_size = None
  # How a sweep runs K configs side by side: 'auto' (per backend), 'vmap'
  # or 'map' (engine.resolve_config_parallel).
  c.config_parallel = 'auto'
  # Also score every silo on the whole official test split (one common set
  # of images for every method and silo; per-image results saved).
  c.common_test = False
  # 0: every visible device (on CPU the CLI makes one host device per core,
  # fedhelp_jax/host_devices.py); N > 0 asks for N.
  c.num_devices = 0
  c.dp = dp_section()
  c.nonfinite = 'stop'
  # Client sampling: silos per group drawn each round (0 = all).
  c.clients_per_round = ml_collections.ConfigDict({'large': 0,
                                                   'small': 0})
  # 'fixed': exactly that many silos; 'poisson': each silo independently,
  # that many expected (the FedAvg family; silo-level DP accounts it).
  c.client_sampling = 'fixed'
  c.checkpoint_keep = 2
  c.progress = True
  c.tensorboard = False
  return c


def make_brain_segmentation(c: ml_collections.ConfigDict) -> None:
  """Turns ``c`` into the brain-slice segmentation setting, in place.

  MNI152 tissue slices (background/CSF, grey, white matter), 2 large silos of
  100 slices + 4 small silos of 12-20, simulated site shifts on every silo,
  a width-4 UNet. Shared by the FedHelp and pFedNet segmentation configs.
  """
  c.task = 'segmentation'
  c.num_classes = 3
  c.dataset = ml_collections.ConfigDict(
      {'name': 'brain_slices', **dataset_paths()})
  c.partition = ml_collections.ConfigDict(
      {'num_large': 2, 'num_small': 4, 'large_size': 100,
       'small_size': (12, 20), 'test_fraction': 0.25, 'shift_large': True,
       'test_size': 1, 'label_skew_alpha': None})
  c.model = ml_collections.ConfigDict(
      {'name': 'unet', 'base_features': 4, 'levels': 3, 'norm': 'group',
       'conv': 'xla'})


def authors_recipe(c: ml_collections.ConfigDict, *, lr: float = 1e-3
                   ) -> None:
  """The FedHelp authors' training recipe, in place, for EVERY method.

  From the first author's code (``shared/papers/fedhelp_code.md`` Sec. 6):
  Adam (lr 1e-3 for classification, 1e-4 for segmentation) with COUPLED
  weight decay 1e-4 (torch ``Adam(weight_decay=1e-4)``), batch 4, public
  batch 4, one local epoch, 50 rounds, uniform server averaging (the code's
  ``average_weights``, used by its FedAvg baseline too).
  """
  c.local = local_training(batch_size=4, local_epochs=1.0, optimizer='adam')
  c.hparams = ml_collections.ConfigDict({'lr': lr, 'weight_decay': 1e-4})
  if c.algorithm == 'fedhelp':
    c.hparams.lr_large = lr
  if c.algorithm == 'fedprox':
    c.hparams.mu = 0.01
  c.aggregation = 'uniform'
  c.rounds = 50
  c.eval_every = 5
  if 'fedhelp' in c:
    c.fedhelp.public_batch_size = 4


def authors_split(c: ml_collections.ConfigDict) -> None:
  """The authors' pneumonia split, in place: 6 silos IID by size.

  Shares 0.6/0.2/0.08/0.06/0.04/0.02 of the training split (the first two
  large), each with the global label mix; the official test split is cut by
  the same shares, also with the global label mix. 10% of the training split
  (stratified) is reserved BEFORE partitioning for the in-domain FM ablation
  (``fm.proxy_data='reserved'``); it is removed for every method, so all
  methods see the same silos.
  """
  c.partition = ml_collections.ConfigDict(
      {'kind': 'shares', 'shares': (0.6, 0.2, 0.08, 0.06, 0.04, 0.02),
       'num_large': 2})
  c.dataset.reserve_fraction = 0.1
  c.dataset.reserve_seed = 0


def outside_fm(c: ml_collections.ConfigDict) -> None:
  """FM with outside knowledge, in place: a proxy trained once on
  OrganAMNIST (abdominal CT, 11 classes; no silo holds it) and queried once
  on 2000 held-out OrganAMNIST train images (labels dropped); small silos
  distil its 11-way answers through their public head."""
  c.fm.proxy_data = 'outside'
  c.fm.outside_subset = 'organa'
  c.fm.outside_public = 2000
  c.fm.proxy_steps = 1500
  c.fm.proxy_batch_size = 64
  c.fm.proxy_lr = 1e-3


def algorithm_hparams(c: ml_collections.ConfigDict) -> None:
  """Adds the registered hyperparameters of ``c.algorithm`` that the shared
  recipe lacks, at their registered defaults, so ``--config.hparams.NAME``
  can set them; then applies the values the algorithm's spec needs in place
  of the shared recipe's (``AlgorithmSpec.recipe``: SCAFFOLD's momentum 0).
  """
  spec = algorithms.spec(c.algorithm)
  for key, value in spec.hparams.items():
    if key not in c.hparams:
      c.hparams[key] = value
  for key, value in spec.recipe.items():
    c.hparams[key] = value
