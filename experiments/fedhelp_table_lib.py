# Copyright 2026 The fedhelp_jax Authors. Licensed under the Apache License 2.0.
"""The FedHelp table's pieces, without command-line flags.

``experiments/fedhelp_table.py`` is the command; this module holds what it
does with a config (every seed of a method through ``runner.run``), the
statistics over seeds, the protocol record, the figure and the markdown
tables, so tests and other scripts can import them without defining flags.
"""

import json
import os
import time

import numpy as np

from fedhelp_jax import experiment
from fedhelp_jax import runner
from fedhelp_jax import validate


def group_stats(values):
  values = np.asarray(values, np.float64)
  return {'mean': float(np.mean(values)), 'std': float(np.std(values)),
          'per_seed': values.tolist()}


def run_method(config, raw, fed0, info0, seeds, log, seed_mode='sequential'):
  """All seeds of one method on a fixed partition (``runner.run``).

  ``sequential`` runs the seeds one after another on one program, so the
  executable compiled for the first seed is reused; ``vmap`` runs them as one
  vmapped program.

  Returns:
    The method's record: per-seed results, curves and timings.
  """
  validate.validate_config(config)
  if int(config.rounds) % int(config.eval_every):
    raise ValueError('rounds must be a multiple of eval_every here.')
  fed = experiment.prepare_federation(config, raw, (fed0, info0))
  program = runner.build_program(config, fed.task, fed.groups, fed.info)
  members = [fed._replace(seed=seed) for seed in seeds]
  batches = ([[m] for m in members] if seed_mode == 'sequential'
             else [members])
  metric = program.metric
  t0 = time.time()
  runs, compile_s = [], 0.0
  for batch in batches:
    results = runner.run(
        program, batch, rounds=int(config.rounds),
        eval_every=int(config.eval_every), nonfinite='stop',
        labels=[f'{config.algorithm} seed {m.seed}' for m in batch])
    timing = results[0].timing_s
    compile_s += timing['compile']
    for res in results:
      runs.append({
          'seed': res.seed, 'final': res.final,
          'curve': [{'round': h['round'],
                     **{g: h['summary'][g][metric]
                        for g in (*fed.groups, 'all')}}
                    for h in res.history],
          # A vmapped program's run time is shared by its seeds.
          'wall_s': (timing['wall'] if len(batch) == 1 else
                     (timing['wall'] - timing['compile']) / len(batch))})
  for run in runs:
    log(f'  {config.algorithm} seed {run["seed"]}: '
        + ', '.join(f'{g} {run["final"]["summary"][g][metric]:.4f}'
                    for g in (*fed.groups, 'all'))
        + f' ({run["wall_s"]:.1f}s)')
  record = {
      'algorithm': config.algorithm, 'metric': metric,
      'rounds': int(config.rounds), 'seeds': list(seeds),
      'aggregation': config.aggregation,
      'hparams': {k: float(v) for k, v in fed.hparams.items()},
      'strategy': program.strategy.describe(), 'seed_mode': seed_mode,
      'compile_s': compile_s,
      'wall_s': time.time() - t0, 'runs': runs,
      'groups': {g: group_stats([r['final']['summary'][g][metric]
                                  for r in runs])
                 for g in (*fed.groups, 'all')},
  }
  for extra in ('fm', 'server_public'):
    if extra in fed.info:
      record[extra] = fed.info[extra]
  return record


def all_metric_stats(record):
  """Per group, every metric: mean ± std over seeds of the group mean.

  A group mean that is undefined in some seed (e.g. AUC of a one-class test
  set) is left out of that metric's statistics; ``seeds`` says how many
  seeds it covers.
  """
  out = {}
  for g in ('small', 'large', 'all'):
    out[g] = {}
    for k in _COLUMNS[record['metric']]:
      vals = np.array([r['final']['summary'][g].get(k, np.nan)
                       if r['final']['summary'][g].get(k) is not None
                       else np.nan for r in record['runs']], np.float64)
      ok = vals[np.isfinite(vals)]
      out[g][k] = {'mean': float(np.mean(ok)) if ok.size else None,
                   'std': float(np.std(ok)) if ok.size else None,
                   'seeds': int(ok.size)}
  return out


