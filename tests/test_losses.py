# Copyright 2026 The fedhelp_jax Authors. Licensed under the Apache License 2.0.
"""Losses against hand-computed numbers and independent numpy references."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fedhelp_jax import losses


def _np_softmax(z):
  z = np.asarray(z, np.float64)
  e = np.exp(z - z.max(-1, keepdims=True))
  return e / e.sum(-1, keepdims=True)


def _np_kl(p, q):
  return np.sum(p * (np.log(p) - np.log(q)), axis=-1)


S = np.array([[1.0, 2.0, 3.0], [1.0, 0.0, -1.0]], np.float32)
T = np.array([[0.5, 0.5, 2.0], [2.0, 0.0, 0.0]], np.float32)


def test_cross_entropy_hand_computed():
  # -log softmax: [3 - logsumexp(1,2,3)], [1 - logsumexp(1,0,-1)].
  want = [np.log(np.exp(1) + np.exp(2) + np.exp(3)) - 3.0,
          np.log(np.exp(1) + 1.0 + np.exp(-1)) - 1.0]
  np.testing.assert_allclose(losses.cross_entropy(S, np.array([2, 0])), want,
                             rtol=1e-6)
  assert want[0] == pytest.approx(0.40760596, abs=1e-7)


def test_segmentation_cross_entropy_is_pixel_mean():
  rng = np.random.default_rng(0)
  logits = rng.normal(size=(2, 3, 2, 4)).astype(np.float32)
  labels = rng.integers(0, 4, (2, 3, 2))
  p = _np_softmax(logits)
  nll = -np.log(np.take_along_axis(p, labels[..., None], -1))[..., 0]
  np.testing.assert_allclose(
      losses.segmentation_cross_entropy(logits, labels),
      nll.mean(axis=(1, 2)), rtol=1e-5)


def test_soft_dice_hand_computed():
  # One 1x2 image, probabilities chosen exactly via logits = log(p).
  probs = np.array([[[[0.2, 0.8], [0.6, 0.4]]]], np.float32)
  labels = np.array([[[1, 0]]])
  logits = np.log(probs)
  # Class 1: inter 0.8, sum p 1.2, sum g 1 -> (1.6 + 1) / (2.2 + 1) = 13/16.
  # Class 0: inter 0.6, sum p 0.8, sum g 1 -> (1.2 + 1) / (1.8 + 1) = 11/14.
  np.testing.assert_allclose(losses.soft_dice_loss(logits, labels),
                             [1 - 13 / 16], rtol=1e-5)
  np.testing.assert_allclose(
      losses.soft_dice_loss(logits, labels, include_background=True),
      [((1 - 13 / 16) + (1 - 11 / 14)) / 2], rtol=1e-5)
  # smooth=0: class 1 dice 1.6 / 2.2.
  np.testing.assert_allclose(
      losses.soft_dice_loss(logits, labels, smooth=0.0), [1 - 1.6 / 2.2],
      rtol=1e-5)
  np.testing.assert_allclose(
      losses.dice_ce_loss(logits, labels),
      [1 - 13 / 16 + (-np.log(0.8) - np.log(0.6)) / 2], rtol=1e-5)


def test_soft_dice_perfect_prediction_is_zero():
  labels = np.random.default_rng(0).integers(0, 3, (2, 4, 4))
  logits = 30.0 * jax.nn.one_hot(labels, 3)
  assert np.all(np.asarray(losses.soft_dice_loss(logits, labels)) < 1e-6)
  wrong = 30.0 * jax.nn.one_hot((labels + 1) % 3, 3)
  assert np.all(np.asarray(losses.soft_dice_loss(wrong, labels)) > 0.5)


def test_kd_kl_hand_computed():
  for temp in (1.0, 2.0):
    want = temp**2 * _np_kl(_np_softmax(T / temp), _np_softmax(S / temp))
    np.testing.assert_allclose(losses.kd_kl(S, T, temperature=temp), want,
                               rtol=1e-5)
  # Spelled out for example 1 at T=1: p_t = softmax(2, 0, 0).
  pt = np.exp([2.0, 0, 0]) / (np.exp(2.0) + 2)
  ps = np.exp([1.0, 0, -1]) / (np.exp(1.0) + 1 + np.exp(-1.0))
  assert float(losses.kd_kl(S, T, temperature=1.0)[1]) == pytest.approx(
      float(np.sum(pt * np.log(pt / ps))), rel=1e-5)


def test_kd_kl_zero_when_equal():
  np.testing.assert_allclose(losses.kd_kl(S, S, temperature=3.0), 0.0,
                             atol=1e-6)
  assert np.all(np.asarray(losses.kd_kl(S, T, temperature=3.0)) > 1e-3)


@pytest.mark.parametrize('temp', [1.0, 2.0, 4.0, 8.0])
def test_kd_kl_gradient_closed_form(temp):
  # d/ds T^2 KL(softmax(t/T) || softmax(s/T)) = T (softmax(s/T) - softmax(t/T))
  grad = jax.grad(lambda s: jnp.sum(losses.kd_kl(s, T, temperature=temp)))(S)
  want = temp * (_np_softmax(S / temp) - _np_softmax(T / temp))
  np.testing.assert_allclose(grad, want, rtol=1e-4, atol=1e-6)


def test_kd_kl_does_not_stop_teacher_gradient():
  grad_t = jax.grad(lambda t: jnp.sum(losses.kd_kl(S, t, temperature=2.0)))(T)
  assert float(jnp.max(jnp.abs(grad_t))) > 1e-3


def test_pixelwise_kd_is_mean_of_per_pixel_kd():
  rng = np.random.default_rng(1)
  s = rng.normal(size=(2, 3, 4, 5)).astype(np.float32)
  t = rng.normal(size=(2, 3, 4, 5)).astype(np.float32)
  per_pixel = losses.kd_kl(s.reshape(-1, 5), t.reshape(-1, 5),
                           temperature=2.0)
  np.testing.assert_allclose(losses.kd_kl(s, t, temperature=2.0),
                             np.asarray(per_pixel).reshape(2, 12).mean(1),
                             rtol=1e-5)


def test_kd_kl_from_probs():
  q = _np_softmax(T).astype(np.float32)
  # At T=1 the target is exactly the given probabilities.
  np.testing.assert_array_equal(losses.temper_probs(q, 1.0), q)
  # probs**(1/T) renormalised == softmax(teacher_logits / T), so it agrees
  # with logit KD, also for a traced temperature.
  f = jax.jit(lambda s, q, t: losses.kd_kl_from_probs(s, q, temperature=t))
  for temp in (1.0, 0.5, 3.0):
    np.testing.assert_allclose(f(S, q, jnp.float32(temp)),
                               losses.kd_kl(S, T, temperature=temp),
                               rtol=1e-4, atol=1e-6)
  # Hand value with a zero-probability class: KL = sum_c q log(q / p_s).
  q0 = np.array([[0.0, 0.25, 0.75]], np.float32)
  ps = _np_softmax(S[:1])
  want = 0.25 * np.log(0.25 / ps[0, 1]) + 0.75 * np.log(0.75 / ps[0, 2])
  np.testing.assert_allclose(
      losses.kd_kl_from_probs(S[:1], q0, temperature=1.0), [want], rtol=1e-5)
  # T=2 softens [0, .25, .75] to [0, .5, sqrt(3)] / (.5 + sqrt(3)).
  soft = np.array([0.0, 0.5, np.sqrt(0.75)]) / (0.5 + np.sqrt(0.75))
  np.testing.assert_allclose(losses.temper_probs(q0, 2.0)[0], soft, rtol=1e-5)
  grad = jax.grad(lambda s: jnp.sum(
      losses.kd_kl_from_probs(s, q0, temperature=2.0)))(S[:1])
  np.testing.assert_allclose(grad, 2.0 * (_np_softmax(S[:1] / 2) - soft),
                             rtol=1e-4, atol=1e-6)


def _np_rank(ref, logits, k, sign):
  out = []
  for r, z in zip(ref, logits):
    top = list(np.argsort(-r, kind='stable')[:k])
    rest = [j for j in range(len(r)) if j not in top]
    out.append(sum(max(0.0, sign * (z[j] - z[i]))
                   for i, j in itertools.product(top, rest)) / (2 * k))
  return np.array(out)


def test_rank_loss_hand_computed():
  ref = np.array([[3.0, 1.0, 2.0], [0.0, 5.0, 1.0]])
  z = np.array([[1.0, 2.0, 0.0], [3.0, 1.0, 2.0]])
  # k=1: ex0 top {0}: relu(2-1) + relu(0-1) = 1 -> 1/2;
  #      ex1 top {1}: relu(3-1) + relu(2-1) = 3 -> 3/2.
  np.testing.assert_allclose(losses.rank_loss(ref, z, k=1), [0.5, 1.5])
  # sign=-1 (authors' code): ex0 relu(1-2) + relu(1-0) = 1; ex1 0.
  np.testing.assert_allclose(losses.rank_loss(ref, z, k=1, sign=-1),
                             [0.5, 0.0])
  # k=2, ex0 top {0, 2}, rest {1}: relu(2-1) + relu(2-0) = 3 -> 3/4.
  assert float(losses.rank_loss(ref, z, k=2)[0]) == pytest.approx(0.75)


@pytest.mark.parametrize('k,sign', [(1, 1), (2, 1), (3, -1), (2, -1)])
def test_rank_loss_matches_brute_force(k, sign):
  rng = np.random.default_rng(k + 10 * (sign + 1))
  ref = rng.normal(size=(4, 5)).astype(np.float32)
  z = rng.normal(size=(4, 5)).astype(np.float32)
  np.testing.assert_allclose(losses.rank_loss(ref, z, k=k, sign=sign),
                             _np_rank(ref, z, k, sign), rtol=1e-5, atol=1e-6)


def test_rank_loss_rejects_bad_k():
  with pytest.raises(ValueError):
    losses.rank_loss(S, T, k=3)
