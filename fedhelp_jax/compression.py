# Copyright 2026 The fedhelp_jax Authors. Licensed under the Apache License 2.0.
"""Upload encoders for any algorithm whose upload is a pytree of deltas.

An ``UploadEncoder`` is a pair of pure functions, as optax's transforms:
``encode(upload, key) -> (decoded, nbytes)`` returns what the server
receives after decoding and the bytes on the wire. ``with_upload_encoder``
wraps a ``FederatedAlgorithm``: each silo's upload goes through the encoder
inside the compiled local step and the round metrics gain
``upload_bytes``; with error feedback (Seide et al. 2014; Karimireddy et
al. 2019) each silo keeps what the encoder dropped and adds it to its next
upload, in its client state.

The wrapper splits one key off each silo's key for the encoder, so every
encoded run of a config trains with the same keys as every other (a
lossless encoder, e.g. ``tv(0)``, reproduces the others' batch order, not
the unwrapped algorithm's).

Byte counts are of a plain binary layout, computed from shapes and counts
(not measured on an entropy coder):

* ``topk(fraction)``: the ``k = ceil(fraction * d)`` entries of largest
  magnitude of the whole upload (``d`` entries): ``k`` float32 values and
  ``k`` int32 indices, ``8 k`` bytes;
* ``qsgd(levels)``: stochastic quantisation to ``s = levels`` levels of the
  upload's L2 norm (Alistarh et al. 2017), unbiased: one float32 norm plus
  ``d`` sign bits and ``d * ceil(log2(s + 1))`` level bits, rounded up to
  whole bytes;
* ``tv(gamma)``: pFedNet's "differential sparsity" (Zhao et al.) as an
  encoder for any algorithm: per tensor, the exact 1-D total-variation prox
  of strength ``gamma`` along the row-major order makes the upload
  piecewise constant, sent run-length encoded as one float32 value and one
  int32 length per run, ``8 r`` bytes for ``r`` runs, or as raw float32
  when that is smaller (``min(8 r, 4 d)`` per tensor). ``gamma = 0`` sends
  the upload as it is in the same layout: the baseline for what TV itself
  adds (runs of exact zeros, e.g. from dead units, already encode well);
* ``identity``: ``4 d`` bytes (float32).
"""

import math
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

from fedhelp_jax import types
# (The algorithms package imports this module too; neither reads the
# other's names at import time, so either may be imported first.)
from fedhelp_jax.algorithms.pfednet import tv as tv_lib

KINDS = ('none', 'topk', 'qsgd', 'tv')


class UploadEncoder(NamedTuple):
  """``encode(upload, key) -> (decoded upload, bytes on the wire)``."""
  name: str
  encode: Callable[[Any, jax.Array], tuple[Any, jax.Array]]


def identity() -> UploadEncoder:
  def encode(upload, key):
    del key
    flat, _ = ravel_pytree(upload)
    return upload, jnp.asarray(4 * flat.size, jnp.float32)
  return UploadEncoder('identity', encode)


def topk(fraction: float) -> UploadEncoder:
  """Keeps the ``ceil(fraction * d)`` largest-magnitude entries."""
  if not 0.0 < fraction <= 1.0:
    raise ValueError(f'topk fraction must be in (0, 1], got {fraction}.')

  def encode(upload, key):
    del key
    flat, unravel = ravel_pytree(upload)
    k = max(1, math.ceil(fraction * flat.size))
    _, idx = jax.lax.top_k(jnp.abs(flat), k)
    sent = jnp.zeros_like(flat).at[idx].set(flat[idx])
    return unravel(sent), jnp.asarray(8 * k, jnp.float32)
  return UploadEncoder(f'topk({fraction:g})', encode)


def qsgd(levels: int) -> UploadEncoder:
  """Unbiased stochastic quantisation to ``levels`` levels of the norm."""
  if int(levels) < 1:
    raise ValueError(f'qsgd levels must be >= 1, got {levels}.')
  s = int(levels)

  def encode(upload, key):
    flat, unravel = ravel_pytree(upload)
    norm = jnp.linalg.norm(flat)
    scaled = jnp.where(norm > 0, jnp.abs(flat) / norm * s, 0.0)
    low = jnp.floor(scaled)
    level = low + (jax.random.uniform(key, flat.shape) < scaled - low)
    sent = jnp.sign(flat) * level * norm / s
    bits = flat.size * (1 + math.ceil(math.log2(s + 1)))
    return unravel(sent), jnp.asarray(4 + math.ceil(bits / 8), jnp.float32)
  return UploadEncoder(f'qsgd({s})', encode)


