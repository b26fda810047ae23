# Copyright 2026 The fedhelp_jax Authors. Licensed under the Apache License 2.0.
"""One-time foundation-model (FM) knowledge for FedHelp's small silos.

Wang et al. 2025, "Asymmetrical Reciprocity-based Federated Learning for
Resolving Disparities in Medical Diagnosis" (FedHelp),
https://arxiv.org/abs/2412.19654: before round 1 an FM API is queried ONCE on a
fixed public, unlabeled set; its soft outputs ``q(u)`` guide the small silos
for the whole run. Nothing like it exists in FedAvg, where silos only see
their own data and the global model.

Pieces:
  * ``Provider``: the FM API as a pure function of a batch, ``query(x, ids)
    -> probabilities`` (``[B, K]`` class probabilities, or per-pixel
    ``[B, H, W, K]``), plus facts about it (``info``, e.g. its own score).
  * ``query_once``: asks a provider once per public example and caches the
    answers on disk (npz), keyed by a content hash of the inputs AND the
    provider config, so a second run makes zero calls.
  * Providers: ``precomputed`` (an npz of outputs keyed by example id, to
    plug in a real FM run elsewhere, e.g. CLIP zero-shot or MedSAM) and
    ``proxy`` (a stronger model trained once, centrally, on data disjoint from
    every silo; the offline default, since FM weights cannot be downloaded
    here). Its own test score is reported so readers know how good the "FM"
    was.
  * ``soften``: the provider-quality knob (temperature, label smoothing),
    applied to the cached answers (degrading a stored answer is not an API
    call).

Which public set and which FM a config asks for, and placing the answers on
the silos, is the registry's hook ``algorithms.fm_prepare.prepare_fm``; this
module reads no config.
"""

import hashlib
import json
import os
import tempfile
from typing import Any, Callable, Mapping, NamedTuple, Optional

import flax.serialization
import jax
import jax.numpy as jnp
import numpy as np
import optax
import tqdm

from fedhelp_jax import metrics as metrics_lib
from fedhelp_jax import models
from fedhelp_jax import tasks

PROVIDERS = ('proxy', 'precomputed')
# Probabilities must sum to 1 within this tolerance (float32 softmax output).
_SUM_TOL = 1e-3


class Provider(NamedTuple):
  """A foundation-model API.

  Attributes:
    name: provider kind ('proxy', 'precomputed', ...).
    query: ``(x [B, ...], ids [B] int) -> probs`` with ``probs`` ``[B, K]``
      (classification) or ``[B, H, W, K]`` (segmentation), non-negative and
      summing to 1 over the last axis. One call of ``query`` on ``B``
      examples counts as ``B`` API calls.
    info: JSON-able facts about the provider (e.g. the proxy's own test
      score), recorded with the results.
  """
  name: str
  query: Callable[[np.ndarray, np.ndarray], np.ndarray]
  info: Mapping[str, Any] = {}


# ---------------------------------------------------------------------------
# Hashing and the on-disk cache.
# ---------------------------------------------------------------------------


def hash_arrays(*arrays) -> str:
  h = hashlib.sha256()
  for a in arrays:
    a = np.ascontiguousarray(np.asarray(a))
    h.update(f'{a.dtype.str}{a.shape}'.encode())
    h.update(a.tobytes())
  return h.hexdigest()


def cache_key(public_x, ids, provider_config: Mapping[str, Any]) -> str:
  """Content hash of the queried inputs, their ids and the provider config.

  Args:
    public_x: ``[P, ...]`` inputs.
    ids: ``[P]`` example ids.
    provider_config: JSON-able identity of the provider.

  Returns:
    A 24-character hex key.
  """
  blob = json.dumps(dict(provider_config), sort_keys=True, default=str)
  h = hashlib.sha256()
  h.update(hash_arrays(public_x, ids).encode())
  h.update(blob.encode())
  return h.hexdigest()[:24]


def _atomic_savez(path: str, **arrays) -> None:
  # Write then rename, so an interrupted run never leaves a truncated cache.
  directory = os.path.dirname(path) or '.'
  os.makedirs(directory, exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=directory, suffix='.npz')
  os.close(fd)
  try:
    np.savez(tmp, **arrays)
    os.replace(tmp, path)
  finally:
    if os.path.exists(tmp):
      os.remove(tmp)


