# Copyright 2026 The fedhelp_jax Authors. Licensed under the Apache License 2.0.
"""Host-side metrics against hand-computed values."""

import math
import warnings

import numpy as np
import pytest

from fedhelp_jax import metrics

LABEL = np.array([[0, 0, 1, 1],
                  [0, 0, 1, 1],
                  [2, 2, 0, 0],
                  [2, 2, 0, 0]])
PRED = np.array([[0, 1, 1, 1],
                 [0, 0, 1, 0],
                 [2, 0, 0, 0],
                 [2, 2, 2, 2]])
# Class 1: |G| = 4, |P| = 4, TP = 3 -> dice 6/8, IoU 3/5.
# Class 2: |G| = 4, |P| = 5, TP = 3 -> dice 6/9, IoU 3/6.
# Class 0: |G| = 8, |P| = 7, TP = 5 -> dice 10/15, IoU 5/10.
DICE = {0: 10 / 15, 1: 6 / 8, 2: 6 / 9}
IOU = {0: 5 / 10, 1: 3 / 5, 2: 3 / 6}


def test_segmentation_metrics_hand_computed():
  m = metrics.segmentation_metrics(PRED[None], LABEL[None], num_classes=3)
  assert m['dice'] == pytest.approx((DICE[1] + DICE[2]) / 2)
  assert m['iou'] == pytest.approx((IOU[1] + IOU[2]) / 2)
  m = metrics.segmentation_metrics(PRED[None], LABEL[None], num_classes=3,
                                   include_background=True)
  assert m['dice'] == pytest.approx(sum(DICE.values()) / 3)
  assert m['iou'] == pytest.approx(sum(IOU.values()) / 3)


def test_segmentation_metrics_pool_pixels_and_absent_class():
  # A second, all-background image adds nothing to classes 1 and 2 when the
  # pixels are pooled (a per-image mean would count its dice as 1).
  blank = np.zeros_like(LABEL)
  m = metrics.segmentation_metrics(np.stack([PRED, blank]),
                                   np.stack([LABEL, blank]), num_classes=3)
  assert m['dice'] == pytest.approx((DICE[1] + DICE[2]) / 2)
  # Class 3 is absent from prediction and labels: it scores 1.
  m = metrics.segmentation_metrics(PRED[None], LABEL[None], num_classes=4)
  assert m['dice'] == pytest.approx((DICE[1] + DICE[2] + 1) / 3)
  assert m['iou'] == pytest.approx((IOU[1] + IOU[2] + 1) / 3)
  # Predicting a class that is not there scores 0 for it.
  m = metrics.segmentation_metrics(np.ones((1, 2, 2)), np.zeros((1, 2, 2)),
                                   num_classes=2)
  assert m == {'dice': 0.0, 'iou': 0.0}


def test_classification_metrics_hand_computed():
  labels = np.array([0, 0, 1, 1, 2, 2])
  pred = np.array([0, 1, 1, 1, 2, 0])
  probs = np.full((6, 3), 0.1)
  probs[np.arange(6), pred] = 0.8
  m = metrics.classification_metrics(probs, labels)
  assert m['accuracy'] == pytest.approx(4 / 6)
  # F1: class 0 P=1/2 R=1/2 -> 1/2; class 1 P=2/3 R=1 -> 4/5;
  # class 2 P=1 R=1/2 -> 2/3.
  assert m['macro_f1'] == pytest.approx((1 / 2 + 4 / 5 + 2 / 3) / 3)
  assert 0.0 <= m['auc'] <= 1.0


def test_binary_auc_hand_computed():
  probs1 = np.array([0.1, 0.4, 0.35, 0.8])
  probs = np.stack([1 - probs1, probs1], 1)
  # Positive/negative pairs ranked right: (0.35 > 0.1), (0.8 > 0.1),
  # (0.8 > 0.4); wrong: (0.35 < 0.4) -> 3/4.
  m = metrics.classification_metrics(probs, np.array([0, 0, 1, 1]))
  assert m['auc'] == pytest.approx(0.75)
  # argmax predicts class 1 only for 0.8: examples 0, 1 and 3 are right.
  assert m['accuracy'] == pytest.approx(0.75)


def test_multiclass_auc_with_absent_class():
  probs = np.array([[.7, .2, .1], [.2, .7, .1], [.5, .4, .1], [.1, .8, .1]])
  labels = np.array([0, 1, 0, 1])
  # Class 0 vs rest: scores of 0s {.7, .5} all above 1s {.2, .1} -> 1.
  # Class 1 vs rest: {.7, .8} above {.2, .4} -> 1. Class 2 is undefined.
  assert metrics.classification_metrics(probs, labels)['auc'] == 1.0
  labels = np.array([0, 1, 1, 0])
  # Class 0: 0s {.7, .1} vs 1s {.2, .5}: pairs right (.7>.2), (.7>.5) -> 2/4.
  # Class 1: 1s {.7, .4} vs 0s {.2, .8}: right (.7>.2), (.4>.2) -> 2/4.
  assert metrics.classification_metrics(probs, labels)['auc'] == 0.5


def test_auc_undefined_is_nan_without_warning():
  probs = np.array([[0.8, 0.2], [0.3, 0.7], [0.6, 0.4]])
  with warnings.catch_warnings():
    warnings.simplefilter('error')
    m = metrics.classification_metrics(probs, np.array([0, 0, 0]))
    assert math.isnan(m['auc'])
    assert m['accuracy'] == pytest.approx(2 / 3)
    bad = metrics.classification_metrics(np.full((2, 2), np.nan),
                                         np.array([0, 1]))
    assert math.isnan(bad['auc'])


def test_per_group_summary():
  per_client = {'accuracy': np.array([0.9, 0.8, 0.5, 0.6, 0.7]),
                'auc': np.array([1.0, 0.8, np.nan, 0.6, 0.5])}
  groups = {'large': np.array([0, 1]), 'small': np.array([2, 3, 4])}
  s = metrics.per_group_summary(per_client, groups)
  assert s['large']['accuracy'] == pytest.approx(0.85)
  assert s['small']['accuracy'] == pytest.approx(0.6)
  assert s['all']['accuracy'] == pytest.approx(3.5 / 5)
  assert s['gap']['accuracy'] == pytest.approx(0.25)
  # NaN (undefined AUC) silos are skipped.
  assert s['small']['auc'] == pytest.approx(0.55)
  assert s['all']['auc'] == pytest.approx(2.9 / 4)
  assert s['gap']['auc'] == pytest.approx(0.9 - 0.55)
  only = metrics.per_group_summary(per_client, {'all_silos': np.arange(5)})
  assert 'gap' not in only
  assert only['all_silos']['accuracy'] == pytest.approx(0.7)


def test_coverage_counts_defined_silos_per_group():
  per_client = {'accuracy': np.array([0.9, 0.8, 0.5, 0.6, 0.7]),
                'auc': np.array([1.0, 0.8, np.nan, np.nan, 0.5])}
  groups = {'large': np.array([0, 1]), 'small': np.array([2, 3, 4])}
  assert metrics.coverage(per_client, groups) == {
      'small': {'auc': [1, 3]}, 'all': {'auc': [3, 5]}}
  assert metrics.coverage({'accuracy': per_client['accuracy']}, groups) == {}
