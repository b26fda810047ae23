# Copyright 2026 The fedhelp_jax Authors. Licensed under the Apache License 2.0.
"""Tasks: what a model's output means, how it is scored and how it is trained.

A ``Task`` bundles the per-example task loss and the map from model outputs to
predictions, so algorithms stay agnostic of classification vs segmentation.
"""

from typing import Callable, NamedTuple

import jax

from fedhelp_jax import losses


class Task(NamedTuple):
  """A supervised task.

  Attributes:
    name: 'classification' or 'segmentation'.
    num_classes: number of classes (per pixel for segmentation).
    loss: ``(logits, labels) -> [B]`` per-example task loss.
    predict: ``(logits) -> probabilities`` (softmax over the class axis).
  """
  name: str
  num_classes: int
  loss: Callable[[jax.Array, jax.Array], jax.Array]
  predict: Callable[[jax.Array], jax.Array]


def classification(num_classes: int) -> Task:
  """Image or tabular classification with softmax cross-entropy."""
  if num_classes < 2:
    raise ValueError(f'num_classes must be >= 2, got {num_classes}.')
  return Task('classification', num_classes, losses.cross_entropy,
              lambda logits: jax.nn.softmax(logits, axis=-1))


def segmentation(num_classes: int) -> Task:
  """Per-pixel segmentation with Dice + cross-entropy (as in the FedHelp code).
  """
  if num_classes < 2:
    raise ValueError(f'num_classes must be >= 2, got {num_classes}.')
  return Task('segmentation', num_classes, losses.dice_ce_loss,
              lambda logits: jax.nn.softmax(logits, axis=-1))


def make_task(name: str, num_classes: int) -> Task:
  """Builds a task by name."""
  factories = {'classification': classification, 'segmentation': segmentation}
  if name not in factories:
    raise ValueError(
        f'Unknown task {name!r}; expected one of {sorted(factories)}.')
  return factories[name](num_classes)