def paired_gains(records, metric):
  """Per-seed small-silo gain of every FedHelp variant over each baseline.

  ``{variant: {baseline: {mean, std, wins, seeds}}}`` where ``wins`` counts
  the seeds in which the variant's small-silo mean is higher (paired by
  seed: same partition, same seed).
  """
  out = {}
  for name, rec in records.items():
    if rec['algorithm'] != 'fedhelp':
      continue
    mine = {r['seed']: r['final']['summary']['small'][metric]
            for r in rec['runs']}
    out[name] = {}
    for other, orec in records.items():
      if other == name:
        continue
      theirs = {r['seed']: r['final']['summary']['small'][metric]
                for r in orec['runs']}
      seeds = sorted(set(mine) & set(theirs))
      d = np.array([mine[s] - theirs[s] for s in seeds], np.float64)
      if not d.size:
        continue
      out[name][other] = {'mean': float(d.mean()), 'std': float(d.std()),
                          'wins': int(np.sum(d > 0)), 'seeds': len(seeds)}
  return out


def protocol_record(config, fm):
  """The recipe every method of the table shared, for the results."""
  hp = config.get('hparams', {})
  return {
      'optimizer': config.local.optimizer, 'lr': hp.get('lr'),
      'weight_decay': hp.get('weight_decay', 0.0),
      'weight_decay_kind': 'coupled (added to the gradient, torch Adam)',
      'batch_size': config.local.batch_size,
      'public_batch_size': (config.get('fedhelp') or {}).get(
          'public_batch_size'),
      'local_steps': config.local.get('local_steps'),
      'local_epochs': config.local.get('local_epochs'),
      'rounds': int(config.rounds),
      'aggregation': config.get('aggregation'),
      'partition': config.get('partition') and config.partition.to_dict(),
      'dataset': config.dataset.to_dict(),
      'model_small': config.model.to_dict(),
      'model_large': config.get('large_model') and
                     config.large_model.to_dict(),
      'fm_source': fm and fm.get('proxy_data', fm.get('provider')),
      'fm_test_score': fm and next(
          (v for k, v in fm.items() if k.startswith('proxy_test_')
           and k != 'proxy_test_size'), None),
      'fm_api_calls_first_run': fm and fm.get('num_public'),
  }


