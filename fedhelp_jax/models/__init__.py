# Copyright 2026 The fedhelp_jax Authors. Licensed under the Apache License 2.0.
"""Flax (linen) models and helpers to build, initialise and apply them.

Every model is called as ``module.apply(variables, x, train=..., head=...)``
with ``x`` ``[B, H, W, C]`` (``[B, D]`` for 'logreg'). ``head='main'`` gives
the task logits; ``head='aux'`` the logits of a second head on the SAME
backbone features (FedHelp's public-data head; needs ``aux_classes > 0``).
Parameter paths are stable: the heads are the top-level keys ``'head'`` and
``'aux_head'``; UNets have ``'enc_i'``, ``'bottleneck'`` and ``'dec_i'``;
ResNets ``'stem_conv'`` and ``'stage{s}_block{b}'``; CNNs ``'conv_i'`` and
``'dense'``. Logits are float32 whatever the computation ``dtype``.
With ``norm='batch'`` the running statistics (momentum 0.9) live in the
'batch_stats' collection; ``apply_model(..., train=True)`` returns them
updated, whichever head is asked for (the backbone is shared).
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from fedhelp_jax.models import cnn
from fedhelp_jax.models import layers
from fedhelp_jax.models import linear
from fedhelp_jax.models import resnet
from fedhelp_jax.models import unet

CNN = cnn.CNN
LogReg = linear.LogReg
ResNet = resnet.ResNet
UNet = unet.UNet
_MODELS = {'cnn': CNN, 'resnet': ResNet, 'unet': UNet, 'logreg': LogReg}
MODEL_NAMES = tuple(_MODELS)


def from_config(model_config, num_classes: int,
                aux_classes: int = 0) -> nn.Module:
  """A model from a ``config.model``-style mapping (``name`` + kwargs)."""
  kwargs = {k: v for k, v in model_config.items() if k != 'name'}
  if aux_classes:
    kwargs['aux_classes'] = aux_classes
  return make_model(model_config['name'], num_classes=num_classes, **kwargs)


def make_model(name: str, **kwargs) -> nn.Module:
  """Builds a model by name.

  Args:
    name: 'cnn', 'resnet', 'unet' or 'logreg'.
    **kwargs: constructor fields: ``num_classes`` (required), ``norm``
      ('group' (default; 'none' for logreg), 'batch', 'none'),
      ``aux_classes`` (default 0), ``dtype`` (computation dtype, a dtype or a
      name such as 'bfloat16'; params stay float32), ``conv`` ('xla' or
      'im2col', see ``layers.conv_impl``; not for logreg), plus per-model
      fields:
      cnn ``features``, ``dense``; resnet ``depth``, ``width``; unet
      ``base_features``, ``levels``.

  Returns:
    The (unbound) Flax module.

  Raises:
    ValueError: unknown name, norm or ResNet depth.
  """
  if name not in _MODELS:
    raise ValueError(
        f'Unknown model {name!r}; valid names are {sorted(_MODELS)}.')
  if 'norm' in kwargs:
    layers.check_norm(kwargs['norm'])
  if name == 'resnet' and 'depth' in kwargs:
    resnet.blocks_per_stage(int(kwargs['depth']))
  if 'dtype' in kwargs:
    kwargs['dtype'] = jnp.dtype(kwargs['dtype'])
  if 'conv' in kwargs:
    if name == 'logreg':
      raise ValueError("model 'logreg' has no convolutions; drop 'conv'.")
    layers.conv_impl(kwargs['conv'])
  if 'features' in kwargs:
    kwargs['features'] = tuple(kwargs['features'])
  return _MODELS[name](**kwargs)


def init_variables(module: nn.Module, rng: jax.Array, sample_x) -> dict:
  """Initialises ALL variables (both heads, 'batch_stats' if any).

  Args:
    module: a model from ``make_model``.
    rng: PRNG key.
    sample_x: an input batch with the real shape after the batch axis, e.g.
      ``[1, H, W, C]``.

  Returns:
    A dict of collections, ``{'params': ...}`` plus ``'batch_stats'`` for
    ``norm='batch'``.
  """
  return dict(module.init(rng, sample_x, train=False))


def apply_model(module: nn.Module, variables, x, *, train: bool,
                head: str = 'main') -> tuple[jax.Array, dict]:
  """Applies a model, updating BatchNorm statistics when training.

  Args:
    module: a model from ``make_model``.
    variables: its collections ('params' and maybe 'batch_stats').
    x: input batch.
    train: True uses batch statistics and returns the updated running ones.
    head: 'main' or 'aux'.

  Returns:
    ``(out, new_variables)``: ``new_variables`` is ``variables`` with
    'batch_stats' replaced when ``train`` and the model has them, otherwise
    ``variables`` itself.
  """
  if train and 'batch_stats' in variables:
    out, updates = module.apply(variables, x, train=True, head=head,
                                mutable=['batch_stats'])
    return out, {**variables, **updates}
  return module.apply(variables, x, train=train, head=head), variables


def count_params(params) -> int:
  """Total number of scalars in a pytree of arrays."""
  return int(sum(np.prod(np.shape(p), dtype=np.int64)
                 for p in jax.tree.leaves(params)))


__all__ = ['CNN', 'LogReg', 'MODEL_NAMES', 'ResNet', 'UNet', 'apply_model',
           'count_params', 'init_variables', 'make_model']
