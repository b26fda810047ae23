# Copyright 2026 The fedhelp_jax Authors. Licensed under the Apache License 2.0.
"""Trustworthy long runs, end to end through ``run_experiment`` and the CLI.

Kill-and-resume (a real SIGKILL of ``python -m experiments.run``),
determinism, non-finite detection and bad-input validation on a tiny
PneumoniaMNIST federation (``tests/tiny_config.py``). Select them with
``pytest -k resume``, ``-k determinis``, ``-k nan`` or ``-k bad_config``.
"""

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import jax
from jax.experimental.compilation_cache import compilation_cache
import ml_collections
import numpy as np
import orbax.checkpoint as ocp
import pytest

from experiments import plot
from fedhelp_jax import algorithms
from fedhelp_jax import checkpoint as ckpt_lib
from fedhelp_jax import engine
from fedhelp_jax import experiment
from fedhelp_jax import reporting
from fedhelp_jax import sweep
from fedhelp_jax import validate
from tests import conftest
from tests import tiny_config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = os.path.join('tests', 'tiny_config.py')
ROUNDS = tiny_config.ROUNDS
# The tiny federation: silo 0 is the large one, silos 1-3 the small ones.
BAD_GROUP, BAD_INDEX, BAD_SILO = 'small', 1, 2


# ---------------------------------------------------------------------------
# Helpers.
# ---------------------------------------------------------------------------


def _cli(workdir, *flags):
  return [sys.executable, '-m', 'experiments.run', f'--config={TINY}',
          f'--workdir={workdir}', *flags]


def _steps(ckpt_dir) -> list[int]:
  """Finalised orbax steps (temporary directories have other names)."""
  if not os.path.isdir(ckpt_dir):
    return []
  return sorted(int(d) for d in os.listdir(ckpt_dir) if d.isdigit())


def _restore(workdir, step):
  manager = ocp.CheckpointManager(os.path.join(workdir, 'checkpoints'))
  try:
    return manager.restore(step, args=ocp.args.StandardRestore())
  finally:
    manager.close()


def _assert_trees_equal(a, b):
  leaves_a, tree_a = jax.tree.flatten(a)
  leaves_b, tree_b = jax.tree.flatten(b)
  assert tree_a == tree_b
  for x, y in zip(leaves_a, leaves_b):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def _dump(x) -> str:
  """Exact comparison key (JSON writes floats round-trip exact; NaN, which
  result files write as null, compares equal to null)."""
  return json.dumps(reporting.strict(x), sort_keys=True)


def _history(workdir) -> list[str]:
  """metrics.jsonl without wall-clock fields."""
  records = reporting.read_jsonl(os.path.join(workdir, 'metrics.jsonl'))
  return [_dump({k: v for k, v in r.items() if k != 'elapsed_s'})
          for r in records]


def _rounds_logged(workdir) -> list[int]:
  path = os.path.join(workdir, 'metrics.jsonl')
  return [r['round'] for r in reporting.read_jsonl(path)]


def _tiny(algorithm=None, **overrides) -> ml_collections.ConfigDict:
  config = tiny_config.get_config(algorithm)
  for key, value in overrides.items():
    sweep.set_field(config, key, value)
  return config


def _poison(monkeypatch, every_silo=False):
  """Makes one small silo's (or every silo's) training images NaN.

  ``validate_federation`` rejects NaN pixels (tested below), so the check is
  bypassed here to get a silo whose training really goes non-finite inside
  the compiled round.
  """
  build = experiment.build_federation

  def poisoned(config, raw):
    fed, info = build(config, raw)
    assert info['groups'][BAD_GROUP][BAD_INDEX] == BAD_SILO
    for g in fed:
      if g == BAD_GROUP or every_silo:
        x = fed[g]['x'].copy()
        x[slice(None) if every_silo else BAD_INDEX] = np.nan
        fed[g]['x'] = x
    return fed, info

  monkeypatch.setattr(experiment, 'build_federation', poisoned)
  monkeypatch.setattr(validate, 'validate_federation', lambda fed, task: None)