def plot(summary, records, path, metric):
  """Per-group bars with error bars, and small/large curves over rounds."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  methods = list(summary['methods'])
  fig, (ax_bar, ax_small, ax_large) = plt.subplots(
      1, 3, figsize=(16, 4.5), gridspec_kw={'width_ratios': [1.6, 1, 1]})
  width = 0.27
  xs = np.arange(len(methods))
  for i, g in enumerate(('small', 'large', 'all')):
    means = [summary['methods'][m][g]['mean'] for m in methods]
    stds = [summary['methods'][m][g]['std'] for m in methods]
    ax_bar.bar(xs + (i - 1) * width, means, width, yerr=stds, capsize=3,
               label=g)
  ax_bar.set_xticks(xs)
  ax_bar.set_xticklabels(methods, rotation=30, ha='right')
  ax_bar.set_ylabel(f'test {metric} (mean over silos)')
  lo = min(summary['methods'][m][g]['mean'] for m in methods
           for g in ('small', 'large', 'all'))
  ax_bar.set_ylim(max(0.0, lo - 0.1), 1.0)
  ax_bar.legend(title='silo group')
  ax_bar.set_title(f"{summary['experiment']}: final {metric}, "
                   f"mean ± std over {summary['seeds']} seeds")
  for ax, g in ((ax_small, 'small'), (ax_large, 'large')):
    for m in methods:
      runs = records[m]['runs']
      rounds = [p['round'] for p in runs[0]['curve']]
      vals = np.array([[p[g] for p in r['curve']] for r in runs])
      mean, std = vals.mean(0), vals.std(0)
      (line,) = ax.plot(rounds, mean, marker='o', ms=3, label=m)
      ax.fill_between(rounds, mean - std, mean + std, alpha=0.15,
                      color=line.get_color())
    ax.set_xlabel('round')
    ax.set_title(f'{g} silos')
  ax_large.legend(fontsize=7, ncol=2)
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)


def time_seed_modes(make_config, method, raw, fed0, info0, seeds, log):
  """Wall time of one method's seeds: one vmapped program vs one by one
  (``make_config(method)`` gives the method's config)."""
  out = {'method': method, 'seeds': len(seeds)}
  for mode in ('sequential', 'vmap'):
    config = make_config(method)
    rec = run_method(config, raw, fed0, info0, seeds, lambda _: None, mode)
    out[mode] = {'compile_s': rec['compile_s'], 'total_s': rec['wall_s'],
                 'run_s': rec['wall_s'] - rec['compile_s'],
                 'small': rec['groups']['small']['per_seed']}
    log(f'[time {method} {mode}] compile {rec["compile_s"]:.1f}s, total '
        f'{rec["wall_s"]:.1f}s')
  out['rounds'] = rec['rounds']
  out['speedup_total'] = out['sequential']['total_s'] / out['vmap']['total_s']
  return out


_COLUMNS = {'accuracy': ('accuracy', 'macro_f1', 'auc'),
            'dice': ('dice', 'iou')}


def markdown_tables(out_dir):
  """Markdown tables (mean ± std over seeds) from a finished run."""
  with open(os.path.join(out_dir, 'summary.json')) as f:
    summary = json.load(f)
  metrics = _COLUMNS[summary['metric']]
  lines = []
  header = ['method'] + [f'{g} {m}' for g in ('small', 'large')
                         for m in metrics]
  lines.append('| ' + ' | '.join(header) + ' |')
  lines.append('|' + '---|' * len(header))
  for m in summary['methods']:
    with open(os.path.join(out_dir, f'{m}.json')) as f:
      rec = json.load(f)
    cells = [f'`{m}`']
    for g in ('small', 'large'):
      for k in metrics:
        vals = np.array([r['final']['summary'][g][k] for r in rec['runs']],
                        np.float64)
        cells.append(f'{np.mean(vals):.3f} ± {np.std(vals):.3f}')
    lines.append('| ' + ' | '.join(cells) + ' |')
  lines.append('')
  gains = summary.get('paired_small_gain') or {}
  for name, vs in gains.items():
    lines.append(f'Small-silo {summary["metric"]} gain of `{name}` (paired by '
                 'seed: mean ± std of the per-seed difference, seeds where '
                 'it is higher):')
    lines.append('')
    for other, g in vs.items():
      lines.append(f'- vs `{other}`: {g["mean"]:+.3f} ± {g["std"]:.3f} '
                   f'({g["wins"]}/{g["seeds"]})')
    lines.append('')
  fms = summary.get('fm_by_method') or {}
  if fms:
    lines.append('| method | FM source | FM classes | FM own test score | '
                 'public examples (API calls, first run) |')
    lines.append('|---|---|---|---|---|')
    for m, fm in fms.items():
      score = next((f'{k[len("proxy_test_"):]} {v:.3f}' for k, v in fm.items()
                    if k.startswith('proxy_test_') and k != 'proxy_test_size'
                    and v is not None), 'n/a')
      source = fm.get('proxy_data', fm.get('provider'))
      if fm.get('outside_subset'):
        source += f' ({fm["outside_subset"]}mnist)'
      lines.append(f'| `{m}` | {source} | {fm.get("classes", "")} | {score} '
                   f'| {fm.get("num_public")} |')
  return '\n'.join(lines)
