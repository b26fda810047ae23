# Copyright 2026 The fedhelp_jax Authors. Licensed under the Apache License 2.0.
r"""pFedNet and its baselines on an equal tuning budget, chosen on validation.

  python -m experiments.pfednet_power --task=tabular --seeds=10 \
      --out=experiments/results/pfednet_power_tabular
  python -m experiments.pfednet_power --task=clustered_rotation --seeds=10 \
      --out=experiments/results/pfednet_power_rotation
  python -m experiments.pfednet_power --task=seg --seeds=10

The protocol, fixed before any run:

* **Budget.** Every method gets the same 5-point grid on ONE knob: the
  recipe's value times 10^-1, 10^-1/2, 1, 10^1/2, 10. With ``--knob=own``
  the knob is the method's own (``KNOBS``: the regularizer that defines it,
  or the learning rate for a method with none); with ``--knob=lr`` every
  method tunes the learning rate at its regularizer's recipe value (the
  two arms show which knob a ranking depends on). Everything else is the
  task's recipe, shared by every method.
* **Selection on validation, never on test.** Each (method, grid value,
  data seed) trains once. The final state is scored on each silo's draw
  from the held-out validation split (``config.dataset.evaluate_on=
  'validation'``: the breast-cancer table's set-aside rows, MedMNIST's
  official val split, each brain-slice silo's own validation slices) and
  on its draw from the test split; the two federations train on the same
  silos, bit for bit (checked). Per method, the value with the best mean
  validation score (accuracy; Dice for ``seg``) over the seeds is
  chosen (a value that went non-finite on any seed is not eligible), and
  only that value's TEST scores are reported. The test scores of the other
  values are kept (``grid``) to show how much choosing on test would have
  flattered each method; they choose nothing.
* **Seeds and statistics.** Seed ``s`` draws the pools, the partition, the
  test and validation draws and the training randomness alike, for every
  method. Intervals resample seeds and test-image slots
  (``stats.hierarchical_bootstrap``; where seeds draw test sets of
  different sizes, as the brain-slice silos do, each drawn seed resamples
  its own images); each method is paired with pFedNet
  per seed (``fedhelp_power.summarize``: bootstrap interval, paired t, sign
  count).

A method's 5 grid values run as one program (``runner.run`` with 5 members:
one compile). Each (method, seed) is saved in ``<out>/parts`` as it
finishes and reused, so an interrupted table continues; under
``--knob=lr`` the methods whose own knob is the lr share the own-knob
table's parts (``part_path``). Writes
``<out>/summary.json`` (powered format plus per method the knob, grid,
chosen value, per-value validation and test means) and
``<out>/scores.npz``, ``<out>/accuracy.png``.
"""

import json
import os
import time

from absl import app
from absl import flags
import numpy as np

from experiments import fedhelp_power
from experiments import pfednet_clustered_table as clustered
from experiments.configs import pfednet_cls
from experiments.configs import pfednet_seg
from experiments.configs import pfednet_tabular
from fedhelp_jax import diagnostics
from fedhelp_jax import experiment
from fedhelp_jax import reporting
from fedhelp_jax import runner
from fedhelp_jax import stats
from fedhelp_jax import validate

# The knob each algorithm tunes: its defining regularizer, else the lr.
KNOBS = {'fedavg': 'lr', 'fedper': 'lr', 'local': 'lr', 'ifca': 'lr',
         'fedrep': 'lr', 'apfl': 'lr', 'fedprox': 'mu', 'ditto': 'ditto_lam',
         'pfednet': 'lam', 'fedamp': 'fedamp_lam', 'l2gd': 'l2gd_lam',
         'pfedme': 'pfedme_lam'}
GRID_FACTORS = tuple(10.0 ** e for e in (-1.0, -0.5, 0.0, 0.5, 1.0))


def _tabular_config(method: str, seed: int):
  config = pfednet_tabular.get_config(method)
  config.seed = int(seed)
  return config