@contextlib.contextmanager
def _persistent_cache(cli_env):
  """In-process runs inside this block share the CLI runs' compile cache.

  Only to save time where compilation is not what a test checks; the
  determinism test compiles its first run from scratch.
  """
  names = ('jax_compilation_cache_dir',
           'jax_persistent_cache_min_compile_time_secs',
           'jax_persistent_cache_min_entry_size_bytes')
  old = {n: getattr(jax.config, n) for n in names}
  jax.config.update(names[0], cli_env['JAX_COMPILATION_CACHE_DIR'])
  jax.config.update(names[1], 0.0)
  jax.config.update(names[2], 0)
  compilation_cache.reset_cache()
  try:
    yield
  finally:
    for n, v in old.items():
      jax.config.update(n, v)
    compilation_cache.reset_cache()


@pytest.fixture(scope='module')
def cli_env(tmp_path_factory):
  # A shared persistent compilation cache: the CLI runs after the first skip
  # compilation (same programs, same numbers, less time).
  cache = tmp_path_factory.mktemp('jax_cache')
  # One host device, as in this process: the tests resume CLI runs here
  # (a checkpoint holds the silos laid out for its device count).
  return dict(os.environ, JAX_PLATFORMS='cpu', FEDHELP_HOST_DEVICES='1',
              JAX_COMPILATION_CACHE_DIR=str(cache),
              JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS='0',
              JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES='0')


@pytest.fixture
def cached(cli_env):
  with _persistent_cache(cli_env):
    yield


@pytest.fixture(scope='module')
def reference_run(tmp_path_factory, cli_env):
  """An uninterrupted CLI run of the tiny config: ``(workdir, summary)``."""
  workdir = tmp_path_factory.mktemp('reference')
  done = subprocess.run(_cli(workdir), cwd=ROOT, env=cli_env, text=True,
                        capture_output=True, timeout=600, check=False)
  assert done.returncode == 0, done.stdout + done.stderr[-3000:]
  with open(os.path.join(workdir, 'summary.json')) as f:
    return str(workdir), json.load(f)


# ---------------------------------------------------------------------------
# Checkpoint and resume.
# ---------------------------------------------------------------------------


def test_resume_after_sigkill_is_bit_exact(reference_run, cli_env, tmp_path):
  ref_dir, ref_summary = reference_run
  workdir = str(tmp_path / 'killed')
  ckpt_dir = os.path.join(workdir, 'checkpoints')
  log_path = tmp_path / 'killed.log'
  with open(log_path, 'w') as log:
    proc = subprocess.Popen(_cli(workdir), cwd=ROOT, env=cli_env,
                            stdout=log, stderr=subprocess.STDOUT)
    try:
      deadline = time.monotonic() + 300
      # Kill right after the first checkpoint: ROUNDS - 1 rounds are left,
      # each with an evaluation and a checkpoint, so it cannot finish first.
      while not _steps(ckpt_dir):
        assert proc.poll() is None, log_path.read_text()[-3000:]
        assert time.monotonic() < deadline, 'no checkpoint within 300 s'
        time.sleep(0.005)
      proc.send_signal(signal.SIGKILL)
    finally:
      if proc.poll() is None:
        proc.kill()  # Cleanup if an assertion above failed.
      proc.wait(timeout=60)
  assert proc.returncode == -signal.SIGKILL, (
      'the run finished before it was killed:\n' + log_path.read_text())
  killed_at = _steps(ckpt_dir)[-1]
  assert 1 <= killed_at < ROUNDS
  assert not os.path.exists(os.path.join(workdir, 'summary.json'))

  # The same command again resumes automatically and finishes.
  done = subprocess.run(_cli(workdir), cwd=ROOT, env=cli_env, text=True,
                        capture_output=True, timeout=600, check=False)
  assert done.returncode == 0, done.stdout + done.stderr[-3000:]
  assert f'resumed from round {killed_at}' in done.stdout
  with open(os.path.join(workdir, 'summary.json')) as f:
    summary = json.load(f)
  assert summary['resumed_from_round'] == killed_at
  # Bit-exact: per-silo metrics of every round, the best round and the
  # final state (server, every silo, RNG, round counter).
  assert _dump(summary['final']) == _dump(ref_summary['final'])
  assert summary['best'] == ref_summary['best']
  assert _rounds_logged(workdir) == list(range(1, ROUNDS + 1))
  assert _history(workdir) == _history(ref_dir)
  _assert_trees_equal(_restore(workdir, ROUNDS), _restore(ref_dir, ROUNDS))
  # Keep-k: only the last checkpoint_keep (2) steps remain, no temp dirs.
  assert sorted(os.listdir(ckpt_dir)) == [str(ROUNDS - 1), str(ROUNDS),
                                          'config_hash.json']


