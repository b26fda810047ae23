# Copyright 2026 The fedhelp_jax Authors. Licensed under the Apache License 2.0.
"""Checkpoint and resume with orbax.

A checkpoint holds the whole ``engine.FederatedState`` (server state, every
silo's state including private models, BatchNorm statistics and personalized
parts, the base PRNG key and the round counter). Data order is a pure
function of (seed, round, group, silo), so nothing else is needed to continue
bit-exactly. The config hash is stored beside the checkpoints; resuming a
directory written by a config that changes results is refused.
"""

import json
import os
from typing import Any, Optional

import jax
import orbax.checkpoint as ocp


class ConfigMismatchError(ValueError):
  """Raised when resuming a directory written by a different config."""


class RunCheckpointer:
  """Keeps the last ``keep`` checkpoints of a run, written atomically.

  Orbax writes each step to a temporary directory and renames it when
  complete, so a run killed mid-save leaves the previous checkpoint intact.
  """

  def __init__(self, directory: str, *, config_hash: str, keep: int = 2):
    self.directory = os.path.abspath(directory)
    os.makedirs(self.directory, exist_ok=True)
    self._hash_path = os.path.join(self.directory, 'config_hash.json')
    self._config_hash = config_hash
    self._manager = ocp.CheckpointManager(
        self.directory,
        options=ocp.CheckpointManagerOptions(max_to_keep=keep, create=True,
                                             enable_async_checkpointing=False))

  def latest_round(self) -> int:
    step = self._manager.latest_step()
    return 0 if step is None else int(step)

  def maybe_restore(self, state: Any, *, resume: Optional[bool] = None):
    """Restores the latest checkpoint into ``state``'s structure.

    Args:
      state: a freshly initialised state (its shapes, dtypes and shardings
        are the restore target).
      resume: True requires a checkpoint; False ignores (and deletes) any;
        None resumes when one exists.

    Returns:
      ``(state, round)``.
    """
    step = self._manager.latest_step()
    if resume is False or step is None:
      if resume:
        raise FileNotFoundError(
            f'--resume was given but {self.directory} has no checkpoint.')
      if step is not None:
        for s in self._manager.all_steps():
          self._manager.delete(s)
      self._write_hash()
      return state, 0
    stored = self._read_hash()
    if stored is not None and stored != self._config_hash:
      raise ConfigMismatchError(
          f'{self.directory} holds checkpoints of a different config (hash '
          f'{stored}, this config {self._config_hash}); the settings that '
          'change results differ. Use a new workdir, or pass resume=False '
          '(--noresume) to start over and overwrite it.')
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, state)
    restored = self._manager.restore(
        step, args=ocp.args.StandardRestore(abstract))
    restored = jax.tree.unflatten(jax.tree.structure(state),
                                  jax.tree.leaves(restored))
    print(f'[fedhelp_jax] resumed from round {step} ({self.directory})')
    return restored, int(step)

  def save(self, round_index: int, state: Any) -> None:
    self._manager.save(round_index, args=ocp.args.StandardSave(state))
    self._manager.wait_until_finished()

  def close(self) -> None:
    self._manager.close()

  def _write_hash(self) -> None:
    with open(self._hash_path, 'w') as f:
      json.dump({'config_hash': self._config_hash}, f)

  def _read_hash(self) -> Optional[str]:
    if not os.path.exists(self._hash_path):
      return None
    with open(self._hash_path) as f:
      return json.load(f)['config_hash']