def _cls_config(method: str, seed: int):
  """``pfednet_cls`` with the recipe that trains (momentum 0, every
  method alike: at 0.9 FedAvg's dense units die, see docs/pfednet.md) and
  the library's per-silo label sketch (the committed cls tables keep the
  paper's counts over the global total)."""
  config = pfednet_cls.get_config(method)
  config.seed = int(seed)
  config.hparams.momentum = 0.0
  config.pfednet.sketch_norm = 'per_silo'
  return config


def _seg_config(method: str, seed: int):
  """``pfednet_seg`` with a fifth of each silo's slices held out (from its
  training slices) as its validation set; its test slices are unchanged."""
  config = pfednet_seg.get_config(method)
  config.seed = int(seed)
  config.partition.validation_fraction = 0.2
  return config


def _clustered_config(arm: str):
  def get(method: str, seed: int):
    return clustered.method_config(method, arm, seed, None)
  return get


# Task -> (config of (method, data seed), its methods, reference).
TASKS = {
    'tabular': (_tabular_config, pfednet_tabular.METHODS, 'pfednet'),
    'cls': (_cls_config, pfednet_cls.METHODS, 'pfednet'),
    'clustered_labels': (_clustered_config('labels'),
                         tuple(clustered.METHODS), 'pfednet'),
    'clustered_rotation': (_clustered_config('rotation'),
                           tuple(clustered.METHODS), 'pfednet'),
    'seg': (_seg_config, pfednet_seg.METHODS, 'pfednet'),
}
# The per-image score of a task (its silos' own test images): Dice for
# segmentation, 1/0 correctness otherwise (``clustered.own_test_scores``).
METRICS = {'seg': 'Dice'}


def grid(center: float) -> tuple[float, ...]:
  """The 5-point grid around a recipe value (every method alike)."""
  return tuple(float(center) * f for f in GRID_FACTORS)


def _federations(config, seed: int):
  """``(on_val, on_test)``: ``config``'s federation scored on validation and
  on test, from one load of the data (``experiment.evaluation_split``)."""
  scored = {}
  for evaluate_on in ('test', 'validation'):
    scored[evaluate_on] = config.copy_and_resolve_references()
    scored[evaluate_on].dataset.evaluate_on = evaluate_on
    validate.validate_config(scored[evaluate_on])
  raw = experiment.load_raw(scored['test'])
  on_test = experiment.prepare_federation(scored['test'], raw)
  on_val = experiment.prepare_federation(
      scored['validation'], experiment.evaluation_split(raw, 'validation'))
  return on_val._replace(seed=int(seed)), on_test._replace(seed=int(seed))


def _same_training_silos(a, b) -> None:
  for g in a.groups:
    for key in ('x', 'y', 'n'):
      if not np.array_equal(a.fed[g][key], b.fed[g][key]):
        raise AssertionError(f'the validation and test federations train on '
                             f'different silos ({g}/{key}).')


def knob_of(config, knob: str = 'own') -> str:
  """The hparam a method tunes: its own (``KNOBS``) or 'lr'."""
  return KNOBS[config.algorithm] if knob == 'own' else knob


def run_grid(config, method: str, seed: int, log, knob: str = 'own') -> dict:
  """``method`` at every grid value of ``knob_of(config, knob)`` on data
  seed ``seed``.

  Returns:
    ``{'values' [5], 'val' [5, Nv], 'test' [5, Nt] (per-image correctness
    of the final state), 'nonfinite' [5] (bool), 'wall_s'}``.
  """
  knob = knob_of(config, knob)
  on_val, on_test = _federations(config, seed)
  _same_training_silos(on_val, on_test)
  values = grid(float(np.asarray(on_val.hparams[knob])))
  members = [on_val._replace(hparams={
      **on_val.hparams, knob: np.asarray(v, np.asarray(
          on_val.hparams[knob]).dtype)}) for v in values]
  program = runner.build_program(config, on_val.task, on_val.groups,
                                 on_val.info)
  t0 = time.time()
  results = runner.run(program, members, rounds=int(config.rounds),
                       eval_every=int(config.eval_every), nonfinite='record',
                       labels=[f'{method} {knob}={v:g} seed {seed}'
                               for v in values])
  wall = time.time() - t0
  val = np.stack([clustered.own_test_scores(program, r, on_val)
                  for r in results])
  test = np.stack([clustered.own_test_scores(program, r, on_test)
                   for r in results])
  nonfinite = np.asarray([bool(r.nonfinite) for r in results])
  dead = np.asarray([_dead_fraction(program, r, on_val) for r in results])
  log(f'[{method}] seed {seed}: ' + ', '.join(
      f'{knob}={v:.3g} val {a:.3f}' + (' (non-finite)' if bad else '')
      for v, a, bad in zip(values, val.mean(1), nonfinite))
      + f' ({wall:.1f}s)')
  return {'values': np.asarray(values), 'val': val, 'test': test,
          'nonfinite': nonfinite, 'dead_units': dead, 'wall_s': wall}


