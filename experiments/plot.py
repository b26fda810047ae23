# Copyright 2026 The fedhelp_jax Authors. Licensed under the Apache License 2.0.
r"""Standard figures of one run directory written by ``experiments.run``.

  python -m experiments.plot RUN_DIR [--out DIR]

Reads ``RUN_DIR/metrics.jsonl``, ``config.json`` and (when the run finished)
``summary.json``, and writes three PNGs to ``--out`` (default
``RUN_DIR/figures``):

* ``curves.png``: the primary metric and the train loss over rounds, one line
  per silo group (and all silos);
* ``silos.png``: each silo's final metric, coloured by group;
* ``partition.png``: training labels per silo (the partition heatmap).

Each figure is built by a pure function of the loaded records that returns a
``matplotlib.figure.Figure`` (no pyplot state), so they can be reused in
notebooks.
"""

import json
import os
from typing import Any, Optional, Sequence

from absl import app
from absl import flags
from matplotlib import figure as mpl_figure
import numpy as np

from fedhelp_jax import reporting

_OUT = flags.DEFINE_string('out', None,
                           'Output directory (default RUN_DIR/figures).')

GROUP_COLORS = {'large': 'tab:blue', 'small': 'tab:orange', 'all': 'black'}
DPI = 100


def load_run(run_dir: str) -> dict[str, Any]:
  """``{'records', 'config', 'partition', 'summary'}`` of a run directory.

  ``summary`` is None for a run that has not finished.
  """
  records = reporting.read_jsonl(os.path.join(run_dir, 'metrics.jsonl'))
  if not records:
    raise ValueError(f'{run_dir}/metrics.jsonl has no records yet.')
  with open(os.path.join(run_dir, 'config.json')) as f:
    config = json.load(f)
  summary = None
  path = os.path.join(run_dir, 'summary.json')
  if os.path.exists(path):
    with open(path) as f:
      summary = json.load(f)
  return {'records': records, 'config': config['config'],
          'partition': config['partition'], 'summary': summary}


def primary_metric(config: dict[str, Any]) -> str:
  return 'accuracy' if config['task'] == 'classification' else 'dice'


def _color(group: str, default: str = 'tab:gray') -> str:
  return GROUP_COLORS.get(group, default)


def curves_figure(records: Sequence[dict[str, Any]], metric: str,
                  groups: Sequence[str],
                  title: str = '') -> mpl_figure.Figure:
  """Primary metric (mean over each group's silos) and train loss by round."""
  fig = mpl_figure.Figure(figsize=(9, 3.6), dpi=DPI, layout='constrained')
  ax_m, ax_l = fig.subplots(1, 2)
  rounds = [r['round'] for r in records]
  for g in list(groups) + ['all']:
    if g not in records[-1]['summary']:
      continue
    values = [r['summary'][g][metric] for r in records]
    ax_m.plot(rounds, values, marker='o', ms=3, color=_color(g),
              ls='--' if g == 'all' else '-', label=g)
  for g in groups:
    if g not in records[-1].get('train_loss', {}):
      continue
    ax_l.plot(rounds, [r['train_loss'][g] for r in records], marker='o',
              ms=3, color=_color(g), label=g)
  ax_m.set(xlabel='round', ylabel=f'test {metric} (mean over silos)',
           title=f'{metric} per group')
  ax_l.set(xlabel='round', ylabel='train loss (last local step, mean)',
           title='train loss per group')
  for ax in (ax_m, ax_l):
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
  if title:
    fig.suptitle(title, fontsize=10)
  return fig


