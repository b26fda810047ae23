# Copyright 2026 The fedhelp_jax Authors. Licensed under the Apache License 2.0.
r"""FedHelp vs baselines: all methods x seeds, results JSON and a figure.

  python -m experiments.fedhelp_table --experiment=cls
  python -m experiments.fedhelp_table --experiment=seg --seeds=3
  python -m experiments.fedhelp_table --experiment=cls --local_epochs=1 \
      --methods=fedhelp,fedavg,local,fml,fedavg_fm \
      --out=experiments/results/fedhelp_cls_epoch1

For one experiment (``experiments/configs/fedhelp_{cls,seg}.py``) this builds
the silos ONCE (the same partition for every method and seed), runs every
method on the compiled engine for each seed and writes, under
``experiments/results/fedhelp_<experiment>/``:
  * ``<method>.json``: per seed, per-silo final metrics, per-group summaries
    and the curve over rounds; plus the FM report (API calls, proxy score);
  * ``summary.json``: the DESIGN.md format (``methods.<m>.{small,large,all}.
    {mean,std}`` over seeds of the group means of the primary metric) plus
    timing, the partition and the FM report;
  * ``fedhelp_<experiment>.png``: per-group bars with error bars (std over
    seeds) and the small/large curves over rounds.

Seeds: ``--seed_mode=sequential`` (default) runs the seeds one after another
with ONE compiled program per method (same shapes, so the executable is
reused); ``--seed_mode=vmap`` runs all seeds as one vmapped program
(``engine.run_sweep_rounds``: state and hparams with a leading [seeds] axis).
``--time_vmap=METHOD`` times both ways for one method on the same seeds and
stores the timings in ``summary.json`` (``seed_vmap_timing``); the default
is the faster one measured on the 2-core CPU.

``--markdown`` prints the results tables (mean ± std over seeds, small and
large silos separately, every metric) from the JSON files of a finished run.
"""

import ast
import importlib
import json
import os
import time

from absl import app
from absl import flags
import jax

from experiments import fedhelp_table_lib as table_lib
from fedhelp_jax import experiment
from fedhelp_jax import reporting
from fedhelp_jax import sweep

EXPERIMENTS = ('cls', 'seg', 'cls_authors', 'cls_hetero', 'blood_authors',
               'seg_authors', 'ablations')
_EXPERIMENT = flags.DEFINE_enum(
    'experiment', 'cls', EXPERIMENTS,
    'Which table: the config module experiments/configs/fedhelp_<name>.py.')
_SEEDS = flags.DEFINE_integer('seeds', 3, 'Training seeds per method.')
_METHODS = flags.DEFINE_list('methods', None, 'Subset of methods (default: '
                             'all of the config module).')
_ROUNDS = flags.DEFINE_integer('rounds', None, 'Override config.rounds.')
_LOCAL_EPOCHS = flags.DEFINE_float(
    'local_epochs', None, 'Train every silo for this many local epochs '
    'instead of the config\'s fixed local_steps (e.g. 1.0, as in the '
    'authors\' code; small silos then take fewer steps than large ones).')
_OVERRIDE = flags.DEFINE_multi_string(
    'override', None, 'key=value set on EVERY method\'s config, e.g. '
    '--override=hparams.lr=0.01 (repeatable; values are Python literals).')
_SEED_MODE = flags.DEFINE_enum('seed_mode', 'sequential',
                                ['sequential', 'vmap'],
                                'Seeds one after another, or vmapped.')
_TIME_VMAP = flags.DEFINE_string('time_vmap', None, 'Time vmap-over-seeds '
                                 'vs sequential seeds for this method.')
_MARKDOWN = flags.DEFINE_bool('markdown', False, 'Only print markdown '
                              'tables from the results JSON.')
_OUT = flags.DEFINE_string('out', None, 'Output directory (default '
                           'experiments/results/fedhelp_<experiment>).')
_REUSE = flags.DEFINE_bool(
    'reuse', False, 'Reuse <out>/<method>.json files that match the rounds '
    'and seeds instead of running those methods again (resume a table that '
    'was stopped, or rebuild summary.json and the figure).')


def _config_module(name):
  return importlib.import_module(f'experiments.configs.fedhelp_{name}')


def _apply_flags(config):
  """``--rounds`` / ``--local_epochs`` / ``--override`` on a config."""
  if _ROUNDS.value:
    config.rounds = _ROUNDS.value
  if _LOCAL_EPOCHS.value is not None:
    config.local.local_steps = None
    config.local.local_epochs = float(_LOCAL_EPOCHS.value)
  for item in _OVERRIDE.value or ():
    key, sep, text = item.partition('=')
    if not sep:
      raise ValueError(f'--override wants key=value, got {item!r}.')
    try:
      value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
      value = text
    sweep.set_field(config, key, value)
  return config


