# Copyright 2026 The fedhelp_jax Authors. Licensed under the Apache License 2.0.
"""Checkpoint and resume with orbax.

A checkpoint holds the whole ``engine.FederatedState`` (server state, every
silo's state including private models, BatchNorm statistics and personalized
parts, the base PRNG key and the round counter). Data order is a pure
function of (seed, round, group, silo), so nothing else is needed to continue
bit-exactly. The config hash is stored beside the checkpoints; resuming a
directory written by a config that changes results is refused. A checkpoint
that cannot be read (files truncated by a crash) is moved aside and the run
resumes from the newest one that can.
"""

import json
import logging
import os
import shutil
import sys
import threading
import time
from typing import Any, NamedTuple, Optional

import jax
import orbax.checkpoint as ocp

from fedhelp_jax import engine
from fedhelp_jax import faults


# The hashed-config entry with which earlier versions recorded how many
# devices their checkpointed silos were padded for (absent: one device).
DEVICES_KEY = 'checkpoint_devices'


class Storage(NamedTuple):
  """How a run's state goes to disk.

  Attributes:
    layout: where the state's silos are (``engine.silo_layout``); with it,
      checkpoints hold the real silos only and restore on any device or
      process count. None: stored as the run holds it.
    mesh: the run's device mesh, or None.
    devices: the run's device count.
    padded: whether the run's state holds dummy silos (mesh padding).
    why_padded: with ``padded`` and no ``layout``: why the silos could not
      be found (a resume is then tied to ``devices``).
  """
  layout: Optional[engine.SiloLayout] = None
  mesh: Any = None
  devices: int = 1
  padded: bool = False
  why_padded: str = ''

  def topology_free(self) -> bool:
    return self.layout is not None or not self.padded


class ConfigMismatchError(ValueError):
  """Raised when resuming a directory written by a different config."""


class CheckpointUnreadableError(ValueError):
  """Raised when no checkpoint of a directory can be restored."""


def _is_primary() -> bool:
  return jax.process_index() == 0


def _barrier(name: str) -> None:
  """Waits for every process (a no-op with one)."""
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
    multihost_utils.sync_global_devices(f'fedhelp_jax.checkpoint.{name}')


def _everyone(ok: bool) -> bool:
  """Whether ``ok`` holds in every process (itself with one)."""
  if jax.process_count() == 1:
    return ok
  import numpy as np  # pylint: disable=g-import-not-at-top
  from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
  return bool(np.all(multihost_utils.process_allgather(np.int32(ok))))


def _join_threads_started_since(before: set[threading.Thread],
                                timeout_s: float = 30.0) -> None:
  """Waits for the worker threads a failed orbax save leaves running.

  When one write of a save fails (a full disk), the save raises while
  orbax's other commit threads are still writing. Left running, they meet
  the interpreter's shutdown when the CLI exits on the error and print a
  traceback ('cannot schedule new futures after interpreter shutdown')
  after the one-line report; joined here, they finish (or fail quietly on
  the same full disk) first.
  """
  deadline = time.monotonic() + timeout_s  # A bound, not a hang.
  for thread in set(threading.enumerate()) - before:
    if thread is not threading.current_thread() and not thread.daemon:
      try:
        thread.join(max(0.0, deadline - time.monotonic()))
      except Exception:  # pylint: disable=broad-except
        # Orbax's threads re-raise their own failure from join(): the
        # same full disk, already being reported.
        pass


