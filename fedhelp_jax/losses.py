# Copyright 2026 The fedhelp_jax Authors. Licensed under the Apache License 2.0.
"""Per-example losses for classification, segmentation and distillation.

Conventions (as in ``optax.losses``):
  * every function returns PER-EXAMPLE values of shape ``[B]``; the caller
    reduces them. Padded examples are masked by the caller, e.g. with
    ``traced.mean_over_active(loss, where)``; no function here takes a
    ``where``.
  * options are keyword-only; classes are on the LAST axis; spatial inputs are
    ``[B, H, W, K]`` logits with ``[B, H, W]`` integer masks.
  * no function stops gradients. In distillation both arguments are
    differentiable and the caller decides which side is frozen (FedHelp's
    step A trains the student ``S`` against a fixed ``L_k``; step B trains
    ``L_k``, which sits in the *teacher* argument, against a fixed ``S``).
    Wrap the frozen side in ``jax.lax.stop_gradient`` or simply do not
    differentiate with respect to it.
  * temperatures may be traced arrays (hyperparameters are arrays).
"""

import jax
import jax.numpy as jnp
import optax


def _mean_over_pixels(values: jax.Array) -> jax.Array:
  """``[B, ...] -> [B]`` mean over every non-batch axis (identity on [B])."""
  return jnp.mean(values, axis=tuple(range(1, values.ndim)))


def cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
  """Softmax cross-entropy with integer labels.

  Args:
    logits: ``[B, K]``.
    labels: ``[B]`` integers in ``[0, K)``.

  Returns:
    ``[B]`` losses.
  """
  return optax.losses.softmax_cross_entropy_with_integer_labels(logits, labels)


def segmentation_cross_entropy(logits: jax.Array,
                               labels: jax.Array) -> jax.Array:
  """Per-pixel softmax cross-entropy, averaged over the pixels of an image.

  Args:
    logits: ``[B, H, W, K]``.
    labels: ``[B, H, W]`` integers in ``[0, K)``.

  Returns:
    ``[B]`` losses.
  """
  return _mean_over_pixels(
      optax.losses.softmax_cross_entropy_with_integer_labels(logits, labels))


def soft_dice_loss(logits: jax.Array, labels: jax.Array, *,
                   smooth: float = 1.0,
                   include_background: bool = False) -> jax.Array:
  """Soft Dice loss: mean over classes of ``1 - dice``, per image.

  ``dice_c = (2 sum(p_c g_c) + smooth) / (sum(p_c) + sum(g_c) + smooth)`` with
  ``p = softmax(logits)`` and ``g`` the one-hot labels, sums over the pixels
  of one image.

  Args:
    logits: ``[B, H, W, K]``.
    labels: ``[B, H, W]`` integers in ``[0, K)``.
    smooth: additive smoothing; makes a class absent from both prediction and
      label score dice 1 (loss 0).
    include_background: also average over class 0.

  Returns:
    ``[B]`` losses in ``[0, 1]``.
  """
  num_classes = logits.shape[-1]
  probs = jax.nn.softmax(logits.astype(jnp.float32), axis=-1)
  onehot = jax.nn.one_hot(labels, num_classes, dtype=probs.dtype)
  axes = tuple(range(1, logits.ndim - 1))
  inter = jnp.sum(probs * onehot, axis=axes)  # [B, K]
  denom = jnp.sum(probs, axis=axes) + jnp.sum(onehot, axis=axes)
  dice = (2.0 * inter + smooth) / (denom + smooth)
  if not include_background:
    if num_classes < 2:
      raise ValueError('include_background=False needs at least 2 classes.')
    dice = dice[:, 1:]
  return jnp.mean(1.0 - dice, axis=-1)


def dice_ce_loss(logits: jax.Array, labels: jax.Array, *,
                 smooth: float = 1.0,
                 include_background: bool = False) -> jax.Array:
  """Segmentation task loss: ``segmentation_cross_entropy + soft_dice_loss``.

  Args:
    logits: ``[B, H, W, K]``.
    labels: ``[B, H, W]`` integers in ``[0, K)``.
    smooth: Dice smoothing.
    include_background: Dice also over class 0.

  Returns:
    ``[B]`` losses.
  """
  return segmentation_cross_entropy(logits, labels) + soft_dice_loss(
      logits, labels, smooth=smooth, include_background=include_background)


