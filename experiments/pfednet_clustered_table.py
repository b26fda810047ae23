# Copyright 2026 The fedhelp_jax Authors. Licensed under the Apache License 2.0.
r"""pFedNet where its graph must matter: the clustered benchmark, trained.

  python -m experiments.pfednet_clustered_table --arm=labels --seeds=10 \
      --out=experiments/results/pfednet_clustered/labels

``experiments/configs/pfednet_clustered.py``: BloodMNIST, 12 silos from 3
hidden clusters, each cluster with its own rule (``labels``: a label
permutation; ``rotation``: a 90 x cluster degree turn). Every method runs
the SAME recipe (the config's learning rate, rounds, local steps, batch;
pFedNet's lambda = ``hparams.lam`` as set before this benchmark existed),
with no tuning for any method, on the same data seeds: seed ``s`` draws the
partition, the clusters' test images and the training randomness of every
method alike. The graph ablations change only ``pfednet.graph``: the kNN
graph on per-silo label sketches (``pfednet``), the hidden clusters
(``oracle``), as many random edges (``random``), every pair (``complete``)
and none (``empty``).

Each silo is scored on its own 120 test images (its cluster's rule), with
the final state's evaluation model; a seed's score vector is the 12 x 120
per-image correctness, silo after silo. Intervals resample seeds and those
image slots (``stats.hierarchical_bootstrap``); comparisons are paired per
seed (``fedhelp_power.summarize``: bootstrap interval, paired t, sign
count). The slots hold different images under different seeds (each seed
draws its own test images), so an image resample is a resample of slots.

Each (method, seed) result is saved in ``<out>/parts`` as it finishes and
reused when present, so an interrupted table continues. Writes
``<out>/summary.json`` (per method the interval, the dead-unit fraction and
wall time; the paired comparisons; the graph quality per seed) and
``<out>/scores.npz``.
"""

import json
import os
import time

from absl import app
from absl import flags
import ml_collections
import numpy as np

from experiments import fedhelp_power
from experiments.configs import pfednet_clustered
from fedhelp_jax import diagnostics
from fedhelp_jax import engine
from fedhelp_jax import experiment
from fedhelp_jax import metrics
from fedhelp_jax import reporting
from fedhelp_jax import runner
from fedhelp_jax import validate

# Name -> (registered algorithm, config overrides). IFCA is told the true
# number of clusters, as the oracle graph is told the clusters.
METHODS = {
    'fedavg': ('fedavg', {}), 'local': ('local', {}),
    'ditto': ('ditto', {}), 'fedper': ('fedper', {}),
    'fedamp': ('fedamp', {}), 'ifca': ('ifca', {'ifca.num_clusters': 3}),
    'l2gd': ('l2gd', {}),
    'pfednet': ('pfednet', {}),
    'pfednet_oracle': ('pfednet', {'pfednet.graph': 'oracle'}),
    'pfednet_random': ('pfednet', {'pfednet.graph': 'random'}),
    'pfednet_complete': ('pfednet', {'pfednet.graph': 'complete'}),
    'pfednet_empty': ('pfednet', {'pfednet.graph': 'empty'}),
}


def method_config(method: str, arm: str, seed: int, rounds, table=None):
  """``method``'s config on ``arm`` for data seed ``seed`` (``table``: a
  ``METHODS``-like mapping, default this table's)."""
  algorithm, overrides = (table or METHODS)[method]
  config = pfednet_clustered.get_config(f'{algorithm}:{arm}')
  config.seed = int(seed)
  if rounds:
    config.rounds = int(rounds)
  for path, value in overrides.items():
    section, field = path.split('.')
    if section not in config:
      config[section] = ml_collections.ConfigDict()
    config[section][field] = value
  validate.validate_config(config)
  return config