def _quiet_failed_io_aftermath() -> None:
  """Silences the tracebacks a failed orbax read or write leaves behind.

  When one TensorStore operation of a restore or save fails (a damaged
  file, a full disk), orbax's event loop ends while the others are still in
  flight: as they finish, their callbacks find the loop closed ('Event loop
  is closed', through ``sys.unraisablehook``), and the tasks whose errors
  nobody awaited are logged by asyncio ('Task exception was never
  retrieved'), dozens of tracebacks after the failure was already reported
  in one line. Only those are dropped (the second for TensorStore errors and
  a full disk, and orbax's own log of a full disk); anything else passes.
  Installed once per process.
  """
  previous = sys.unraisablehook
  if getattr(previous, '_fedhelp_quiet', False):
    return

  def hook(unraisable):
    error = unraisable.exc_value
    if not (isinstance(error, RuntimeError)
            and str(error) == 'Event loop is closed'):
      previous(unraisable)

  def keep(record: logging.LogRecord) -> bool:
    # 'Task exception was never retrieved', and the same for the
    # _GatheringFuture of a gather whose first fragment failed.
    if 'exception was never retrieved' not in record.getMessage():
      return True
    error = record.exc_info[1] if record.exc_info else None
    return not (error is not None and ('tensorstore_spec' in str(error)
                                       or faults.is_disk_full(error)))

  def keep_orbax(record: logging.LogRecord) -> bool:
    # Orbax's worker threads log their failure (with its traceback) before
    # the save raises; a full disk is then reported in one line.
    # So is a thread still writing when the CLI exits on that report.
    message = record.getMessage()
    return not (record.pathname.endswith(os.path.join('futures',
                                                      'future.py'))
                and 'raised an exception' in message
                and (faults.is_disk_full(Exception(message))
                     or 'after interpreter shutdown' in message))

  hook._fedhelp_quiet = True  # pylint: disable=protected-access
  sys.unraisablehook = hook
  logging.getLogger('asyncio').addFilter(keep)
  logging.getLogger('absl').addFilter(keep_orbax)


def _first_line(error: BaseException, limit: int = 240) -> str:
  """The first line of an error, shortened (orbax's run to many lines).

  TensorStore chains its contexts ('Error opening ...: Error reading ...:
  <what was wrong>') and appends its spec: the spec is dropped, and a long
  chain keeps its start (the status) and its end (the file and the fault).
  """
  lines = [line.strip() for line in str(error).splitlines() if line.strip()]
  text = lines[0] if lines else type(error).__name__
  text = f'{type(error).__name__}: {text.split(" [tensorstore_spec")[0]}'
  if len(text) <= limit:
    return text
  head = limit // 4
  return f'{text[:head]} ... {text[-(limit - head - 5):]}'


class _Manager(ocp.CheckpointManager):
  """Orbax's manager, leaving JAX's preemption sync point to the run loop.

  ``reached_preemption_sync_point`` only works when its callers count up by
  one: the sync point is the largest count any process has reached, plus
  one. Orbax would call it with each saved round, which jumps by
  ``eval_every``, so ``faults.StopSignals`` alone calls it, once per chunk
  (a checkpoint is saved after every chunk anyway).
  """

  def reached_preemption(self, step: int) -> bool:
    del step
    return False


