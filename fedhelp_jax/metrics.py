# Copyright 2026 The fedhelp_jax Authors. Licensed under the Apache License 2.0.
"""Host-side evaluation metrics (numpy / scikit-learn) and group summaries.

These run on the host after ``jax.device_get``: one silo at a time, on its
real (unpadded) test examples.
"""

from typing import Mapping
import warnings

import numpy as np


def _skm():
  # Lazy: importing the library (e.g. for benchmarks on a bare JAX machine)
  # must not need scikit-learn; only host-side scoring does.
  from sklearn import metrics  # pylint: disable=g-import-not-at-top
  return metrics


def _auc(probs: np.ndarray, labels: np.ndarray) -> float:
  """ROC AUC, or NaN when undefined (fewer than 2 classes, non-finite)."""
  present = np.unique(labels)
  if len(present) < 2 or not np.all(np.isfinite(probs)):
    return float('nan')
  num_classes = probs.shape[1]
  with warnings.catch_warnings():
    warnings.simplefilter('ignore')
    try:
      if num_classes == 2:
        return float(_skm().roc_auc_score(labels, probs[:, 1]))
      if len(present) == num_classes:
        # sklearn checks that rows sum to 1; float32 softmax may be off.
        p = probs / np.sum(probs, axis=1, keepdims=True)
        return float(_skm().roc_auc_score(labels, p, multi_class='ovr',
                                       average='macro'))
      # Some class has no test example here (common in small label-skewed
      # silos): its one-vs-rest AUC is undefined, so average the others.
      return float(np.mean([_skm().roc_auc_score(labels == c, probs[:, c])
                            for c in present]))
    except ValueError:
      return float('nan')


def classification_metrics(probs, labels) -> dict[str, float]:
  """Accuracy, macro F1 and ROC AUC of one silo.

  Args:
    probs: ``[N, K]`` class probabilities.
    labels: ``[N]`` integer labels.

  Returns:
    ``{'accuracy', 'macro_f1', 'auc'}``. Macro F1 averages over the classes
    present in the labels or predictions (sklearn's default), with 0 for a
    class that has no predicted or no true example. AUC uses the probability
    of class 1 when K == 2 and one-vs-rest macro AUC otherwise, averaged
    over the classes present in ``labels`` (those absent have no defined
    AUC). It is NaN, with no exception or warning, when undefined: fewer
    than two classes in ``labels``, or non-finite ``probs``.
    Every metric is NaN when N == 0.
  """
  probs = np.asarray(probs, np.float64)
  labels = np.asarray(labels).astype(np.int64)
  if labels.size == 0:
    return {'accuracy': float('nan'), 'macro_f1': float('nan'),
            'auc': float('nan')}
  pred = np.argmax(probs, axis=1)
  return {
      'accuracy': float(_skm().accuracy_score(labels, pred)),
      'macro_f1': float(_skm().f1_score(labels, pred, average='macro',
                                     zero_division=0)),
      'auc': _auc(probs, labels),
  }


def segmentation_metrics(pred, labels, *, num_classes: int,
                         include_background: bool = False) -> dict[str, float]:
  """Dice and IoU of one silo, over the pooled pixels of all its images.

  For each class ``c``: ``dice_c = 2|P_c & G_c| / (|P_c| + |G_c|)`` and
  ``iou_c = |P_c & G_c| / |P_c | G_c|`` where ``P_c``/``G_c`` are the pixels
  predicted/labelled ``c`` across the silo's test set. A class absent from
  both prediction and labels scores 1 (nothing to find, nothing wrongly
  found). The result averages over classes ``1..K-1`` (``0..K-1`` with
  ``include_background``).

  Args:
    pred: ``[N, H, W]`` predicted class per pixel.
    labels: ``[N, H, W]`` true class per pixel.
    num_classes: K.
    include_background: also average over class 0.

  Returns:
    ``{'dice', 'iou'}``.
  """
  pred = np.asarray(pred).astype(np.int64).ravel()
  labels = np.asarray(labels).astype(np.int64).ravel()
  if pred.shape != labels.shape:
    raise ValueError(f'pred and labels differ in size: {pred.shape} vs '
                     f'{labels.shape}.')
  conf = np.bincount(labels * num_classes + pred,
                     minlength=num_classes**2).reshape(num_classes,
                                                       num_classes)
  tp = np.diag(conf).astype(np.float64)
  n_pred, n_true = conf.sum(axis=0), conf.sum(axis=1)
  total, union = n_pred + n_true, n_pred + n_true - tp
  with np.errstate(invalid='ignore', divide='ignore'):
    dice = np.where(total > 0, 2 * tp / total, 1.0)
    iou = np.where(union > 0, tp / union, 1.0)
  first = 0 if include_background else 1
  return {'dice': float(np.mean(dice[first:])),
          'iou': float(np.mean(iou[first:]))}


def _nanmean(x: np.ndarray) -> float:
  """Mean ignoring NaN (silos where a metric is undefined); NaN if none."""
  x = np.asarray(x, np.float64)
  return float(np.mean(x[~np.isnan(x)])) if np.any(~np.isnan(x)) else float(
      'nan')


def per_group_summary(per_client: Mapping[str, np.ndarray],
                      groups: Mapping[str, np.ndarray]) -> dict:
  """Per-group and overall means of per-silo metrics, and the large-small gap.

  Args:
    per_client: metric name -> ``[C_total]`` values, one per silo.
    groups: group name -> indices into the ``C_total`` axis.

  Returns:
    ``{group: {metric: mean}, ..., 'all': {metric: mean over all C_total
    silos}}`` plus ``'gap': {metric: mean(large) - mean(small)}`` when both a
    'large' and a 'small' group exist. Means skip NaN entries (e.g. an
    undefined AUC) and are NaN when a group has no defined value.
  """
  reserved = {'all', 'gap'} & set(groups)
  if reserved:
    raise ValueError(f'Group names {sorted(reserved)} are reserved.')
  out = {}
  for g, idx in groups.items():
    idx = np.asarray(idx, np.int64)
    out[g] = {m: _nanmean(np.asarray(v)[idx]) for m, v in per_client.items()}
  out['all'] = {m: _nanmean(v) for m, v in per_client.items()}
  if 'large' in groups and 'small' in groups:
    out['gap'] = {m: out['large'][m] - out['small'][m] for m in per_client}
  return out


def coverage(per_client: Mapping[str, np.ndarray],
             groups: Mapping[str, np.ndarray]) -> dict:
  """How many silos each group mean covers, where some are undefined.

  Returns:
    ``{group: {metric: [defined, total]}}`` for the (group, metric) pairs
    whose mean skips undefined (NaN) silos, e.g. the AUC of one-class test
    sets; empty when every mean covers all its silos.
  """
  out: dict = {}
  named = {**{g: np.asarray(ix, np.int64) for g, ix in groups.items()}}
  total = max((len(v) for v in per_client.values()), default=0)
  named['all'] = np.arange(total)
  for g, idx in named.items():
    for m, v in per_client.items():
      vals = np.asarray(v, np.float64)[idx]
      defined = int(np.sum(~np.isnan(vals)))
      if defined < vals.size:
        out.setdefault(g, {})[m] = [defined, int(vals.size)]
  return out
