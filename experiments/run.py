# Copyright 2026 The fedhelp_jax Authors. Licensed under the Apache License 2.0.
r"""Runs one federated experiment from a config file.

  python -m experiments.run --config experiments/configs/fedavg_cls.py \
      --workdir runs/fedavg --config.rounds=50

Resumes automatically when ``--workdir`` holds a checkpoint of the same
config; ``--resume`` requires one, ``--noresume`` starts over. Errors a user
can fix (bad config or data, a refused resume, a non-finite round, an
unreadable checkpoint, a full disk, a workdir in use by another run) print
one line naming the problem and the fix, and exit with status 1. SIGTERM or
SIGINT stops the run after the current chunk and its checkpoint, with one
line and status 143 or 130; the same command resumes.

Over several processes (hosts), each runs this same command with
``--coordinator_address=HOST:PORT --num_processes=N --process_id=I``, or
with none of them under SLURM ``srun``, Open MPI ``mpirun`` or on a Cloud
TPU slice (detected); ``python -m experiments.launch_local`` starts N local
processes. Only process 0 prints to stdout.
"""

import sys

from fedhelp_jax import distributed  # Imports no jax.
from fedhelp_jax import host_devices

# Before anything imports jax (the config file below does): on CPU, one host
# device per core, so the client axis can give each core its own silos
# (config.num_devices = 0 shards over every visible device).
_HOST_DEVICES = host_devices.configure()

# pylint: disable=g-import-not-at-top,wrong-import-position
from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags
# pylint: enable=g-import-not-at-top,wrong-import-position


def _exit_one_line(kind: str, error: BaseException) -> None:
  """Prints ``kind: message`` on ONE line to stderr and exits with 1."""
  text = str(error)
  if isinstance(error, (KeyError, AttributeError)) and text[:1] in '"\'':
    text = text.strip('"\'').replace('\\n', ' ').replace("\\'", "'")
  print(f'{kind}: {" ".join(text.split())}', file=sys.stderr)
  # At once, also when other processes wait; nothing prints after the line.
  distributed.exit_now(1, after_report=True)


try:
  # Defining the flag reads ``--config`` and registers the ``--config.FIELD``
  # overrides from sys.argv, so a misspelt field fails right here.
  _CONFIG = config_flags.DEFINE_config_file(
      'config', 'experiments/configs/fedavg_cls.py', 'Experiment config file.')
except (AttributeError, KeyError, TypeError, ValueError) as e:
  _exit_one_line('FlagError', e)
_WORKDIR = flags.DEFINE_string('workdir', None,
                               'Output directory (default runs/<alg>-<hash>).')
_RESUME = flags.DEFINE_boolean(
    'resume', None, 'Require (--resume) or forbid (--noresume) resuming; '
    'default: resume when the workdir has a matching checkpoint.')
_COORDINATOR_ADDRESS = flags.DEFINE_string(
    'coordinator_address', None,
    'HOST:PORT of process 0 in a multi-process run, the same in every '
    'process (with --num_processes and --process_id; give none of the three '
    'to auto-detect SLURM, Open MPI or Cloud TPU).')
_NUM_PROCESSES = flags.DEFINE_integer(
    'num_processes', None, 'How many processes run this experiment together '
    '(1: a single process).')
_PROCESS_ID = flags.DEFINE_integer(
    'process_id', None, 'This process, 0 .. --num_processes - 1.')