class RunCheckpointer:
  """Keeps the last ``keep`` checkpoints of a run, written atomically.

  Orbax writes each step to a temporary directory and renames it when
  complete, so a run killed mid-save leaves the previous checkpoint intact.

  Over several processes (``jax.distributed``) every process calls every
  method: orbax writes each process's shards and the primary (process 0)
  the metadata; the plain directory work here (creating the directory,
  removing unfinished saves, the config-hash file) is done by the primary
  alone, followed by a barrier.
  """

  def __init__(self, directory: str, *, config_hash: str, keep: int = 2,
               hashed_config: Optional[dict[str, Any]] = None):
    """Opens (or creates) ``directory``.

    Args:
      directory: where the step directories live.
      config_hash: hash of the settings that change results.
      keep: how many of the latest checkpoints to keep.
      hashed_config: the settings behind ``config_hash``, stored so that a
        refused resume can name the fields that differ.
    """
    self.directory = os.path.abspath(directory)
    if _is_primary():
      os.makedirs(self.directory, exist_ok=True)
      _remove_unfinished_saves(self.directory)
    _barrier('open')
    self._hash_path = os.path.join(self.directory, 'config_hash.json')
    self._config_hash = config_hash
    self._keep = int(keep)
    self._hashed_config = hashed_config
    self._storage = Storage()  # Set by maybe_restore.
    self._manager = _Manager(
        self.directory,
        options=ocp.CheckpointManagerOptions(max_to_keep=keep, create=True,
                                             enable_async_checkpointing=False))

  def latest_round(self) -> int:
    step = self._manager.latest_step()
    return 0 if step is None else int(step)

  def check_resume(self, resume: Optional[bool] = None) -> Optional[int]:
    """The round a run will resume from, checked before any work is done.

    Args:
      resume: True requires a checkpoint; False ignores any; None resumes
        when one exists.

    Returns:
      The latest checkpointed round to resume from, or None to start fresh.

    Raises:
      FileNotFoundError: ``resume`` is True and there is no checkpoint.
      ConfigMismatchError: the checkpoints were written by a config whose
        results-changing settings differ.
    """
    step = self._manager.latest_step()
    if resume is False or step is None:
      if resume:
        raise FileNotFoundError(
            f'--resume was given but {self.directory} has no checkpoint. '
            'Fix: drop --resume to start a fresh run there, or point '
            '--workdir at the run you want to continue.')
      return None
    stored, stored_config = self._read_hash()
    if stored is not None and stored != self._config_hash:
      diff = _describe_diff(stored_config, self._hashed_config)
      devices = (stored_config or {}).get(DEVICES_KEY, 1)
      if devices != 1:
        diff += (f'; it was written by an earlier fedhelp_jax whose '
                 f'checkpoints were tied to their device count ({devices}): '
                 'continue it with that version')
      raise ConfigMismatchError(
          f'{self.directory} holds checkpoints of a different config (hash '
          f'{stored}, this config {self._config_hash}); settings that change '
          f'results differ{diff}. Fix: use a new --workdir, restore the old '
          'settings to continue that run, or pass --noresume (resume=False) '
          'to start over and overwrite it.')
    return int(step)

  def maybe_restore(self, state: Any, *, resume: Optional[bool] = None,
                    storage: Optional[Storage] = None):
    """Restores the latest checkpoint into ``state``'s structure.

    Args:
      state: a freshly initialised state (its shapes, dtypes and shardings
        are the restore target).
      resume: True requires a checkpoint; False ignores (and deletes) any;
        None resumes when one exists.
      storage: how this run stores its state (kept for ``save``); default
        ``Storage()``, the state as held. With a ``layout``, checkpoints hold
        the real silos only, so one written on any device or process count
        restores here (the dummy silos a mesh adds are fresh ones).

    Returns:
      ``(state, round)``.

    Raises:
      FileNotFoundError, ConfigMismatchError: see ``check_resume``; also
        a checkpoint whose silos are tied to another device count.
    """
    self._storage = storage = storage or Storage()
    step = self.check_resume(resume)
    if step is None:
      for s in self._manager.all_steps():
        self._manager.delete(s)
      self._write_hash()
      self.warn_if_low_space(state)
      return state, 0
    self._check_topology(storage)
    target = self._to_disk(state)
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, target)
    failures = []  # (step, cause) of the checkpoints that cannot be read.
    _quiet_failed_io_aftermath()  # Before: they may come at once.
    for step in sorted(self._manager.all_steps(), reverse=True):
      try:
        restored = self._manager.restore(
            step, args=ocp.args.StandardRestore(abstract))
        cause = None
      except Exception as e:  # pylint: disable=broad-except
        # TensorStore and orbax raise many types for damaged files.
        cause = _first_line(e)
      if _everyone(cause is None):
        break
      failures.append((step, cause or 'unreadable in another process'))
    else:
      listed = '; '.join(f'round {s}: {c}' for s, c in failures)
      raise CheckpointUnreadableError(
          f'no checkpoint in {self.directory} can be read ({listed}). Fix: '
          'pass --noresume (resume=False) to start over there, or delete '
          f'{self.directory} (or move it away to keep it).')
    for bad, cause in failures:  # Kept for a look, out of orbax's way.
      moved = self._move_aside(bad)
      if _is_primary():
        print(f'[fedhelp_jax] the round {bad} checkpoint in '
              f'{self.directory} cannot be read ({cause}); moved aside to '
              f'{moved}')
    if failures:
      self._manager.reload()
    restored = jax.tree.unflatten(jax.tree.structure(state),
                                  jax.tree.leaves(restored))
    if storage.layout is not None:
      restored = engine.restored_state(restored, state, storage.layout)
    if _is_primary():
      older = ', the newest readable checkpoint' if failures else ''
      print(f'[fedhelp_jax] resumed from round {step} ({self.directory}'
            f'{older})')
    self.warn_if_low_space(restored)
    return restored, int(step)

  def save(self, round_index: int, state: Any) -> None:
    """Saves ``state`` as step ``round_index`` (synchronously).

    Raises:
      DiskFullError: the disk filled up; the unfinished save is removed and
        the earlier checkpoints are as they were.
    """
    _quiet_failed_io_aftermath()  # A failed save leaves them too.
    threads_before = set(threading.enumerate())
    try:
      self._manager.save(round_index,
                         args=ocp.args.StandardSave(self._to_disk(state)))
      self._manager.wait_until_finished()
    except Exception as e:  # pylint: disable=broad-except
      if not faults.is_disk_full(e):
        raise
      _join_threads_started_since(threads_before)
      if _is_primary():
        _remove_unfinished_saves(self.directory)  # Give the space back.
      needed, why = self.checkpoint_bytes(state)
      raise faults.disk_full(f'the round {round_index} checkpoint',
                             self.directory, needed, why) from None

  def checkpoint_bytes(self, state: Any) -> tuple[int, str]:
    """About how many bytes a checkpoint of ``state`` takes, and whence:
    the newest checkpoint on disk, else the state's size in memory."""
    step = self._manager.latest_step()
    if step is not None:
      path = os.path.join(self.directory, str(step))
      if os.path.isdir(path):
        return (faults.disk_bytes(path),
                f'what the round {step} checkpoint takes')
    nbytes = sum(int(getattr(x, 'nbytes', 0)) for x in jax.tree.leaves(state))
    return nbytes, "the state's size in memory"

  def warn_if_low_space(self, state: Any) -> None:
    """Warns (once, process 0) when the disk holds fewer than the
    ``keep + 1`` checkpoints a run has at a time (the kept ones and the one
    being written)."""
    if not _is_primary():
      return
    needed, why = self.checkpoint_bytes(state)
    free = faults.free_bytes(self.directory)
    at_once = self._keep + 1
    if free is not None and free < at_once * needed:
      print(f'[fedhelp_jax] warning: {faults.human_bytes(free)} free for '
            f'{self.directory}, but a checkpoint takes about '
            f'{faults.human_bytes(needed)} ({why}) and a run holds up to '
            f'{at_once} at a time (checkpoint_keep={self._keep}, and the one '
            'being written): a save may find the disk full. Fix: free space '
            'there, or point --workdir at a larger disk.')

  def close(self) -> None:
    self._manager.close()

  def _to_disk(self, state: Any) -> Any:
    if self._storage.layout is None:
      return state
    return engine.stored_state(state, self._storage.layout,
                               self._storage.mesh)

  def _silos_record(self, storage: Storage) -> dict[str, Any]:
    """How the checkpoints hold their silos (beside the config hash)."""
    if storage.topology_free():
      return {'silos': 'real only'}
    return {'silos': 'padded', 'devices': int(storage.devices),
            'why': storage.why_padded}

  def _check_topology(self, storage: Storage) -> None:
    """Refuses a checkpoint this run cannot lay out, naming the fix."""
    stored = self._read_silos() or {'silos': 'real only'}
    if stored['silos'] == 'padded':
      if storage.devices == stored['devices'] and storage.padded:
        return
      raise ConfigMismatchError(
          f'{self.directory}: its silos were checkpointed padded and '
          f'sharded over {stored["devices"]} device(s) ({stored["why"]}). '
          f'Fix: continue with --config.num_devices={stored["devices"]} (on '
          f'CPU also FEDHELP_HOST_DEVICES={stored["devices"]}, or '
          'XLA_FLAGS=--xla_force_host_platform_device_count='
          f'{stored["devices"]}).')
    if not storage.topology_free():
      raise ConfigMismatchError(
          f'{self.directory} holds the real silos only, but on '
          f'{storage.devices} devices this run pads them and '
          f'{storage.why_padded}. Fix: continue with --config.num_devices=1 '
          '(or a count that divides every group\'s silos).')

  def _move_aside(self, step: int) -> str:
    """Renames step directory ``step`` to ``<step>.unreadable-<n>`` (a name
    orbax does not take for a step) and returns the new path."""
    source = os.path.join(self.directory, str(step))
    n = 1
    while os.path.exists(f'{source}.unreadable-{n}'):
      n += 1
    target = f'{source}.unreadable-{n}'
    if _is_primary():
      os.rename(source, target)
    _barrier(f'move_aside.{step}')
    return target

  def _write_hash(self) -> None:
    if _is_primary():
      tmp = self._hash_path + '.tmp'
      with open(tmp, 'w') as f:
        json.dump({'config_hash': self._config_hash,
                   'config': self._hashed_config,
                   'layout': self._silos_record(self._storage)}, f,
                  sort_keys=True)
      os.replace(tmp, self._hash_path)
    _barrier('hash')

  def _read_hash(self) -> tuple[Optional[str], Optional[dict[str, Any]]]:
    if not os.path.exists(self._hash_path):
      return None, None
    with open(self._hash_path) as f:
      stored = json.load(f)
    return stored['config_hash'], stored.get('config')

  def _read_silos(self) -> Optional[dict[str, Any]]:
    if not os.path.exists(self._hash_path):
      return None
    with open(self._hash_path) as f:
      return json.load(f).get('layout')