def kd_kl(student_logits: jax.Array, teacher_logits: jax.Array, *,
          temperature=1.0) -> jax.Array:
  """Distillation loss ``T^2 KL(softmax(t/T) || softmax(s/T))`` (Hinton).

  The ``T^2`` factor keeps the gradient scale independent of ``T``: the
  gradient with respect to the student logits is ``T (p_s - p_t)`` with
  ``p = softmax(logits / T)``. For spatial inputs the per-pixel KL is
  averaged over the pixels (pixel-wise KD).

  Args:
    student_logits: ``[B, K]`` or ``[B, H, W, K]``.
    teacher_logits: same shape. Gradients are NOT stopped (module docstring).
    temperature: ``T > 0``, a Python float or a scalar array.

  Returns:
    ``[B]`` losses (>= 0, zero iff the tempered distributions agree).
  """
  t = jnp.asarray(temperature, jnp.float32)
  log_s = jax.nn.log_softmax(student_logits.astype(jnp.float32) / t, axis=-1)
  log_t = jax.nn.log_softmax(teacher_logits.astype(jnp.float32) / t, axis=-1)
  kl = optax.losses.kl_divergence_with_log_targets(log_s, log_t, axis=-1)
  return t**2 * _mean_over_pixels(kl)


def temper_probs(probs: jax.Array, temperature) -> jax.Array:
  """``probs**(1/T)`` renormalised over the last axis (``probs`` at T=1).

  This is the distribution whose logits are ``log(probs) / T``, so a stored
  probability vector is softened (T > 1) or sharpened (T < 1) exactly as
  tempering the teacher's logits would have done. Zero probabilities stay
  zero. At ``T == 1`` the input is returned unchanged (not renormalised).
  """
  probs = probs.astype(jnp.float32)
  t = jnp.asarray(temperature, jnp.float32)
  positive = probs > 0
  safe_log = jnp.log(jnp.where(positive, probs, 1.0))
  tempered = jax.nn.softmax(
      jnp.where(positive, safe_log / t, -jnp.inf), axis=-1)
  return jnp.where(t == 1.0, probs, tempered)


def kd_kl_from_probs(student_logits: jax.Array, teacher_probs: jax.Array, *,
                     temperature=1.0) -> jax.Array:
  """``T^2 KL(q_T || softmax(s/T))`` toward stored teacher probabilities.

  For the foundation model's one-time soft labels / soft masks, which are
  stored as probabilities rather than logits. ``q_T = temper_probs(q, T)``:
  ``q**(1/T)`` renormalised, which equals ``softmax(teacher_logits / T)``
  whenever ``q = softmax(teacher_logits)``; at ``T = 1`` it is ``q`` itself.
  A binary soft mask ``m`` ``[B, H, W]`` is passed as
  ``jnp.stack([1 - m, m], -1)``.

  Args:
    student_logits: ``[B, K]`` or ``[B, H, W, K]``.
    teacher_probs: same shape, non-negative, summing to 1 over the last axis.
      Gradients are NOT stopped (module docstring).
    temperature: ``T > 0``, a Python float or a scalar array.

  Returns:
    ``[B]`` losses (pixel-averaged for spatial inputs).
  """
  t = jnp.asarray(temperature, jnp.float32)
  log_s = jax.nn.log_softmax(student_logits.astype(jnp.float32) / t, axis=-1)
  kl = optax.losses.kl_divergence(log_s, temper_probs(teacher_probs, t),
                                  axis=-1)
  return t**2 * _mean_over_pixels(kl)


def rank_loss(ref_logits: jax.Array, logits: jax.Array, *, k: int,
              sign: int = 1) -> jax.Array:
  """Hinge that makes ``ref``'s top-k classes outrank the others in ``logits``.

  ``sum_{i in topk(ref), j not in topk(ref)} relu(sign (logits_j - logits_i))
  / (2k)``. ``sign=+1`` penalises a non-top class scoring above a top class
  (the intended loss); ``sign=-1`` reproduces the authors' code, which
  penalises ``relu(logits_i - logits_j)``. Ties in ``ref`` go to the lower
  class index (``lax.top_k``).

  Args:
    ref_logits: ``[B, K]`` reference scores (FedHelp: the shared model S).
    logits: ``[B, K]`` scores being ranked (FedHelp: the large model L_k).
    k: number of top classes, static, ``1 <= k < K``.
    sign: +1 or -1.

  Returns:
    ``[B]`` losses.
  """
  num_classes = ref_logits.shape[-1]
  if not 1 <= k < num_classes:
    raise ValueError(f'rank_loss needs 1 <= k < {num_classes}, got k={k}.')
  if sign not in (1, -1):
    raise ValueError(f'sign must be +1 or -1, got {sign}.')
  _, top_idx = jax.lax.top_k(ref_logits, k)
  top = jnp.any(jax.nn.one_hot(top_idx, num_classes, dtype=jnp.bool_), axis=1)
  # diff[b, i, j] = logits[b, j] - logits[b, i].
  diff = logits[:, None, :] - logits[:, :, None]
  pairs = top[:, :, None] & ~top[:, None, :]
  hinge = jnp.where(pairs, jax.nn.relu(sign * diff), 0.0)
  return jnp.sum(hinge, axis=(1, 2)) / (2.0 * k)