def check_probs(outputs: np.ndarray, what: str) -> None:
  """Raises ValueError unless ``outputs`` are probabilities over the last axis.
  """
  outputs = np.asarray(outputs)
  if outputs.ndim < 2:
    raise ValueError(f'{what}: expected probabilities [B, K] or [B, H, W, K], '
                     f'got shape {outputs.shape}.')
  if not np.all(np.isfinite(outputs)) or np.any(outputs < 0):
    raise ValueError(f'{what}: outputs must be finite and non-negative.')
  sums = outputs.sum(axis=-1)
  if np.max(np.abs(sums - 1.0)) > _SUM_TOL:
    raise ValueError(f'{what}: outputs must sum to 1 over the last (class) '
                     f'axis; found sums in [{sums.min():.4f}, '
                     f'{sums.max():.4f}]. Store probabilities, not logits.')


def query_once(provider: Provider, public_x, *, cache_dir: str,
               provider_config: Mapping[str, Any], ids=None,
               batch_size: int = 256) -> tuple[np.ndarray, int]:
  """Queries the FM once per public example, or reads the cached answers.

  The cache file is ``cache_dir/fm_<key>.npz`` with ``key =
  cache_key(public_x, ids, provider_config)``: changing an input pixel, the
  example ids or any provider setting queries again; an identical second run
  reads the file and makes zero calls.

  Args:
    provider: the FM API.
    public_x: ``[P, ...]`` public, unlabeled inputs (never private data).
    cache_dir: directory of the cache.
    provider_config: JSON-able identity of the provider (kind, model,
      training recipe, ...); part of the cache key.
    ids: ``[P]`` integer example ids (default ``arange(P)``); the
      'precomputed' provider looks its answers up by id.
    batch_size: examples per ``provider.query`` call.

  Returns:
    ``(outputs, num_calls)``: ``outputs`` ``[P, K]`` or ``[P, H, W, K]``
    float32 probabilities; ``num_calls`` the number of examples sent to the
    API by THIS call (``P`` on a miss, 0 on a cache hit).
  """
  public_x = np.asarray(public_x)
  num = public_x.shape[0]
  ids = np.arange(num, dtype=np.int64) if ids is None else np.asarray(
      ids, np.int64)
  if ids.shape != (num,):
    raise ValueError(f'ids must have shape ({num},), got {ids.shape}.')
  key = cache_key(public_x, ids, provider_config)
  path = os.path.join(cache_dir, f'fm_{key}.npz')
  if os.path.exists(path):
    with np.load(path) as cached:
      if str(cached['key']) == key and np.array_equal(cached['ids'], ids):
        return cached['outputs'].astype(np.float32), 0
  outputs, num_calls = [], 0
  for start in range(0, num, batch_size):
    xb, idb = public_x[start:start + batch_size], ids[start:start + batch_size]
    out = np.asarray(provider.query(xb, idb), np.float32)
    num_calls += xb.shape[0]
    if out.shape[0] != xb.shape[0]:
      raise ValueError(f'provider {provider.name!r} answered {out.shape[0]} '
                       f'outputs for {xb.shape[0]} inputs.')
    outputs.append(out)
  outputs = np.concatenate(outputs, axis=0)
  check_probs(outputs, f'provider {provider.name!r}')
  _atomic_savez(path, outputs=outputs, ids=ids, key=np.asarray(key),
                config=np.asarray(json.dumps(dict(provider_config),
                                             sort_keys=True, default=str)))
  return outputs, num_calls


def soften(outputs, *, temperature: float = 1.0,
           label_smoothing: float = 0.0) -> np.ndarray:
  """The provider-quality knob: tempers and smooths stored probabilities.

  ``q_T = q**(1/T) / sum(q**(1/T))`` (what tempering the FM's logits by ``T``
  would give), then ``(1 - eps) q_T + eps / K``. ``T > 1`` and ``eps > 0``
  make the FM less confident; ``T < 1`` sharpens it.

  Args:
    outputs: ``[..., K]`` probabilities.
    temperature: ``T > 0``.
    label_smoothing: ``eps`` in ``[0, 1]``.

  Returns:
    ``[..., K]`` float32 probabilities.
  """
  if not temperature > 0:
    raise ValueError(f'temperature must be > 0, got {temperature}.')
  if not 0.0 <= label_smoothing <= 1.0:
    raise ValueError(f'label_smoothing must be in [0, 1], got '
                     f'{label_smoothing}.')
  q = np.asarray(outputs, np.float64)
  if temperature != 1.0:
    with np.errstate(divide='ignore'):
      logq = np.where(q > 0, np.log(np.maximum(q, 1e-300)), -np.inf)
    logq = logq / temperature
    logq -= np.max(logq, axis=-1, keepdims=True)
    q = np.exp(logq)
    q /= q.sum(axis=-1, keepdims=True)
  k = q.shape[-1]
  q = (1.0 - label_smoothing) * q + label_smoothing / k
  return q.astype(np.float32)