def own_test_scores(program, result, fed) -> np.ndarray:
  """``[silos x test images]`` per-image scores of the final state on each
  real silo's own test set, silo after silo (the slots of a seed): 1/0
  correctness for classification, the image's Dice (foreground mean,
  ``metrics.segmentation_metrics``) for segmentation."""
  inputs = {g: {'test_x': d['test_x']} for g, d in fed.fed.items()}
  probs = engine.fetch(program.predict_fn(result.state, inputs))
  rows = []
  for g in fed.groups:
    d = fed.fed[g]
    for c in range(int(np.sum(d['n'] > 0))):
      nt = int(d['test_n'][c])
      pred, truth = np.argmax(probs[g][c, :nt], -1), d['test_y'][c, :nt]
      if fed.task.name == 'segmentation':
        rows.append([metrics.segmentation_metrics(
            p, t, num_classes=probs[g].shape[-1])['dice']
                     for p, t in zip(pred, truth)])
      else:
        rows.append(pred == truth)
  return np.concatenate(rows).astype(np.float32)


def upload_bytes_per_round(result, fed) -> np.ndarray:
  """``[R]``: bytes every real silo uploaded, summed, per round (from an
  upload encoder's ``upload_bytes`` metric; a ValueError without one)."""
  metrics = result.round_metrics
  total = np.zeros(len(np.asarray(metrics.round)))
  for g in fed.groups:
    real = int(np.sum(fed.fed[g]['n'] > 0))
    if 'upload_bytes' not in metrics.silos[g]:
      raise ValueError('upload_bytes_per_round: the run has no upload '
                       'encoder (config.compression.kind).')
    sent = np.asarray(metrics.silos[g]['upload_bytes'], np.float64)[:, :real]
    total += np.sum(sent * np.asarray(metrics.sampled[g])[:, :real], axis=1)
  return total


def run_one(method: str, arm: str, seed: int, rounds, log, table=None,
            record_bytes: bool = False) -> dict:
  """One method on one data seed: scores, dead units, graph quality (and
  with ``record_bytes`` the uploaded bytes per round)."""
  config = method_config(method, arm, seed, rounds, table)
  raw = experiment.load_raw(config)
  fed = experiment.prepare_federation(config, raw)
  fed = fed._replace(seed=int(seed))
  program = runner.build_program(config, fed.task, fed.groups, fed.info)
  t0 = time.time()
  (result,) = runner.run(program, [fed], rounds=int(config.rounds),
                         eval_every=int(config.eval_every), nonfinite='stop',
                         keep_metrics=record_bytes,
                         labels=[f'{method} {arm} seed {seed}'])
  wall = time.time() - t0
  correct = own_test_scores(program, result, fed)
  # The per-image record and the run's own summary are one computation:
  # equal-size test sets make the silo mean the image mean.
  reported = result.final['summary']['all']['accuracy']
  if abs(float(correct.mean()) - reported) > 1e-6:
    raise AssertionError(f'{method} seed {seed}: per-image accuracy '
                         f'{correct.mean():.6f} != the run\'s {reported:.6f}')
  dead = diagnostics.dead_units(
      program.alg, fed.groups, result.state,
      {g: {'x': d['x'], 'n': d['n']} for g, d in fed.fed.items()},
      strategy=program.strategy.name, chunk_size=program.strategy.chunk_size,
      num_real=fed.info.get('num_real_clients'))
  quality = fed.info.get('pfednet', {}).get('quality')
  log(f'[{method}] {arm} seed {seed}: accuracy {correct.mean():.4f}, dead '
      f'units {np.mean([v["mean"] for v in dead.values()]):.2f} '
      f'({wall:.1f}s)')
  part = {'correct': correct, 'wall_s': wall,
          'dead_units': float(np.mean([v['mean'] for v in dead.values()])),
          'quality': json.dumps(quality)}
  if record_bytes:
    part['bytes_per_round'] = upload_bytes_per_round(result, fed)
  return part


def load_or_run(method, arm, seed, rounds, parts_dir, log,
                parts_only=False, table=None,
                record_bytes=False) -> dict | None:
  """The saved part of ``(method, seed)``, else its run (saved); with
  ``parts_only``, None when it is not saved."""
  part = saved_part(
      os.path.join(parts_dir, f'{method}-s{seed}-r{rounds}.npz'),
      lambda: run_one(method, arm, seed, rounds, log, table, record_bytes),
      parts_only)
  if part is None:
    return None
  return {**part, 'wall_s': float(part['wall_s']),
          'dead_units': float(part['dead_units']),
          'quality': str(part['quality'])}