def _dead_fraction(program, result, fed) -> float:
  """The final state's dead dense units (mean over groups; NaN for a
  model without a hidden layer), so a collapsed run is visible."""
  dead = diagnostics.dead_units(
      program.alg, fed.groups, result.state,
      {g: {'x': d['x'], 'n': d['n']} for g, d in fed.fed.items()},
      strategy=program.strategy.name, chunk_size=program.strategy.chunk_size,
      num_real=fed.info.get('num_real_clients'))
  return float(np.mean([v['mean'] for v in dead.values()])) if dead else (
      float('nan'))


def default_out(task: str, knob: str = 'own') -> str:
  """The committed result folder of ``task`` under ``knob``."""
  suffix = '' if knob == 'own' else f'_{knob}'
  return os.path.join('experiments', 'results', f'pfednet_power_{task}{suffix}')


def part_path(config, method: str, seed: int, parts_dir: str,
              knob: str = 'own', own_parts_dir: str | None = None) -> str:
  """Where the grid of ``(method, seed)`` is saved. Under ``knob='lr'`` a
  method whose own knob is the learning rate runs the very grid of the
  own-knob table (checked bit for bit on the tabular parts), so, given
  ``own_parts_dir``, it shares that table's part instead of running twice.
  """
  if (knob != 'own' and own_parts_dir
      and knob_of(config, knob) == knob_of(config)):
    parts_dir, knob = own_parts_dir, 'own'
  tag = '' if knob == 'own' else f'-{knob}'
  return os.path.join(parts_dir, f'{method}{tag}-s{seed}-r{config.rounds}.npz')


def load_or_run(config, method, seed, parts_dir, log, parts_only=False,
                knob='own', own_parts_dir=None):
  """The saved grid of ``(method, seed)`` (``part_path``), else its run
  (saved); with ``parts_only``, None when it is not saved."""
  part = clustered.saved_part(
      part_path(config, method, seed, parts_dir, knob, own_parts_dir),
      lambda: run_grid(config, method, seed, log, knob), parts_only)
  return None if part is None else {**part, 'wall_s': float(part['wall_s'])}