def test_resume_refuses_changed_config(reference_run):
  ref_dir, _ = reference_run
  before = _steps(os.path.join(ref_dir, 'checkpoints'))
  config = _tiny(**{'hparams.lr': 0.1})
  with pytest.raises(ckpt_lib.ConfigMismatchError) as err:
    experiment.run_experiment(config, ref_dir)
  msg = str(err.value)
  assert 'config.hparams.lr: 0.05 -> 0.1' in msg
  assert 'Fix: use a new --workdir' in msg and '--noresume' in msg
  assert _steps(os.path.join(ref_dir, 'checkpoints')) == before


@pytest.mark.parametrize('flag, expected', [
    ('--config.round=3', 'FlagError: \'round\' Did you mean "rounds"'),
    ('--config.partition.num_lage=3', 'Did you mean "num_large"'),
    ('--config.rounds=abc', 'FlagError: flag --config.rounds=abc'),
])
def test_cli_flag_errors_are_one_line(flag, expected, cli_env, tmp_path):
  done = subprocess.run(_cli(tmp_path / 'w', flag), cwd=ROOT, env=cli_env,
                        text=True, capture_output=True, timeout=300,
                        check=False)
  assert done.returncode == 1
  assert expected in done.stderr
  assert 'Traceback' not in done.stderr


def test_cli_bad_source_file_is_one_line_with_the_md5_flag(cli_env,
                                                           tmp_path):
  bad = tmp_path / 'files'
  bad.mkdir()
  (bad / 'pneumoniamnist.npz').write_bytes(b'not an npz')
  done = subprocess.run(
      _cli(tmp_path / 'w', f'--config.dataset.manual_dir={bad}'), cwd=ROOT,
      env=cli_env, text=True, capture_output=True, timeout=300, check=False)
  assert done.returncode == 1
  assert 'DataError: MD5 mismatch' in done.stderr
  assert '--config.dataset.expected_md5' in done.stderr
  assert 'Traceback' not in done.stderr


def test_cli_truncated_cache_names_the_directory_to_delete(cli_env,
                                                           tmp_path):
  from fedhelp_jax.data import load  # pylint: disable=g-import-not-at-top
  data_dir = tmp_path / 'tfds'
  load.load_medmnist('pneumonia', data_dir=str(data_dir))  # Prepare it.
  shards = list(data_dir.glob('fedhelp_medmnist/pneumonia/*/*train*'))
  assert shards
  with open(shards[0], 'r+b') as f:
    f.truncate(5000)
  done = subprocess.run(
      _cli(tmp_path / 'w', f'--config.dataset.data_dir={data_dir}'),
      cwd=ROOT, env=cli_env, text=True, capture_output=True, timeout=300,
      check=False)
  assert done.returncode == 1
  assert 'DataCacheError: the prepared dataset cache' in done.stderr
  assert str(data_dir) in done.stderr and 'delete that directory' in (
      done.stderr)
  assert 'Traceback' not in done.stderr


def test_cli_help_lists_configs_and_algorithms(cli_env):
  done = subprocess.run([sys.executable, '-m', 'experiments.run', '--help'],
                        cwd=ROOT, env=cli_env, text=True,
                        capture_output=True, timeout=300, check=False)
  assert done.returncode == 0, done.stderr[-2000:]
  assert 'experiments/configs/fedhelp_cls_authors.py' in done.stdout
  for name in ('fedhelp', 'fedavg', 'pfednet', 'ditto'):
    assert name in done.stdout
  assert 'dataset.manual_dir' in done.stdout


def test_resume_flag_without_checkpoint_errors(cli_env, tmp_path):
  done = subprocess.run(_cli(tmp_path / 'empty', '--resume'), cwd=ROOT,
                        env=cli_env, text=True, capture_output=True,
                        timeout=300, check=False)
  assert done.returncode == 1
  # One line naming the problem and the fix, no traceback.
  assert 'FileNotFoundError: --resume was given but' in done.stderr
  assert 'has no checkpoint. Fix: drop --resume' in done.stderr
  assert 'Traceback' not in done.stderr


