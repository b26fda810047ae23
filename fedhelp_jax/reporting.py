# Copyright 2026 The fedhelp_jax Authors. Licensed under the Apache License 2.0.
"""Host-side reporting: JSONL metrics, optional TensorBoard, progress, summary.
"""

import json
import math
import os
import sys
from typing import Any, Optional

import numpy as np

from fedhelp_jax import faults


def strict(x: Any) -> Any:
  """``x`` with numpy values made plain and NaN/inf made ``None``.

  JSON has no NaN: a bare ``NaN`` (e.g. the AUC of a one-class test set)
  breaks strict parsers (``jq``, browsers, ``JSON.parse``), so undefined
  values are written as ``null``.
  """
  if isinstance(x, dict):
    return {k: strict(v) for k, v in x.items()}
  if isinstance(x, (list, tuple)):
    return [strict(v) for v in x]
  if isinstance(x, np.ndarray):
    return strict(x.tolist())
  if isinstance(x, (bool, np.bool_)):
    return bool(x)
  if isinstance(x, np.integer):
    return int(x)
  if isinstance(x, (float, np.floating)):
    x = float(x)
    return x if math.isfinite(x) else None
  return x


def dumps(obj: Any, **kwargs) -> str:
  """Strict JSON text of ``obj`` (see ``strict``)."""
  return json.dumps(strict(obj), allow_nan=False, default=_default, **kwargs)


def write_json(path: str, obj: Any) -> None:
  """Writes strict JSON atomically (temp file + rename), so a crash never
  leaves a half-written file behind.

  Raises:
    DiskFullError: the disk is full; the previous file is left as it was.
  """
  write_atomic(path, dumps(obj, indent=1, sort_keys=True).encode())


def write_atomic(path: str, data: bytes, what: Optional[str] = None) -> None:
  """Writes ``data`` to a temp file and renames it over ``path``.

  Raises:
    DiskFullError: the disk is full (``what`` names the file in the
      message); ``path`` is left as it was and the temp file removed.
  """
  tmp = path + '.tmp'
  try:
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
      _write_all(fd, data)
    finally:
      os.close(fd)
    os.replace(tmp, path)
  except OSError as e:
    if os.path.exists(tmp):
      os.remove(tmp)
    if faults.is_disk_full(e):
      raise faults.disk_full(what or os.path.basename(path), path, len(data),
                             'its size') from None
    raise


def _write_all(fd: int, data: bytes) -> None:
  """Writes all of ``data`` to ``fd`` and flushes it to the disk."""
  view = memoryview(data)
  while view:
    view = view[os.write(fd, view):]
  os.fsync(fd)


def _default(x):
  if isinstance(x, (np.floating, np.integer)):
    return x.item()
  if isinstance(x, np.ndarray):
    return x.tolist()
  return str(x)


def read_jsonl(path: str) -> list[dict[str, Any]]:
  """Reads JSON lines, dropping a last line cut short by a killed writer."""
  return _read_records(path)[0]


def _read_records(path: str) -> tuple[list[dict[str, Any]], int]:
  """``(records, torn)``: the records of a JSON-lines file, and the length
  of a last line cut short by a killed writer (dropped), else 0."""
  with open(path) as f:
    lines = [line for line in f if line.strip()]
  records = []
  for i, line in enumerate(lines):
    try:
      records.append(json.loads(line))
    except json.JSONDecodeError:
      if i != len(lines) - 1:
        raise
      return records, len(line.encode())
  return records, 0