def silo_bars_figure(per_silo: Sequence[float], partition: dict[str, Any],
                     metric: str, title: str = '') -> mpl_figure.Figure:
  """Each silo's final metric, coloured by its group."""
  num = len(per_silo)
  fig = mpl_figure.Figure(figsize=(max(5.0, 0.32 * num + 1.5), 3.4),
                          dpi=DPI, layout='constrained')
  ax = fig.subplots()
  for g, silos in partition['groups'].items():
    silos = [s for s in silos if s < num]
    values = [per_silo[s] for s in silos]
    ax.bar(silos, values, color=_color(g), label=f'{g} ({len(silos)} silos)')
    mean = float(np.nanmean(values)) if values else float('nan')
    ax.hlines(mean, min(silos) - 0.4, max(silos) + 0.4, color=_color(g),
              ls=':', lw=1)
  sizes = partition.get('train_sizes') or []
  labels = [f'{s}\n{sizes[s]}' if s < len(sizes) else str(s)
            for s in range(num)]
  ax.set_xticks(range(num), labels, fontsize=6)
  ax.set(xlabel='silo (training examples)',
         ylabel=f'final test {metric}\n(dotted: group mean)', ylim=(0, 1.05))
  ax.set_title(title or f'final {metric} per silo', fontsize=10)
  ax.legend(fontsize=8, loc='lower right')
  ax.grid(axis='y', alpha=0.3)
  return fig


def partition_figure(partition: dict[str, Any],
                     title: str = '') -> mpl_figure.Figure:
  """Heatmap of training labels per silo, groups separated by a line."""
  counts = np.asarray(partition['label_counts'], np.float64)  # [S, K]
  num, k = counts.shape
  fig = mpl_figure.Figure(figsize=(max(5.0, 0.32 * num + 2.0),
                                   1.2 + 0.45 * k), dpi=DPI,
                          layout='constrained')
  ax = fig.subplots()
  share = counts / np.maximum(counts.sum(1, keepdims=True), 1)
  image = ax.imshow(share.T, aspect='auto', cmap='viridis', vmin=0, vmax=1)
  for s in range(num):
    for c in range(k):
      ax.text(s, c, f'{int(counts[s, c])}', ha='center', va='center',
              fontsize=6, color='white' if share[s, c] < 0.6 else 'black')
  starts = sorted(min(v) for v in partition['groups'].values() if v)
  for x in starts[1:]:
    ax.axvline(x - 0.5, color='red', lw=1.5)
  names = {min(v): g for g, v in partition['groups'].items() if v}
  for x in starts:
    ax.text(x - 0.4, -0.7, names[x], fontsize=8, color='red', va='bottom')
  ax.set_xticks(range(num), [str(s) for s in range(num)], fontsize=6)
  ax.set_yticks(range(k), [f'class {c}' for c in range(k)], fontsize=8)
  ax.set(xlabel='silo', ylim=(k - 0.5, -0.9),
         title=title or 'training labels per silo (count; colour = share)')
  fig.colorbar(image, ax=ax, label='share of silo', fraction=0.04)
  return fig


def save_figures(run_dir: str, out_dir: Optional[str] = None) -> list[str]:
  """Writes the standard figures of ``run_dir``; returns their paths."""
  run = load_run(run_dir)
  out_dir = out_dir or os.path.join(run_dir, 'figures')
  os.makedirs(out_dir, exist_ok=True)
  config, partition, records = run['config'], run['partition'], run['records']
  metric = primary_metric(config)
  groups = list(partition['groups'])
  data = config['dataset']
  data = '/'.join(str(x) for x in (data['name'], data.get('subset')) if x)
  name = f"{config['algorithm']} on {data}, seed {config['seed']}"
  final = (run['summary']['final'] if run['summary'] is not None
           else records[-1])
  figures = {
      'curves.png': curves_figure(records, metric, groups, title=name),
      'silos.png': silo_bars_figure(
          final['clients'][metric], partition, metric,
          title=f"{name}: {metric} per silo at round "
          f"{records[-1]['round']}"),
      'partition.png': partition_figure(partition),
  }
  paths = []
  for filename, fig in figures.items():
    path = os.path.join(out_dir, filename)
    fig.savefig(path, dpi=DPI)
    paths.append(path)
  return paths


def main(argv):
  if len(argv) != 2:
    raise app.UsageError('usage: python -m experiments.plot RUN_DIR '
                         '[--out DIR]')
  for path in save_figures(argv[1], _OUT.value):
    print(path)


if __name__ == '__main__':
  app.run(main)