def saved_part(path: str, compute, parts_only: bool = False) -> dict | None:
  """The arrays saved at ``path``, else ``compute()``'s, saved there whole
  or not at all (written aside, then renamed); with ``parts_only``, None
  when nothing is saved."""
  if os.path.exists(path):
    with np.load(path, allow_pickle=False) as f:
      return {k: f[k] for k in f.files}
  if parts_only:
    return None
  part = compute()
  with open(path + '.tmp', 'wb') as f:
    np.savez(f, **part)
  os.replace(path + '.tmp', path)
  return part


def checked_methods(requested, table) -> list[str]:
  """``requested`` (a flag's list), every name a key of ``table``."""
  methods = list(requested)
  unknown = sorted(set(methods) - set(table))
  if unknown:
    raise app.UsageError(f'--methods: unknown {unknown}; known '
                         f'{sorted(table)}.')
  return methods


def parts_and_log(out: str):
  """``(parts_dir, lines, log)``: ``<out>/parts`` (made), and a ``log``
  that prints a line and keeps it in ``lines`` for the summary."""
  parts_dir = os.path.join(out, 'parts')
  os.makedirs(parts_dir, exist_ok=True)
  lines = []

  def log(msg):
    print(msg, flush=True)
    lines.append(msg)
  return parts_dir, lines, log


def run_seeds(methods, arm, seeds, rounds, parts_dir, log, *,
              parts_only=False, table=None, record_bytes=lambda m: False):
  """Every method on every seed, seeds outer (an interrupted table has
  every method on its first seeds), through the saved parts.

  Returns:
    ``(seeds, parts)``: the seeds every method has finished, and per method
    their parts in that order.
  """
  by_seed = [{m: load_or_run(m, arm, s, rounds, parts_dir, log, parts_only,
                             table, record_bytes(m)) for m in methods}
             for s in seeds]
  complete = [s for s, got in zip(seeds, by_seed) if all(got.values())]
  if not complete:
    raise app.UsageError(f'no seed has every method of {methods} saved in '
                         f'{parts_dir} yet.')
  if len(complete) < len(seeds):
    log(f'summarizing the {len(complete)} seeds every method has finished: '
        f'{complete}')
  return complete, {m: [by_seed[seeds.index(s)][m] for s in complete]
                    for m in methods}


def graph_markdown(summary: dict, method: str = 'pfednet',
                   oracle: str = 'pfednet_oracle') -> str:
  """Per seed: the kNN graph's edges inside clusters, and ``method``'s
  accuracy beside the oracle graph's (a table of a ``summary.json``)."""
  got = summary['methods'][method]
  lines = ['| seed | kNN edges | inside clusters | recall of within-cluster '
           f'pairs | {method} | {oracle} |', '|---|---|---|---|---|---|']
  for seed, q, a, o in zip(summary['seeds'], got['graph_quality'],
                           got['per_seed'],
                           summary['methods'][oracle]['per_seed']):
    lines.append(f"| {seed} | {q['edges']} | {q['inside_fraction']:.2f} | "
                 f"{q['recall']:.2f} | {a:.4f} | {o:.4f} |")
  inside = [q['inside_fraction'] for q in got['graph_quality']]
  r = float(np.corrcoef(inside, got['per_seed'])[0, 1])
  lines.append(f'\nCorrelation over seeds of the inside fraction with '
               f'{method} accuracy: {r:+.2f} ({len(inside)} seeds).')
  return '\n'.join(lines)


def accuracy_figure(summary: dict):
  """Each method's accuracy with its 95% interval, best at the top."""
  n = next(iter(summary['methods'].values()))['all']
  metric = summary.get('metric', 'accuracy')
  return fedhelp_power.interval_bars_figure(
      summary, ('all',), highlight='pfednet', best_on_top=True,
      xlabel=f"{metric} on the silos' own test images (95% CI)",
      title=(f"{summary.get('title', 'clustered benchmark')}, arm "
             f"'{summary['arm']}': {n['n_seeds']} seeds x "
             f"{fedhelp_power.images_text(n)} images"))