class MetricsLogger:
  """Appends one JSON record per evaluation to ``workdir/metrics.jsonl``.

  On resume, records past the restored round are dropped first, so the file
  always matches the checkpointed history. TensorBoard scalars are written
  too when ``tensorboard=True`` and tensorboardX is installed.
  """

  def __init__(self, workdir: str, *, resumed: bool = False,
               resume_round: Optional[int] = None, tensorboard: bool = False,
               write: bool = True):
    """Opens the log.

    Args:
      workdir: the run directory.
      resumed: keep the records up to ``resume_round``; else start empty.
      resume_round: the restored round.
      tensorboard: also write TensorBoard scalars.
      write: False keeps the records in memory only and touches no file
        (the processes other than process 0 of a multi-process run, which
        read the history process 0 wrote before this run).
    """
    self.path = os.path.join(workdir, 'metrics.jsonl')
    self._write = write
    self._memory = None
    if not write:
      kept = read_jsonl(self.path) if resumed and os.path.exists(
          self.path) else []
      self._memory = [r for r in kept if resume_round is None
                      or r['round'] <= resume_round]
      self._tb = None
      return
    if not resumed and os.path.exists(self.path):
      os.remove(self.path)
    if resumed and resume_round is not None and os.path.exists(self.path):
      records, torn = _read_records(self.path)
      if torn:
        print(f'[fedhelp_jax] {self.path}: dropped a torn last line '
              f'({torn} bytes, cut short by a killed run)')
      # Rounds logged after the restored checkpoint will be run again.
      keep = [r for r in records if r['round'] <= resume_round]
      write_atomic(self.path, ''.join(dumps(r) + '\n' for r in keep).encode(),
                   f'metrics.jsonl (its records up to round {resume_round})')
    self._last_size = None  # Of the file before the last record.
    self._tb = None
    if tensorboard:
      try:
        import tensorboardX  # pylint: disable=g-import-not-at-top
        self._tb = tensorboardX.SummaryWriter(os.path.join(workdir, 'tb'))
      except ImportError:
        print('[fedhelp_jax] tensorboard=True but tensorboardX is not '
              'installed (pip install tensorboardX); JSONL only.')

  def records(self) -> list[dict[str, Any]]:
    """The records logged so far (after a resume: the kept history)."""
    if self._memory is not None:
      return list(self._memory)
    return read_jsonl(self.path) if os.path.exists(self.path) else []

  def log(self, record: dict[str, Any]) -> None:
    if self._memory is not None:
      self._memory.append(json.loads(dumps(record)))
      return
    self._append((dumps(record) + '\n').encode(), record.get('round'))
    if self._tb is not None:
      step = record['round']
      for group, vals in record['summary'].items():
        if isinstance(vals, dict):
          for k, v in vals.items():
            self._tb.add_scalar(f'{group}/{k}', v, step)
      for group, v in record.get('train_loss', {}).items():
        self._tb.add_scalar(f'train_loss/{group}', v, step)

  def _append(self, line: bytes, round_index: Optional[int]) -> None:
    """Appends one whole line, flushed to the disk, or nothing.

    One unbuffered descriptor in append mode: a write cut short (a full
    disk) is cut back to where the line began, so the log never holds a
    partial line of a writer that is still alive.

    Raises:
      DiskFullError: the disk is full; the log is as it was before.
    """
    fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    start = os.fstat(fd).st_size
    try:
      _write_all(fd, line)
    except OSError as e:
      os.ftruncate(fd, start)
      if faults.is_disk_full(e):
        raise faults.disk_full(f'the round {round_index} record of '
                               'metrics.jsonl', self.path, len(line),
                               'its size') from None
      raise
    finally:
      os.close(fd)
    self._last_size = start

  def rollback(self) -> None:
    """Removes the last record logged (its checkpoint could not be saved),
    so the log and the checkpoints stay consistent."""
    if self._memory is not None:
      if self._memory:
        self._memory.pop()
      return
    if self._last_size is not None:
      os.truncate(self.path, self._last_size)
      self._last_size = None

  def close(self) -> None:
    if self._tb is not None:
      self._tb.close()


class Progress:
  """A tqdm progress bar over rounds (round, loss, per-group metric, ETA)."""

  def __init__(self, total: int, *, initial: int = 0, enabled: bool = True,
               every: int = 1):
    self._bar = None
    if enabled:
      from tqdm import auto as tqdm  # pylint: disable=g-import-not-at-top
      if every > 1:
        # Rounds run in compiled chunks of eval_every; the bar can only move
        # between chunks, so say when the next update comes.
        print(f'[fedhelp_jax] progress updates every {every} rounds (one '
              'compiled chunk; set --config.eval_every=1 for every round, at '
              'some speed cost)', file=sys.stderr)
      self._bar = tqdm.tqdm(total=total, initial=initial, unit='round',
                            dynamic_ncols=True, file=sys.stderr)

  def update(self, n: int, **postfix) -> None:
    if self._bar is None:
      return
    fmt = {k: (f'{v:.4f}' if isinstance(v, float) else v)
           for k, v in postfix.items()}
    self._bar.set_postfix(fmt, refresh=False)
    self._bar.update(n)

  def close(self) -> None:
    if self._bar is not None:
      self._bar.close()


def print_summary(summary: dict[str, Any], groups) -> None:
  """Prints the end-of-run summary: final/best metric, gap, timing."""
  final = summary['final']['summary']
  metric = summary['metric']
  lines = [f"== {summary['algorithm']} on {summary['dataset']} "
           f"({summary['rounds']} rounds, seed {summary['seed']}) =="]
  for g in list(groups) + ['all']:
    if g in final:
      vals = ', '.join(f'{k}={v:.4f}' for k, v in sorted(final[g].items())
                       if isinstance(v, (int, float)))
      lines.append(f'  {g:>5}: {vals}')
  for g, per_metric in (summary['final'].get('coverage') or {}).items():
    for m, (defined, total) in sorted(per_metric.items()):
      lines.append(f'  note: {g} {m} is the mean over {defined} of {total} '
                   f'silos ({m} is undefined for the others, e.g. a '
                   'one-class test set)')
  if 'gap' in final:
    lines.append(f"  gap (large - small) {metric}: {final['gap'][metric]:.4f}")
  lines.append(f"  best {metric} (all silos): {summary['best']['value']:.4f} "
               f"at round {summary['best']['round']}")
  t = summary['timing_s']
  lines.append(f"  time: compile {t['compile']:.1f}s, steady "
               f"{t['steady']:.1f}s, host between chunks "
               f"{t['host_between_chunks']:.1f}s, wall {t['wall']:.1f}s")
  skipped = summary.get('skipped_updates') or []
  if skipped:
    lines.append(f'  skipped non-finite silo updates: {len(skipped)} (rounds '
                 f"{sorted({e['round'] for e in skipped})}, silos "
                 f"{sorted({e['silo'] for e in skipped})})")
  print('\n'.join(lines))