# ---------------------------------------------------------------------------
# Providers.
# ---------------------------------------------------------------------------


def precomputed(path: str, *, output_shape: Optional[tuple[int, ...]] = None
                ) -> Provider:
  """FM outputs computed elsewhere, looked up by example id.

  The file is an npz with ``ids`` ``[M]`` (unique integers) and ``outputs``
  ``[M, K]`` or ``[M, H, W, K]`` probabilities.

  Args:
    path: the npz file.
    output_shape: expected per-example shape, e.g. ``(K,)`` or ``(H, W, K)``.

  Returns:
    A ``Provider`` whose ``query(x, ids)`` returns the stored rows of ``ids``.

  Raises:
    ValueError: missing keys, duplicate ids, a row count or per-example shape
      that does not match, non-probability outputs; at query time, ids that
      the file lacks or inputs whose spatial size differs from the stored
      masks.
  """
  with np.load(path) as f:
    missing = [k for k in ('ids', 'outputs') if k not in f.files]
    if missing:
      raise ValueError(f'{path}: missing arrays {missing}; expected "ids" '
                       f'[M] and "outputs" [M, K] or [M, H, W, K].')
    file_ids = np.asarray(f['ids']).astype(np.int64).reshape(-1)
    outputs = np.asarray(f['outputs'], np.float32)
  if outputs.shape[0] != file_ids.shape[0]:
    raise ValueError(f'{path}: {file_ids.shape[0]} ids but {outputs.shape[0]} '
                     'output rows.')
  if output_shape is not None and outputs.shape[1:] != tuple(output_shape):
    raise ValueError(f'{path}: per-example output shape {outputs.shape[1:]} '
                     f'does not match the expected {tuple(output_shape)}.')
  check_probs(outputs, path)
  if np.unique(file_ids).size != file_ids.size:
    raise ValueError(f'{path}: ids are not unique.')
  row = {int(i): r for r, i in enumerate(file_ids)}

  def query(x, ids):
    ids = np.asarray(ids, np.int64).reshape(-1)
    absent = [int(i) for i in ids if int(i) not in row]
    if absent:
      raise ValueError(f'{path}: no FM output for {len(absent)} of the '
                       f'{ids.size} queried ids (first: {absent[:5]}).')
    out = outputs[[row[int(i)] for i in ids]]
    if out.ndim == 4 and tuple(out.shape[1:3]) != tuple(np.shape(x)[1:3]):
      raise ValueError(f'{path}: stored masks are {out.shape[1:3]} but the '
                       f'inputs are {np.shape(x)[1:3]}.')
    return out

  return Provider('precomputed', query, {'path': os.path.basename(path),
                                         'rows': int(file_ids.size)})


class ProxyModel(NamedTuple):
  """A proxy FM trained once, centrally.

  Attributes:
    module: the Flax module.
    variables: its trained variables.
    test_score: its own score on the held-out test set (accuracy for
      classification, mean foreground Dice for segmentation).
    metric: 'accuracy' or 'dice'.
    train_size: number of training examples it saw.
  """
  module: Any
  variables: Any
  test_score: float
  metric: str
  train_size: int


def _predict_fn(module, task: tasks.Task):
  @jax.jit
  def predict(variables, x):
    out, _ = models.apply_model(module, variables, x, train=False)
    return task.predict(out)
  return predict


def _batched(fn, x, batch_size):
  return np.concatenate([np.asarray(fn(x[i:i + batch_size]))
                         for i in range(0, x.shape[0], batch_size)], axis=0)


def score(module, variables, task: tasks.Task, test_x, test_y, *,
          batch_size: int = 256) -> float:
  """Accuracy (classification) or mean foreground Dice (segmentation)."""
  predict = _predict_fn(module, task)
  probs = _batched(lambda xb: predict(variables, xb), np.asarray(test_x),
                   batch_size)
  if task.name == 'classification':
    return metrics_lib.classification_metrics(probs, test_y)['accuracy']
  return metrics_lib.segmentation_metrics(
      np.argmax(probs, -1), test_y, num_classes=task.num_classes)['dice']