# ditto carries per-silo personal models and optimizer state; the others run
# with `pytest -m slow` (fedhelp trains a small FM proxy first).
_FAST = ('ditto',)


@pytest.mark.parametrize('name', [
    pytest.param(n, marks=() if n in _FAST else pytest.mark.slow)
    for n in algorithms.names()])
def test_resume_in_process_is_bit_exact(name, tmp_path, cached):
  del cached
  fm_cache = str(tmp_path / 'fm_cache')
  config = lambda rounds: _tiny(name, rounds=rounds,
                                **{'fm.cache_dir': fm_cache})
  full = experiment.run_experiment(config(2), str(tmp_path / 'full'))
  part = str(tmp_path / 'part')
  experiment.run_experiment(config(1), part)
  resumed = experiment.run_experiment(config(2), part)  # Extends the run.
  assert resumed['resumed_from_round'] == 1
  assert _dump(resumed['final']) == _dump(full['final'])
  assert _history(part) == _history(tmp_path / 'full')
  _assert_trees_equal(_restore(part, 2), _restore(tmp_path / 'full', 2))


def test_sampling_resume_in_process_is_bit_exact(tmp_path, cached, capsys):
  """Client sampling (2 of the 3 small silos a round) stops and resumes
  bit-exactly: the draws depend only on (seed, round, group)."""
  del cached
  config = lambda rounds: _tiny('fedavg', rounds=rounds,
                                **{'clients_per_round.small': 2})
  full = experiment.run_experiment(config(3), str(tmp_path / 'full'))
  assert "client sampling: {'small': 2} silos drawn" in capsys.readouterr().out
  part = str(tmp_path / 'part')
  experiment.run_experiment(config(1), part)
  resumed = experiment.run_experiment(config(3), part)
  assert resumed['resumed_from_round'] == 1
  assert _dump(resumed['final']) == _dump(full['final'])
  assert _history(part) == _history(tmp_path / 'full')
  _assert_trees_equal(_restore(part, 3), _restore(tmp_path / 'full', 3))
  # Sampling was on: every silo trained gives another result.
  every = experiment.run_experiment(_tiny('fedavg', rounds=3),
                                    str(tmp_path / 'every'))
  assert _dump(every['final']) != _dump(full['final'])


def test_rerun_of_a_finished_run_keeps_its_timings(reference_run, tmp_path):
  ref_dir, ref_summary = reference_run
  workdir = str(tmp_path / 'done')
  shutil.copytree(ref_dir, workdir)
  summary = experiment.run_experiment(_tiny(), workdir)
  assert summary['already_complete'] and not ref_summary['already_complete']
  assert summary['timing_s'] == ref_summary['timing_s']
  assert summary['timing_s']['steady'] > 0
  assert _dump(summary['final']) == _dump(ref_summary['final'])


# ---------------------------------------------------------------------------
# Determinism.
# ---------------------------------------------------------------------------


def test_determinism_same_seed_bit_exact(reference_run, cli_env, tmp_path):
  ref_dir, ref_summary = reference_run
  # In-process and compiled afresh here; a separate CLI process for the
  # reference.
  summary = experiment.run_experiment(_tiny(), str(tmp_path / 'same'))
  assert _dump(summary['final']) == _dump(ref_summary['final'])
  assert _history(tmp_path / 'same') == _history(ref_dir)
  _assert_trees_equal(_restore(tmp_path / 'same', ROUNDS),
                      _restore(ref_dir, ROUNDS))
  # A different seed gives different numbers from the first round on.
  with _persistent_cache(cli_env):
    experiment.run_experiment(_tiny(seed=1, rounds=1), str(tmp_path / 'other'))
  first = lambda d: json.loads(_history(d)[0])['train_loss']
  assert first(tmp_path / 'other') != first(ref_dir)


# ---------------------------------------------------------------------------
# Non-finite losses and updates.
# ---------------------------------------------------------------------------