def main(argv):
  del argv
  # Orbax logs every checkpoint step at INFO; keep the progress bar readable.
  logging.set_verbosity(logging.WARNING)
  # First: jax.distributed must connect the processes before anything
  # starts a JAX backend (reading the config creates no arrays).
  try:
    processes = distributed.initialize(_COORDINATOR_ADDRESS.value,
                                       _NUM_PROCESSES.value, _PROCESS_ID.value)
  except ValueError as e:
    _exit_one_line('FlagError', e)
  distributed.quiet_non_primary()  # Other processes print only errors.
  # pylint: disable=g-import-not-at-top
  from fedhelp_jax import checkpoint  # Import after flags parse (fast --help).
  from fedhelp_jax import errors
  from fedhelp_jax import experiment
  from fedhelp_jax import faults
  from fedhelp_jax import validate
  from fedhelp_jax.data import load
  # pylint: enable=g-import-not-at-top
  user_errors = (validate.ConfigError, validate.DataError,
                 checkpoint.ConfigMismatchError,
                 checkpoint.CheckpointUnreadableError, errors.DiskFullError,
                 experiment.NonFiniteError, FileNotFoundError,
                 faults.WorkdirLockedError, load.DataCacheError)
  try:
    # Overrides of fields are applied when the config is first read.
    config = _CONFIG.value
    'algorithm' in config  # pylint: disable=pointless-statement
  except (AttributeError, KeyError, TypeError, ValueError, OSError) as e:
    _exit_one_line('FlagError', e)
  print(f'[fedhelp_jax] {processes}')
  print(f'[fedhelp_jax] {_HOST_DEVICES}')
  try:
    experiment.run_experiment(config, _WORKDIR.value, resume=_RESUME.value)
  except user_errors as e:  # The message is the report; no traceback.
    _exit_one_line(type(e).__name__, e)
  except faults.Stopped as e:  # Checkpointed: the same command resumes.
    print(f'[fedhelp_jax] {e}', file=sys.stderr)
    distributed.exit_now(e.exit_status)


def _parse_flags(argv):
  """absl's flag parsing, with override errors as one line (exit 1).

  ``--config.FIELD=VALUE`` overrides are applied while flags are parsed, so a
  misspelt field or a value of the wrong type fails here, before ``main``.
  """
  try:
    return flags.FLAGS(argv)
  except (flags.Error, AttributeError, KeyError, TypeError,
          ValueError) as e:
    _exit_one_line('FlagError', e)


_HELP_FLAGS = ('--help', '-h', '-?', '--helpshort', '--helpfull')
_MAIN_FIELDS = (
    'algorithm', 'rounds', 'eval_every', 'seed', 'hparams.lr',
    'local.batch_size', 'local.local_steps', 'local.local_epochs',
    'local.optimizer', 'aggregation', 'strategy', 'num_devices',
    'dataset.manual_dir', 'dataset.data_dir', 'partition.*', 'fm.*',
    'nonfinite', 'progress')


def usage() -> str:
  """The --help text: flags, config files, algorithms and main fields."""
  import glob  # pylint: disable=g-import-not-at-top
  import os  # pylint: disable=g-import-not-at-top
  from fedhelp_jax import algorithms  # pylint: disable=g-import-not-at-top
  configs = sorted(
      os.path.relpath(p) for p in glob.glob(os.path.join(
          os.path.dirname(os.path.abspath(__file__)), 'configs', '*.py'))
      if not os.path.basename(p).startswith(('_', 'common')))
  pad = ' ' * 29  # The flags' help column.
  return '\n'.join([
      (__doc__ or '').strip(), '',
      'Flags:',
      '  --config=FILE[:ALGORITHM]  experiment config (default '
      'experiments/configs/fedavg_cls.py)',
      '  --config.FIELD=VALUE       override one config field',
      '  --workdir=DIR              output directory (default '
      'runs/<algorithm>-<config hash>)',
      '  --[no]resume               require / forbid resuming',
      '  --coordinator_address=HOST:PORT --num_processes=N --process_id=I',
      pad + 'one of N processes of one run; none of the three:',
      pad + 'auto-detect SLURM, Open MPI, Cloud TPU (N local',
      pad + 'processes: python -m experiments.launch_local)', '',
      'Config files:', *[f'  {c}' for c in configs], '',
      'Algorithms (after the colon, or --config.algorithm=NAME):',
      '  ' + ', '.join(algorithms.names()), '',
      'Main fields: ' + ', '.join(_MAIN_FIELDS), ''])


if __name__ == '__main__':
  if any(a in _HELP_FLAGS for a in sys.argv[1:]):
    print(usage())
    sys.exit(0)
  app.run(main, flags_parser=_parse_flags)