def tv(gamma: float, *, num_iters: int = 100) -> UploadEncoder:
  """Per-tensor TV prox of strength ``gamma``, run-length bytes."""
  if not gamma >= 0.0:
    raise ValueError(f'tv gamma must be >= 0, got {gamma}.')
  def one(x):
    flat = jnp.reshape(x, (-1,))
    if gamma > 0:
      flat = tv_lib.tv_prox(flat, gamma, num_iters=num_iters)
    runs = 1 + jnp.sum(flat[1:] != flat[:-1])
    nbytes = jnp.minimum(8 * runs, 4 * flat.size).astype(jnp.float32)
    return flat.reshape(jnp.shape(x)), nbytes

  def encode(upload, key):
    del key
    pairs = [one(x) for x in jax.tree.leaves(upload)]
    sent = jax.tree.unflatten(jax.tree.structure(upload),
                              [p[0] for p in pairs])
    return sent, sum((p[1] for p in pairs), jnp.float32(0))
  return UploadEncoder(f'tv({gamma:g})', encode)


def from_config(section) -> UploadEncoder | None:
  """The encoder of ``config.compression`` (None for kind 'none')."""
  kind = section.get('kind', 'none')
  if kind not in KINDS:
    raise ValueError(f'config.compression.kind: unknown {kind!r}; expected '
                     f'one of {KINDS}.')
  if kind == 'topk':
    return topk(float(section.get('fraction', 0.1)))
  if kind == 'qsgd':
    return qsgd(int(section.get('levels', 16)))
  if kind == 'tv':
    return tv(float(section.get('gamma', 0.0)))
  return None


class ErrorFeedbackState(NamedTuple):
  """A silo's client state under an encoder with error feedback.

  Attributes:
    inner: the wrapped algorithm's own client state.
    residual: like the broadcast (placed: ``[C, ...]``), what the encoder
      has dropped so far; added to the next upload before encoding.
  """
  inner: Any
  residual: Any


def with_upload_encoder(alg: types.FederatedAlgorithm, encoder: UploadEncoder,
                        *, error_feedback: bool = True
                        ) -> types.FederatedAlgorithm:
  """``alg`` with every silo's upload sent through ``encoder``.

  The upload must have the broadcast's structure (a delta of the shared
  model, as in the FedAvg family and FedHelp's ``S``). With
  ``error_feedback`` each silo's client state becomes an
  ``ErrorFeedbackState``.
  """
  def init(rng, data):
    server, clients = alg.init(rng, data)
    if not error_feedback:
      return server, clients
    broadcast = alg.download(server).broadcast
    out = {}
    for g, client in clients.items():
      num = jax.tree.leaves(data[g])[0].shape[0]
      out[g] = ErrorFeedbackState(client, jax.tree.map(
          lambda p, num=num: jnp.zeros((num,) + jnp.shape(p),
                                       jnp.result_type(p)), broadcast))
    return server, out

  def local_update(silo, hparams, key):
    client = silo.state
    inner = client.inner if error_feedback else client
    key, encode_key = jax.random.split(key)
    out = alg.local_update(silo._replace(state=inner), hparams, key)
    upload = out.upload
    if jax.tree.structure(upload) != jax.tree.structure(silo.broadcast):
      raise ValueError(f'{alg.name}: its upload is not a delta of the '
                       'broadcast model, so it cannot be encoded.')
    if error_feedback:
      upload = jax.tree.map(jnp.add, upload, client.residual)
    sent, nbytes = encoder.encode(upload, encode_key)
    out = out._replace(upload=sent,
                       metrics={**out.metrics, 'upload_bytes': nbytes})
    if not error_feedback:
      return out
    residual = jax.tree.map(jnp.subtract, upload, sent)
    return out._replace(state=ErrorFeedbackState(out.state, residual))

  def eval_variables(silo):
    if error_feedback:
      silo = silo._replace(state=silo.state.inner)
    return alg.eval_variables(silo)

  return alg._replace(name=f'{alg.name}+{encoder.name}', init=init,
                      local_update=local_update,
                      eval_variables=eval_variables)