def test_nan_stops_run_naming_round_silo_and_keeps_last_good_checkpoint(
    reference_run, tmp_path, monkeypatch, cached):
  del cached
  ref_dir, _ = reference_run
  workdir = str(tmp_path / 'nan')
  shutil.copytree(ref_dir, workdir)  # A healthy run to round ROUNDS ...
  _poison(monkeypatch)  # ... whose silo 2 turns NaN when it is extended.
  with pytest.raises(experiment.NonFiniteError) as err:
    experiment.run_experiment(_tiny(rounds=ROUNDS + 2), workdir)
  msg = str(err.value)
  print(msg)
  assert msg.startswith(f"round {ROUNDS + 1}: silo {BAD_SILO} (group "
                        f"'{BAD_GROUP}', index {BAD_INDEX}) produced a "
                        'non-finite train_loss, train_loss=nan.')
  assert f'last good checkpoint (round {ROUNDS}) is kept' in msg
  assert '--config.nonfinite=skip' in msg
  # The last good checkpoint is the untouched round-ROUNDS state.
  assert _steps(os.path.join(workdir, 'checkpoints'))[-1] == ROUNDS
  _assert_trees_equal(_restore(workdir, ROUNDS), _restore(ref_dir, ROUNDS))
  assert _rounds_logged(workdir) == list(range(1, ROUNDS + 1))

  # Going on with nonfinite='skip' resumes from it and drops silo 2.
  summary = experiment.run_experiment(
      _tiny(rounds=ROUNDS + 2, nonfinite='skip'), workdir)
  assert summary['resumed_from_round'] == ROUNDS
  records = reporting.read_jsonl(os.path.join(workdir, 'metrics.jsonl'))
  assert [r['round'] for r in records] == list(range(1, ROUNDS + 3))
  for r in records[ROUNDS:]:
    assert [(e['round'], e['silo'], e['quantity']) for e in r['skipped']] == [
        (r['round'], BAD_SILO, 'train_loss')]
    assert np.isfinite(r['train_loss'][BAD_GROUP])
  assert [(e['round'], e['silo']) for e in summary['skipped_updates']] == [
      (ROUNDS + 1, BAD_SILO), (ROUNDS + 2, BAD_SILO)]
  final = _restore(workdir, ROUNDS + 2)
  assert all(np.all(np.isfinite(x)) for x in jax.tree.leaves(final))


def test_nan_skip_drops_only_that_silos_update(tmp_path, monkeypatch, cached):
  del cached
  config = _tiny(rounds=2, eval_every=2, nonfinite='skip')
  # Reference: clean data, but the silo has aggregation weight 0.
  weights_fn = experiment.aggregation_weights

  def zero_weight(fed, scheme):
    w = weights_fn(fed, scheme)
    w[BAD_GROUP] = w[BAD_GROUP].copy()
    w[BAD_GROUP][BAD_INDEX] = 0.0
    return w

  with monkeypatch.context() as m:
    m.setattr(experiment, 'aggregation_weights', zero_weight)
    zero = experiment.run_experiment(config, str(tmp_path / 'zero'))
  _poison(monkeypatch)
  skip = experiment.run_experiment(config, str(tmp_path / 'skip'))
  assert _dump(skip['final']) == _dump(zero['final'])
  a, b = _restore(tmp_path / 'skip', 2), _restore(tmp_path / 'zero', 2)
  _assert_trees_equal(a['server'], b['server'])
  # The skipped silo kept its previous (finite) state; the others trained
  # exactly as in the reference.
  for g in a['clients']:
    leaves = jax.tree.leaves(a['clients'][g])
    if not leaves:  # FedAvg's silos keep no state (no BatchNorm here).
      continue
    keep = np.arange(len(leaves[0]))
    if g == BAD_GROUP:
      keep = keep[keep != BAD_INDEX]
    _assert_trees_equal(jax.tree.map(lambda x, k=keep: x[k], a['clients'][g]),
                        jax.tree.map(lambda x, k=keep: x[k], b['clients'][g]))
  assert all(np.all(np.isfinite(x)) for x in jax.tree.leaves(a))


def test_nan_skip_stops_when_every_silo_is_bad(tmp_path, monkeypatch, cached):
  del cached
  _poison(monkeypatch, every_silo=True)
  with pytest.raises(experiment.NonFiniteError) as err:
    experiment.run_experiment(_tiny(rounds=2, eval_every=2, nonfinite='skip'),
                              str(tmp_path))
  assert str(err.value).startswith(
      "round 1: every silo produced a non-finite train_loss or update, so "
      "nonfinite='skip' has nothing left to aggregate. No checkpoint was "
      'written yet.')