def main(argv):
  del argv
  methods = checked_methods(_METHODS.value, METHODS)
  out = _OUT.value or os.path.join('experiments', 'results',
                                   'pfednet_clustered', _ARM.value)
  parts_dir, lines, log = parts_and_log(out)
  t0 = time.time()
  rounds = _ROUNDS.value or int(pfednet_clustered.get_config().rounds)
  seeds, parts = run_seeds(methods, _ARM.value, list(range(_SEEDS.value)),
                           rounds, parts_dir, log,
                           parts_only=_PARTS_ONLY.value)
  scores = {m: {'all': np.stack([p['correct'] for p in parts[m]])}
            for m in methods}
  extra = tuple(tuple(spec.split(':')) for spec in _COMPARE.value)
  if any(len(pair) != 2 for pair in extra):
    raise app.UsageError(f'--compare takes a:b pairs; got {_COMPARE.value}.')
  summary = fedhelp_power.summarize(scores, _REFERENCE.value, extra)
  for m in methods:
    summary['methods'][m]['per_seed'] = [float(p['correct'].mean())
                                         for p in parts[m]]
    summary['methods'][m]['dead_units'] = [p['dead_units'] for p in parts[m]]
    summary['methods'][m]['wall_s'] = sum(p['wall_s'] for p in parts[m])
    quality = [json.loads(p['quality']) for p in parts[m]]
    if any(q is not None for q in quality):
      summary['methods'][m]['graph_quality'] = quality
  summary.update({
      'arm': _ARM.value, 'seeds': seeds, 'rounds': rounds,
      'endpoint': "accuracy on each silo's own test images (its cluster's "
                  'rule), final state, every silo weighted alike',
      'recipe': json.loads(method_config(methods[0], _ARM.value, 0,
                                         rounds).to_json_best_effort()),
      'wall_time_s': time.time() - t0, 'log': lines})
  reporting.write_json(os.path.join(out, 'summary.json'), summary)
  np.savez_compressed(os.path.join(out, 'scores.npz'),
                      **{m: v['all'] for m, v in scores.items()})
  accuracy_figure(summary).savefig(os.path.join(out, 'accuracy.png'))
  print(fedhelp_power.markdown(summary, 'all'))
  if 'graph_quality' in summary['methods'].get('pfednet', {}):
    print(graph_markdown(summary))


def define_flags():
  """The command's flags (defined only when run as a command)."""
  global _ARM, _METHODS, _SEEDS, _ROUNDS, _OUT, _REFERENCE, _PARTS_ONLY
  global _COMPARE
  _ARM = flags.DEFINE_enum('arm', 'labels', list(pfednet_clustered.ARMS),
                           'Which cluster rule.')
  _METHODS = flags.DEFINE_list('methods', list(METHODS),
                               f'Methods to run, of {sorted(METHODS)}.')
  _SEEDS = flags.DEFINE_integer('seeds', 10, 'Data seeds.')
  _ROUNDS = flags.DEFINE_integer('rounds', None,
                                 "Rounds (default: the config's).")
  _OUT = flags.DEFINE_string('out', None, 'Output directory (default '
                             'experiments/results/pfednet_clustered/<arm>).')
  _REFERENCE = flags.DEFINE_string('reference', 'pfednet',
                                   'The method every other is compared to.')
  _COMPARE = flags.DEFINE_list(
      'compare', ['pfednet_oracle:local', 'pfednet_oracle:fedper',
                  'fedper:local'],
      'More paired comparisons, as a:b (a minus b).')
  _PARTS_ONLY = flags.DEFINE_boolean(
      'parts_only', False, 'Train nothing: summarize the seeds whose parts '
      'every method has (e.g. while the table runs in another process).')


if __name__ == '__main__':
  define_flags()
  app.run(main)