def train_proxy(module, task: tasks.Task, train_x, train_y, *, test_x, test_y,
                steps: int, batch_size: int, lr: float, seed: int,
                cache_dir: Optional[str] = None) -> ProxyModel:
  """Trains the proxy FM once (Adam, a jitted step in a host loop).

  This is a one-time centralized job, not a federated one. With
  ``cache_dir`` the trained variables and score are cached under a hash of
  the module, the recipe and the training data, so later runs load them.

  Args:
    module: the (stronger) Flax model.
    task: the task (its loss trains the proxy).
    train_x: ``[N, ...]`` training inputs, disjoint from every silo.
    train_y: ``[N]`` labels or ``[N, H, W]`` masks.
    test_x: held-out inputs for the proxy's own score.
    test_y: held-out labels/masks.
    steps: optimisation steps.
    batch_size: examples per step.
    lr: Adam learning rate.
    seed: init and data-order seed.
    cache_dir: optional cache directory.

  Returns:
    The trained ``ProxyModel``.
  """
  train_x, train_y = np.asarray(train_x, np.float32), np.asarray(train_y)
  if train_x.shape[0] < 1:
    raise ValueError('train_proxy: no training data (is every example '
                     'assigned to a silo?).')
  recipe = {'module': repr(module), 'steps': int(steps), 'lr': float(lr),
            'batch_size': int(batch_size), 'seed': int(seed),
            'data': hash_arrays(train_x, train_y, test_x, test_y)}
  key = hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()
                       ).hexdigest()[:24]
  path = None if cache_dir is None else os.path.join(cache_dir,
                                                     f'proxy_{key}.npz')
  rng = jax.random.PRNGKey(seed)
  variables = models.init_variables(module, rng, train_x[:1])
  if path is not None and os.path.exists(path):
    with np.load(path) as f:
      variables = flax.serialization.from_bytes(variables, f['state'].tobytes())
      return ProxyModel(module, variables, float(f['test_score']),
                        str(f['metric']), int(f['train_size']))

  tx = optax.adam(lr)

  @jax.jit
  def step(variables, opt_state, xb, yb):
    def loss_fn(p):
      out, new_vars = models.apply_model(
          module, {**variables, 'params': p}, xb, train=True)
      return jnp.mean(task.loss(out, yb)), new_vars
    grads, new_vars = jax.grad(loss_fn, has_aux=True)(variables['params'])
    updates, opt_state = tx.update(grads, opt_state, variables['params'])
    params = optax.apply_updates(variables['params'], updates)
    return {**new_vars, 'params': params}, opt_state

  order = np.random.default_rng(seed)
  opt_state = tx.init(variables['params'])
  n = train_x.shape[0]
  perm, pos = order.permutation(n), 0
  for _ in tqdm.trange(int(steps), desc='proxy FM training', unit='step',
                       leave=False, mininterval=2.0):
    if pos + batch_size > n:  # Reshuffle each epoch.
      perm, pos = order.permutation(n), 0
    idx = perm[pos:pos + min(batch_size, n)]
    pos += batch_size
    variables, opt_state = step(variables, opt_state, train_x[idx],
                                train_y[idx])
  test_score = score(module, variables, task, test_x, test_y)
  metric = 'accuracy' if task.name == 'classification' else 'dice'
  if path is not None:
    _atomic_savez(path, state=np.frombuffer(
        flax.serialization.to_bytes(variables), np.uint8),
                  test_score=np.asarray(test_score), metric=np.asarray(metric),
                  train_size=np.asarray(n))
  return ProxyModel(module, variables, float(test_score), metric, int(n))


def proxy(proxy_model: ProxyModel, task: tasks.Task) -> Provider:
  """A provider that answers with a trained proxy model's softmax outputs."""
  predict = _predict_fn(proxy_model.module, task)

  def query(x, ids):
    del ids  # The proxy sees the inputs, like a real API.
    return np.asarray(predict(proxy_model.variables, np.asarray(x,
                                                                np.float32)))

  return Provider('proxy', query, {
      'test_' + proxy_model.metric: proxy_model.test_score,
      'train_size': proxy_model.train_size})