# ---------------------------------------------------------------------------
# Bad inputs, reported before anything is compiled.
# ---------------------------------------------------------------------------


def _set(path, value):
  def mutate(d):
    *parents, leaf = path.split('.')
    for p in parents:
      d = d[p]
    d[leaf] = value
  return mutate


def _too_many_devices(d):
  d['num_devices'] = jax.device_count() + 1


def _fml_zero_temperature(d):
  d['algorithm'] = 'fml'
  d['hparams']['temperature'] = 0.0


# (id, config mutation on a plain dict, substrings of the message).
BAD_CONFIGS = [
    ('unknown_algorithm', _set('algorithm', 'fedavgg'),
     ["config.algorithm: unknown algorithm 'fedavgg'. Did you mean 'fedavg'?",
      'Fix: pick a registered algorithm.']),
    ('negative_silo_size', _set('partition.large_size', -64),
     ['config.partition.large_size: must be >= 1, got -64.', 'Fix:']),
    ('more_silos_than_examples', _set('partition.num_small', 400),
     ['config.partition: num_large=1 x large_size=64 + num_small=400 x '
      'max(small_size)=24 = 9664 training examples may be needed, but '
      'medmnist/pneumonia has',
      'Fix: lower partition.large_size']),
    ('small_size_min_above_max', _set('partition.small_size', (24, 16)),
     ['config.partition.small_size: expected (min, max), got (24, 16).',
      'Fix: write a pair with min <= max.']),
    ('wrong_model_for_task', _set('model.name', 'unet'),
     ["config.model.name: 'unet' cannot be used for the classification task.",
      "Fix: use one of ['cnn', 'resnet', 'logreg']."]),
    ('unknown_strategy', _set('strategy', 'vamp'),
     ["config.strategy: unknown value 'vamp' (did you mean 'vmap'?).",
      'Fix: use one of']),
    ('zero_learning_rate', _set('hparams.lr', 0.0),
     ['config.hparams.lr: must be > 0, got 0.0.', 'Fix:']),
    ('zero_temperature', _fml_zero_temperature,
     ['config.hparams.temperature: must be > 0, got 0.0.', 'Fix:']),
    ('misspelled_hparam', _set('hparams.lrr', 0.05),
     ["config.hparams.lrr: no algorithm has this hyperparameter (did you mean "
      "'lr'?)", 'Fix:']),
    ('string_for_number_hparam', _set('hparams.lr', '0.05'),
     ["config.hparams.lr: expected a number, got '0.05' (str).", 'Fix:']),
    ('string_for_integer_field', _set('rounds', '30'),
     ["config.rounds: expected an integer, got '30' (str).", 'Fix:']),
    ('local_steps_and_epochs', _set('local.local_epochs', 1.0),
     ['config.local: set exactly one of local_steps and local_epochs.',
      'Fix: set the other one to None.']),
    ('one_class', _set('num_classes', 1),
     ['config.num_classes: must be >= 2, got 1.', 'Fix:']),
    ('too_many_devices', _too_many_devices,
     ['config.num_devices: asks for', 'Fix: set it to at most',
      'xla_force_host_platform_device_count']),
]


def _group(rng, sizes, seg=False):
  return conftest.make_group(rng, sizes, seg=seg)


def _fed(seg=False):
  rng = np.random.default_rng(0)
  return {'large': _group(rng, [24, 20], seg), 'small': _group(rng, [5, 7, 3],
                                                               seg)}


def _data_case(seg, mutate):
  def make():
    fed = _fed(seg)
    mutate(fed)
    return fed
  return seg, make


def _nan_pixels(fed):
  fed['small']['x'][1, 2, 3, 4] = np.nan


def _label_out_of_range(fed):
  fed['large']['y'][0, 0] = 2


def _mask_value_2(fed):
  fed['small']['y'][0, 0, 0, 0] = 2


def _float_mask(fed):
  fed['large']['y'] = fed['large']['y'].astype(np.float32) * 0.5


def _empty_silo(fed):
  fed['small']['n'][1] = 0


def _short_labels(fed):
  fed['large']['y'] = fed['large']['y'][:, :10]


def _test_shape(fed):
  fed['small']['test_x'] = fed['small']['test_x'][:, :, :4]