# Orbax writes step N to 'N<suffix>' and renames it to 'N' when complete.
_ORBAX_TMP_SUFFIX = '.orbax-checkpoint-tmp'


def _remove_unfinished_saves(directory: str) -> None:
  """Deletes step directories left half-written by a killed save.

  Orbax's own ``cleanup_tmp_directories`` runs in a background thread that
  can outlive a run which stops early, so this is done synchronously.
  """
  for name in os.listdir(directory):
    step, sep, _ = name.partition(_ORBAX_TMP_SUFFIX)
    if sep and step.isdigit():
      shutil.rmtree(os.path.join(directory, name), ignore_errors=True)


def _flatten(tree: Any, prefix: str = '') -> dict[str, Any]:
  if not isinstance(tree, dict):
    return {prefix: tree}
  out = {}
  for k, v in tree.items():
    out.update(_flatten(v, f'{prefix}.{k}' if prefix else k))
  return out


def _describe_diff(old: Optional[dict[str, Any]],
                   new: Optional[dict[str, Any]], limit: int = 5) -> str:
  """' (config.a: 1 -> 2, ...)' for the fields that differ, or ''."""
  if old is None or new is None:
    return ''
  old, new = _flatten(old), _flatten(new)
  show = lambda d, k: repr(d[k]) if k in d else '(unset)'
  changed = [f'config.{k}: {show(old, k)} -> {show(new, k)}'
             for k in sorted(set(old) | set(new))
             if show(old, k) != show(new, k)]
  more = f', and {len(changed) - limit} more' if len(changed) > limit else ''
  return f" (checkpointed -> now: {', '.join(changed[:limit])}{more})"
