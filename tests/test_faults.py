# Copyright 2026 The fedhelp_jax Authors. Licensed under the Apache License 2.0.
"""Real faults of long runs, each met through the CLI or ``run_experiment``.

Unreadable checkpoints (array files truncated as a crash leaves them).
Select them with ``pytest -k fault``. The tiny federation is
``tests/tiny_config.py``; the CLI runs share the test run's compilation
cache (``tests/conftest.py``).
"""

import glob
import os
import shutil
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = os.path.join('tests', 'tiny_config.py')


def _cli(workdir, *flags):
  return [sys.executable, '-m', 'experiments.run', f'--config={TINY}',
          f'--workdir={workdir}', *flags]


def _run(env, workdir, *flags, timeout=300):
  return subprocess.run(_cli(workdir, *flags), cwd=ROOT, env=env, text=True,
                        capture_output=True, timeout=timeout, check=False)


def _steps(workdir) -> list[int]:
  ckpt_dir = os.path.join(workdir, 'checkpoints')
  if not os.path.isdir(ckpt_dir):
    return []
  return sorted(int(d) for d in os.listdir(ckpt_dir) if d.isdigit())


def _rounds_logged(workdir) -> list[int]:
  from fedhelp_jax import reporting  # pylint: disable=g-import-not-at-top
  path = os.path.join(workdir, 'metrics.jsonl')
  return [r['round'] for r in reporting.read_jsonl(path)]


def _one_line_error(done, kind):
  """The stderr line starting with ``kind:``; asserts there is no
  traceback and exactly one such line."""
  lines = [l for l in done.stderr.splitlines() if l.startswith(f'{kind}:')]
  assert len(lines) == 1, done.stdout[-2000:] + done.stderr[-3000:]
  assert 'Traceback' not in done.stderr, done.stderr[-3000:]
  return lines[0]


@pytest.fixture(scope='module')
def cli_env():
  # One host device, as in this process; the compilation cache is the test
  # run's (conftest), shared with the other test files.
  return dict(os.environ, JAX_PLATFORMS='cpu', FEDHELP_HOST_DEVICES='1')


@pytest.fixture(scope='module')
def two_round_run(tmp_path_factory, cli_env):
  """A finished 2-round CLI run (checkpoints of rounds 1 and 2)."""
  workdir = str(tmp_path_factory.mktemp('two_rounds'))
  done = _run(cli_env, workdir, '--config.rounds=2')
  assert done.returncode == 0, done.stdout + done.stderr[-3000:]
  assert _steps(workdir) == [1, 2]
  return workdir


# ---------------------------------------------------------------------------
# 1. Unreadable checkpoints.
# ---------------------------------------------------------------------------


def _truncate_arrays(workdir, step):
  """Cuts every array data file of checkpoint ``step`` to half its size,
  as a crash on a network filesystem leaves them; returns how many."""
  files = [f for f in glob.glob(os.path.join(
      workdir, 'checkpoints', str(step), '**', 'd', '*'), recursive=True)
           if os.path.isfile(f)]
  assert files, f'no array data files under checkpoint {step}'
  for f in files:
    with open(f, 'r+b') as fh:
      fh.truncate(os.path.getsize(f) // 2)
  return len(files)


def test_fault_unreadable_checkpoint_is_moved_aside_and_older_one_resumed(
    two_round_run, cli_env, tmp_path):
  workdir = str(tmp_path / 'run')
  shutil.copytree(two_round_run, workdir)
  _truncate_arrays(workdir, 2)
  done = _run(cli_env, workdir, '--config.rounds=3')
  assert done.returncode == 0, done.stdout + done.stderr[-3000:]
  ckpt_dir = os.path.join(workdir, 'checkpoints')
  moved = os.path.join(ckpt_dir, '2.unreadable-1')
  said = [l for l in done.stdout.splitlines() if 'cannot be read' in l]
  assert len(said) == 1, done.stdout
  assert said[0].startswith(
      f'[fedhelp_jax] the round 2 checkpoint in {ckpt_dir} cannot be read (')
  assert said[0].endswith(f'); moved aside to {moved}')
  assert (f'resumed from round 1 ({ckpt_dir}, the newest readable '
          'checkpoint)') in done.stdout
  assert 'Traceback' not in done.stderr
  # Kept, not deleted; the run went on from round 1 and logged each round
  # once.
  assert os.path.isdir(moved)
  assert _steps(workdir) == [2, 3]
  assert _rounds_logged(workdir) == [1, 2, 3]


def test_fault_no_readable_checkpoint_exits_with_one_line(
    two_round_run, cli_env, tmp_path):
  workdir = str(tmp_path / 'run')
  shutil.copytree(two_round_run, workdir)
  _truncate_arrays(workdir, 1)
  _truncate_arrays(workdir, 2)
  done = _run(cli_env, workdir, '--config.rounds=3')
  assert done.returncode == 1
  line = _one_line_error(done, 'CheckpointUnreadableError')
  ckpt_dir = os.path.join(workdir, 'checkpoints')
  assert line.startswith(
      f'CheckpointUnreadableError: no checkpoint in {ckpt_dir} can be read '
      '(round 2: ')
  assert '; round 1: ' in line
  assert line.endswith(
      'Fix: pass --noresume (resume=False) to start over there, or delete '
      f'{ckpt_dir} (or move it away to keep it).')
  # Nothing is moved or deleted when nothing can be resumed.
  assert _steps(workdir) == [1, 2]
  assert not glob.glob(os.path.join(ckpt_dir, '*.unreadable-*'))