def select(parts: list[dict]) -> dict:
  """The grid value chosen on validation over ``parts`` (one per seed).

  The best mean validation accuracy over seeds among values that stayed
  finite on every seed; a tie goes to the value nearer the recipe's.

  Returns:
    ``{'index', 'value', 'val_mean' [5], 'test_mean' [5], 'eligible'
    [5]}``.
  """
  val_mean = np.mean([p['val'].mean(axis=1) for p in parts], axis=0)
  test_mean = np.mean([p['test'].mean(axis=1) for p in parts], axis=0)
  eligible = ~np.any([p['nonfinite'] for p in parts], axis=0)
  if not eligible.any():
    raise RuntimeError('every grid value went non-finite on some seed.')
  # Ties go to the value nearer the middle of the grid (the recipe's).
  nearness = -np.abs(np.arange(len(val_mean)) - len(val_mean) // 2)
  order = np.lexsort((nearness, np.where(eligible, val_mean, -np.inf)))
  index = int(order[-1])
  return {'index': index, 'value': float(parts[0]['values'][index]),
          'val_mean': val_mean.tolist(), 'test_mean': test_mean.tolist(),
          'eligible': eligible.tolist()}


def main(argv):
  del argv
  if _OVERVIEW.value:
    print(overview_markdown())
    return
  get_config, known, reference = TASKS[_TASK.value]
  metric = METRICS.get(_TASK.value, 'accuracy')
  methods = clustered.checked_methods(_METHODS.value or known,
                                      dict.fromkeys(known))
  out = _OUT.value or default_out(_TASK.value, _KNOB.value)
  parts_dir, lines, log = clustered.parts_and_log(out)
  own_parts_dir = _OWN_PARTS_DIR.value or (
      None if _OUT.value else os.path.join(default_out(_TASK.value), 'parts'))
  t0 = time.time()
  seeds = list(range(_SEEDS.value))
  by_seed = [{m: load_or_run(get_config(m, s), m, s, parts_dir, log,
                             _PARTS_ONLY.value, _KNOB.value, own_parts_dir)
              for m in methods}
             for s in seeds]
  complete = [s for s, got in zip(seeds, by_seed) if all(got.values())]
  if not complete:
    raise app.UsageError(f'no seed has every method saved in {parts_dir}.')
  parts = {m: [by_seed[s][m] for s in complete] for m in methods}
  chosen = {m: select(parts[m]) for m in methods}
  # Seg silos hold a seed-dependent number of test slices: NaN-padded rows.
  scores = {m: {'all': stats.ragged_rows([p['test'][chosen[m]['index']]
                                          for p in parts[m]])}
            for m in methods}
  summary = fedhelp_power.summarize(scores, reference)
  for m in methods:
    config = get_config(m, 0)
    summary['methods'][m].update({
        'knob': knob_of(config, _KNOB.value), 'chosen': chosen[m]['value'],
        # At an end of the grid, a wider grid might have chosen further.
        'chosen_at_grid_edge': chosen[m]['index'] in (0, len(GRID_FACTORS) - 1),
        'grid': {'values': parts[m][0]['values'].tolist(),
                 'val_mean': chosen[m]['val_mean'],
                 'test_mean_not_used_for_selection': chosen[m]['test_mean'],
                 'eligible': chosen[m]['eligible']},
        'per_seed': [float(p['test'][chosen[m]['index']].mean())
                     for p in parts[m]],
        'dead_units': [float(p['dead_units'][chosen[m]['index']])
                       if 'dead_units' in p else None for p in parts[m]],
        'wall_s': sum(p['wall_s'] for p in parts[m])})
  summary.update({
      'arm': _TASK.value, 'task': _TASK.value, 'seeds': complete,
      'metric': metric, 'title': 'pFedNet, tuned on validation',
      'endpoint': f"{metric} of each silo's own test images, final state, "
                  'at the grid value chosen on validation',
      'protocol': {'grid_factors': list(GRID_FACTORS), 'knob': _KNOB.value,
                   'selection': 'best mean validation accuracy over seeds; '
                                'non-finite values ineligible; ties to the '
                                'recipe value'},
      'recipe': json.loads(get_config(reference, 0).to_json_best_effort()),
      'wall_time_s': time.time() - t0, 'log': lines})
  reporting.write_json(os.path.join(out, 'summary.json'), summary)
  np.savez_compressed(os.path.join(out, 'scores.npz'),
                      **{m: v['all'] for m, v in scores.items()})
  clustered.accuracy_figure(summary).savefig(os.path.join(out,
                                                          'accuracy.png'))
  print(fedhelp_power.markdown(summary, 'all'))
  print(grid_markdown(summary))


def grid_markdown(summary: dict) -> str:
  """Per method: its knob, the chosen value, and the grid's validation and
  (unused) test means."""
  lines = ['| method | knob | chosen | validation mean per value | test mean '
           'per value (not used) |', '|---|---|---|---|---|']
  for m, r in summary['methods'].items():
    g = r['grid']
    fmt = lambda xs: ' / '.join(f'{x:.3f}' for x in xs)
    edge = ' (grid edge)' if r['chosen_at_grid_edge'] else ''
    lines.append(f"| {m} | {r['knob']} | {r['chosen']:.3g}{edge} | "
                 f"{fmt(g['val_mean'])} | "
                 f"{fmt(g['test_mean_not_used_for_selection'])} |")
  return '\n'.join(lines)


# The result sets the overview reads, in order: (folder, what it is).
OVERVIEW_SETS = (
    ('pfednet_power_tabular', 'tabular, own knob, tuned'),
    ('pfednet_power_tabular_lr', 'tabular, lr knob, tuned'),
    ('pfednet_power_cls', 'PneumoniaMNIST CNN, tuned'),
    ('pfednet_power_seg', 'brain-slice UNet (Dice), tuned'),
    ('pfednet_power_clustered_labels', 'clustered labels, tuned'),
    ('pfednet_power_clustered_rotation', 'clustered rotation, tuned'),
    ('pfednet_clustered/labels', 'clustered labels, recipe values'),
    ('pfednet_clustered/rotation', 'clustered rotation, recipe values'),
)


def _difference_cell(summary: dict, a: str, b: str) -> str:
  pair = summary['paired'].get(f'{a}_vs_{b}')
  return '' if pair is None else fedhelp_power.difference_text(pair['all'])


def overview_row(label: str, summary: dict, reference: str = 'pfednet'
                 ) -> str:
  """One result set: ``reference``'s accuracy, the best baseline (the best
  mean among methods that are not ``reference`` or its graph ablations)
  and ``reference`` minus that baseline, FedAvg and Local (paired; 'n.d.'
  when the interval holds 0)."""
  methods = summary['methods']
  ref = methods[reference]['all']
  baselines = [m for m in methods if not m.startswith(reference)]
  best = max(baselines, key=lambda m: methods[m]['all']['mean'])
  cells = [label, f"{ref['n_seeds']} x {fedhelp_power.images_text(ref)}",
           f"{ref['mean']:.3f} [{ref['ci95'][0]:.3f}, {ref['ci95'][1]:.3f}]",
           f"{best} {methods[best]['all']['mean']:.3f}",
           _difference_cell(summary, reference, best),
           _difference_cell(summary, reference, 'fedavg'),
           _difference_cell(summary, reference, 'local'),
           _difference_cell(summary, reference, f'{reference}_oracle')]
  return '| ' + ' | '.join(cells) + ' |'


def overview_markdown(results_root: str = os.path.join('experiments',
                                                       'results')) -> str:
  """The pFedNet summary table of every committed result set of
  ``OVERVIEW_SETS`` (a set without ``summary.json`` is left out). Scores
  are accuracy, except Dice where the label says so."""
  lines = ['| result set | seeds x test images | pFedNet (95% CI) | best '
           'baseline | pFedNet - best baseline | pFedNet - FedAvg | '
           'pFedNet - Local | pFedNet - oracle graph |',
           '|---|---|---|---|---|---|---|---|']
  for folder, label in OVERVIEW_SETS:
    path = os.path.join(results_root, folder, 'summary.json')
    if os.path.exists(path):
      with open(path) as f:
        lines.append(overview_row(label, json.load(f)))
  return '\n'.join(lines)


def define_flags():
  """The command's flags (defined only when run as a command)."""
  global _TASK, _SEEDS, _METHODS, _OUT, _PARTS_ONLY, _KNOB, _OVERVIEW
  global _OWN_PARTS_DIR
  _TASK = flags.DEFINE_enum('task', 'tabular', sorted(TASKS), 'Which task.')
  _KNOB = flags.DEFINE_enum('knob', 'own', ['own', 'lr'],
                            "The knob every method tunes: its own, or 'lr'.")
  _SEEDS = flags.DEFINE_integer('seeds', 10, 'Data seeds.')
  _METHODS = flags.DEFINE_list('methods', [], 'Methods (default: the '
                               "task's).")
  _OUT = flags.DEFINE_string('out', None, 'Output directory.')
  _OWN_PARTS_DIR = flags.DEFINE_string(
      'own_parts_dir', None, "With --knob=lr: the own-knob table's parts, "
      'shared by the methods whose own knob is the lr (default: that '
      "table's folder when --out is not set).")
  _PARTS_ONLY = flags.DEFINE_bool('parts_only', False,
                                  'Summarize the saved parts; run nothing.')
  _OVERVIEW = flags.DEFINE_bool('overview', False, 'Print the summary '
                                'table of every committed pFedNet result '
                                'set; run nothing.')


if __name__ == '__main__':
  define_flags()
  app.run(main)