def main(argv):
  del argv
  module = _config_module(_EXPERIMENT.value)
  methods = _METHODS.value or list(module.METHODS)
  out = _OUT.value or os.path.join('experiments', 'results',
                                   f'fedhelp_{_EXPERIMENT.value}')
  if _MARKDOWN.value:
    print(table_lib.markdown_tables(out))
    return
  os.makedirs(out, exist_ok=True)
  seeds = list(range(_SEEDS.value))
  t_all = time.time()
  lines = []

  def log(msg):
    print(msg, flush=True)
    lines.append(msg)

  base = _apply_flags(module.get_config())
  raw = experiment.load_raw(base)
  fed0, info0 = experiment.build_federation(base, raw)
  records = {}
  for m in methods:
    path = os.path.join(out, f'{m}.json')
    if _REUSE.value and os.path.exists(path):
      with open(path) as f:
        rec = json.load(f)
      if rec['rounds'] == int(base.rounds) and rec['seeds'] == seeds:
        records[m] = rec
        log(f'[{m}] reused {path} (ran in {rec["wall_s"]:.1f}s)')
        continue
    config = _apply_flags(module.get_config(m))
    log(f'[{m}] aggregation={config.aggregation}')
    records[m] = table_lib.run_method(config, raw, fed0, info0, seeds, log,
                                      _SEED_MODE.value)
    log(f'[{m}] done in {records[m]["wall_s"]:.1f}s (compile '
        f'{records[m]["compile_s"]:.1f}s)')
    with open(os.path.join(out, f'{m}.json'), 'w') as f:
      json.dump(reporting.strict(records[m]), f, indent=1)
  # With reused methods, the table's wall time is the sum of its methods'.
  wall = (sum(r['wall_s'] for r in records.values()) if _REUSE.value
          else time.time() - t_all)
  vmap_timing = None
  if _TIME_VMAP.value:
    try:
      vmap_timing = table_lib.time_seed_modes(
          lambda m: _apply_flags(module.get_config(m)), _TIME_VMAP.value,
          raw, fed0, info0, seeds, log)
    except Exception as e:  # pylint: disable=broad-except
      log(f'vmap timing failed: {e!r}')
      vmap_timing = {'error': repr(e)}
  metric = records[methods[0]]['metric']
  fm = next((r['fm'] for r in records.values() if 'fm' in r), None)
  fm_by_method = {m: r['fm'] for m, r in records.items() if 'fm' in r}
  summary = {
      'experiment': f'fedhelp_{_EXPERIMENT.value}', 'metric': metric,
      'seeds': len(seeds),
      'methods': {m: {g: {k: v for k, v in r['groups'][g].items()
                          if k in ('mean', 'std')}
                      for g in ('small', 'large', 'all')}
                  for m, r in records.items()},
      'per_seed': {m: {g: r['groups'][g]['per_seed']
                       for g in ('small', 'large', 'all')}
                   for m, r in records.items()},
      'wall_time_s': wall, 'device': str(jax.devices()[0]),
      'backend': jax.default_backend(), 'jax': jax.__version__,
      'rounds': int(base.rounds),
      'local': {k: base.local[k] for k in ('batch_size', 'local_steps',
                                           'local_epochs', 'optimizer')},
      'overrides': list(_OVERRIDE.value or []),
      'method_wall_s': {m: r['wall_s'] for m, r in records.items()},
      'method_compile_s': {m: r['compile_s'] for m, r in records.items()},
      'seed_mode': _SEED_MODE.value,
      'seed_vmap_timing': vmap_timing,
      'fm': fm,
      'fm_by_method': fm_by_method,
      'metrics': {m: table_lib.all_metric_stats(r)
                  for m, r in records.items()},
      'paired_small_gain': table_lib.paired_gains(records, metric),
      'protocol': table_lib.protocol_record(base, fm),
      'partition': reporting.strict(
          {k: v for k, v in info0.items() if k != 'label_counts'}),
      'std': 'population std over seeds of the per-seed group mean',
  }
  with open(os.path.join(out, 'summary.json'), 'w') as f:
    json.dump(reporting.strict(summary), f, indent=1)
  table_lib.plot(summary, records,
                 os.path.join(out, f'fedhelp_{_EXPERIMENT.value}.png'), metric)
  log(f'total wall time {wall:.1f}s -> {out}')
  with open(os.path.join(out, 'log.txt'), 'a' if _REUSE.value else 'w') as f:
    f.write('\n'.join(lines) + '\n')


if __name__ == '__main__':
  app.run(main)
