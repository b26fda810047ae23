# Copyright 2026 The fedhelp_jax Authors. Licensed under the Apache License 2.0.
"""pFedNet bytes on the wire (host, numpy): run-length + zlib encoding.

``encode`` / ``decode`` are bit exact; ``encoded_bytes``, ``raw_bytes`` and
``compression_ratio`` measure an upload.
"""

import zlib

import numpy as np


def _varint_encode(x: np.ndarray) -> bytes:
  """Unsigned LEB128 of a non-negative integer array, concatenated."""
  x = np.asarray(x, np.uint64).reshape(-1)
  if x.size == 0:
    return b''
  groups = np.ones(x.shape, np.int64)
  for s in range(1, 10):
    groups += (x >> np.uint64(7 * s)) > 0
  cols = np.arange(10)
  chunks = (x[:, None] >> (np.uint64(7) * cols.astype(np.uint64))) & np.uint64(
      0x7F)
  more = cols[None, :] < (groups[:, None] - 1)
  byte = chunks | np.where(more, np.uint64(0x80), np.uint64(0))
  valid = cols[None, :] < groups[:, None]
  return byte[valid].astype(np.uint8).tobytes()


def _varint_decode(buf: np.ndarray, count: int) -> tuple[np.ndarray, int]:
  """Decodes ``count`` LEB128 integers from ``buf``; returns (values, used)."""
  if count == 0:
    return np.zeros((0,), np.uint64), 0
  b = np.asarray(buf, np.uint8)
  last = np.nonzero((b & 0x80) == 0)[0]
  if last.size < count:
    raise ValueError('Truncated varint stream.')
  used = int(last[count - 1]) + 1
  b = b[:used].astype(np.uint64)
  ends = last[:count]
  starts = np.concatenate([[0], ends[:-1] + 1])
  owner = np.repeat(np.arange(count), ends - starts + 1)
  shift = np.arange(used) - starts[owner]
  vals = np.zeros(count, np.uint64)
  np.add.at(vals, owner, (b & np.uint64(0x7F)) << (np.uint64(7) *
                                                    shift.astype(np.uint64)))
  return vals, used


def encode(v: np.ndarray) -> bytes:
  """Run-length + deflate encoding of a float32 vector (what is sent).

  Layout before ``zlib.compress(level=9)``: varint number of runs, then the
  run values as little-endian float32, then the run lengths as varints.
  Runs compare bit patterns, so decoding is bit-exact (signed zeros and
  NaNs included).

  Args:
    v: array of any shape; flattened (row-major) and cast to float32.

  Returns:
    The payload bytes.
  """
  x = np.ascontiguousarray(np.asarray(v, np.float32).reshape(-1))
  bits = x.view(np.uint32)
  if x.size:
    starts = np.concatenate([[0], np.nonzero(bits[1:] != bits[:-1])[0] + 1])
    lengths = np.diff(np.concatenate([starts, [x.size]]))
  else:
    starts = lengths = np.zeros((0,), np.int64)
  payload = (_varint_encode(np.array([starts.size])) +
             x[starts].astype('<f4').tobytes() + _varint_encode(lengths))
  return zlib.compress(payload, 9)


def decode(data: bytes) -> np.ndarray:
  """Inverse of ``encode``: the flattened float32 vector."""
  buf = np.frombuffer(zlib.decompress(data), np.uint8)
  (num_runs,), used = _varint_decode(buf, 1)
  num_runs = int(num_runs)
  values = np.frombuffer(buf[used:used + 4 * num_runs].tobytes(), '<f4')
  lengths, _ = _varint_decode(buf[used + 4 * num_runs:], num_runs)
  return np.repeat(values.astype(np.float32), lengths.astype(np.int64))


def encoded_bytes(v: np.ndarray) -> int:
  """Size in bytes of ``encode(v)``."""
  return len(encode(v))


def raw_bytes(v: np.ndarray) -> int:
  """Size of ``v`` sent as raw float32: ``4 * v.size``."""
  return 4 * int(np.asarray(v).size)


def compression_ratio(v: np.ndarray) -> float:
  """``raw_bytes(v) / encoded_bytes(v)`` (higher is better)."""
  return raw_bytes(v) / encoded_bytes(v)