# (id, (segmentation?, federation factory), substrings of the message).
BAD_DATA = [
    ('nan_pixels', _data_case(False, _nan_pixels),
     ["data['small']['x']: silos [1] contain NaN or inf values.", 'Fix:']),
    ('label_out_of_range', _data_case(False, _label_out_of_range),
     ["data['large']['y']: labels must lie in [0, 1] (num_classes=2); found "
      'range [0, 2].', 'Fix: fix config.num_classes or the data.']),
    ('mask_not_binary', _data_case(True, _mask_value_2),
     ["data['small']['y']: mask values must lie in [0, 1]", 'Fix:']),
    ('float_mask', _data_case(True, _float_mask),
     ["data['large']['y']: mask values must be integers, got float32.",
      'Fix: cast them']),
    ('empty_silo', _data_case(False, _empty_silo),
     ["data['small']: silos [1] have no training examples.", 'Fix:']),
    ('labels_shape_mismatch', _data_case(False, _short_labels),
     ["data['large']: x (2, 24, 8, 8, 1) and y (2, 10) disagree on examples "
      'per silo.', 'Fix:']),
    ('test_shape_mismatch', _data_case(False, _test_shape),
     ["data['small']: test_x examples (4, 8, 1) differ from training "
      'examples (8, 8, 1).', 'Fix:']),
]


@pytest.fixture
def no_compile(monkeypatch):
  """Fails the test if a model is initialised or anything is compiled."""
  def boom(*args, **kwargs):
    del args, kwargs
    raise AssertionError('reached model init / compilation before the '
                         'bad input was reported')
  for name in ('init_state', 'build_round', 'run_rounds', 'build_predict'):
    monkeypatch.setattr(engine, name, boom)
  monkeypatch.setattr(jax, 'jit', boom)


def bad_config_message(mutate, workdir) -> str:
  """The error ``run_experiment`` raises for a mutated tiny config."""
  plain = tiny_config.get_config().to_dict()
  mutate(plain)
  # From a plain dict, as a config file built from JSON/YAML would be (a
  # ConfigDict would already refuse a str in an int field).
  with pytest.raises(validate.ConfigError) as err:
    experiment.run_experiment(ml_collections.ConfigDict(plain), workdir)
  return str(err.value)


def bad_data_message(case, workdir, monkeypatch) -> str:
  seg, make = case
  config = _tiny()
  if seg:
    config.task = 'segmentation'
    config.model = ml_collections.ConfigDict({'name': 'unet'})
  fed = make()
  info = {'groups': {'large': [0, 1], 'small': [2, 3, 4]}}
  monkeypatch.setattr(experiment, 'load_raw', lambda config: {})
  monkeypatch.setattr(experiment, 'build_federation',
                      lambda config, raw: (fed, info))
  with pytest.raises(validate.DataError) as err:
    experiment.run_experiment(config, workdir)
  return str(err.value)


@pytest.mark.parametrize('mutate,expected', [c[1:] for c in BAD_CONFIGS],
                         ids=[c[0] for c in BAD_CONFIGS])
def test_bad_config_is_reported_before_compile(mutate, expected, tmp_path,
                                               no_compile):
  del no_compile
  msg = bad_config_message(mutate, str(tmp_path))
  for part in expected:
    assert part in msg, msg


@pytest.mark.parametrize('case,expected', [c[1:] for c in BAD_DATA],
                         ids=[c[0] for c in BAD_DATA])
def test_bad_config_data_is_reported_before_compile(case, expected, tmp_path,
                                                    monkeypatch, no_compile):
  del no_compile
  msg = bad_data_message(case, str(tmp_path), monkeypatch)
  for part in expected:
    assert part in msg, msg


# ---------------------------------------------------------------------------
# Plots.
# ---------------------------------------------------------------------------


def test_plot_writes_standard_figures(reference_run, tmp_path):
  ref_dir, _ = reference_run
  paths = plot.save_figures(ref_dir, str(tmp_path / 'figs'))
  assert sorted(os.path.basename(p) for p in paths) == [
      'curves.png', 'partition.png', 'silos.png']
  for p in paths:
    with open(p, 'rb') as f:
      assert f.read(8) == b'\x89PNG\r\n\x1a\n'
    assert os.path.getsize(p) > 5000
