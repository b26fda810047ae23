# Copyright 2026 The fedhelp_jax Authors. Licensed under the Apache License 2.0.
r"""Accuracy against epsilon under record-level DP-SGD, as one sweep call.

  python -m experiments.dp_sweep --dataset=pneumonia --method=fedavg \
      --out=experiments/results/dp_pneumonia

For each target epsilon and seed the noise multiplier is calibrated on the
host (``privacy.calibrate_noise``, dp-accounting, the worst silo of that
seed's federation at delta = 1 / its largest silo), then ONE ``sweep.run_sweep``
call runs every (noise multiplier, seed) config; configs of one seed share
a program (a seed draws the small silos' sizes, so seeds differ in shapes).
Every config reports the epsilon its own federation spends. Two
references come from the same call and recipe: clip only (DP-SGD at sigma
0: the same clipped steps, no guarantee) and non-private
(``dp.level='none'``). Every method runs the FedHelp table's recipe
(``fedhelp_cls``), so methods differ only in the algorithm, and seed ``s``
of two methods is the same partition and test draw (``--markdown_only``
pairs them). ``--time_sequential`` also runs seed 0's configs one by one and
records both wall times. ``--timing_only`` runs just that comparison (on a
quiet machine; e.g. ``--rounds=2``) and writes it, with the device, to
``benchmarks/results/dp_sweep_<method>-<backend>.json``.

Writes ``<out>/<method>.json``: per target epsilon, the calibrated sigma,
the epsilons spent, and per group (small, large, all) the mean accuracy
over seeds with its sample SD, 95% t-interval and per-seed values.
"""

import os
import time

from absl import app
from absl import flags
import ml_collections
import numpy as np
from scipy import stats as sp_stats

from experiments import fedhelp_power
from experiments.configs import fedhelp_cls
from fedhelp_jax import experiment
from fedhelp_jax import privacy
from fedhelp_jax import reporting
from fedhelp_jax import sweep

_DATASETS = {'pneumonia': ('pneumonia', 2), 'blood': ('blood', 8)}


def base_config(dataset: str, method: str, rounds: int | None = None,
                lr: float | None = None) -> ml_collections.ConfigDict:
  """The FedHelp table's recipe (``fedhelp_cls``: 3 large + 20 small silos,
  10 rounds of 5 local steps of batch 16, SGD lr 0.05, uniform aggregation)
  for EVERY method, so FedAvg and FedHelp differ only in the algorithm, on
  ``dataset``, with DP-SGD switched on."""
  c = fedhelp_cls.get_config(method)
  subset, classes = _DATASETS[dataset]
  c.dataset.subset = subset
  c.num_classes = classes
  c.num_devices = 1  # A sweep runs its config axis on one device.
  c.progress = False
  c.eval_every = 10
  if rounds is not None:
    c.rounds = rounds
  if lr is not None:  # Every model's learning rate (S, and FedHelp's L_k).
    for name in ('lr', 'lr_large'):
      if name in c.hparams:
        c.hparams[name] = lr
  c.dp = ml_collections.ConfigDict({'level': 'record', 'clip_norm': 1.0,
                                    'noise_multiplier': 1.0})
  return c


def calibrate(config, targets) -> list[float]:
  """Sigma for each of ``targets`` (epsilons) over the config's rounds; the
  federation (its silos' sizes) is built once for all of them."""
  raw = experiment.load_raw(config)
  fed, _ = experiment.build_federation(config, raw)
  local = config.local
  silos = experiment.silo_budgets(config, fed)
  return [privacy.calibrate_noise(
      silos, rounds=int(config.rounds), target_epsilon=target,
      batch_size=int(local.batch_size),
      max_batch=2 * int(local.batch_size), sampling='poisson',
      delta=1.0 / max(s.n for s in silos), accountant='pld')
          for target in targets]


def time_one_program(configs) -> dict:
  """Wall seconds of ``configs`` as one ``run_sweep`` call against one
  ``run_sweep`` call per config (each compiles its own program)."""
  t0 = time.time()
  sweep.run_sweep(configs, verbose=False)
  t1 = time.time()
  for c in configs:
    sweep.run_sweep([c], verbose=False)
  return {'timed_configs': len(configs), 'one_program_wall_s': t1 - t0,
          'one_by_one_wall_s': time.time() - t1}


def write_timing(base, targets, dataset: str, method: str) -> None:
  """``time_one_program`` on seed 0's private configs, with the device."""
  from benchmarks import common  # pylint: disable=g-import-not-at-top
  record = common.device_record()
  seed0 = base.copy_and_resolve_references()
  seed0.seed = 0
  configs = []
  for sigma in calibrate(seed0, targets):
    c = seed0.copy_and_resolve_references()
    c.hparams.dp_noise_multiplier = sigma
    configs.append(c)
  record.update(time_one_program(configs), dataset=dataset,
                method=method, target_epsilons=targets,
                rounds=int(base.rounds),
                note='wall seconds include compilation; one program is one '
                     'run_sweep call, one by one is one call per config')
  print(record, flush=True)
  print(common.write_result(f'dp_sweep_{method}', record,
                            common.RESULTS_DIR))


def test_images(config) -> int:
  """Test images one config is scored on: every silo's own draw."""
  p = config.partition
  return int(p.test_size) * (int(p.num_large) + int(p.num_small))


def summarize(values) -> dict:
  """Mean, sample SD and 95% t-interval over seeds, and the per-seed
  values (in seed order, for paired comparisons across methods)."""
  v = np.asarray(values, np.float64)
  mean, sd = float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else 0.0
  half = (float(sp_stats.t.ppf(0.975, len(v) - 1)) * sd / np.sqrt(len(v))
          if len(v) > 1 else float('nan'))
  return {'mean': mean, 'sd': sd, 'ci95': [mean - half, mean + half],
          'n_seeds': len(v), 'values': v.tolist()}


_MARKER = '<!-- generated below -->'


def _row_label(row) -> str:
  kind = row.get('kind', 'private')
  if kind == 'clip_only':
    return 'clip only (sigma 0)'
  if kind == 'non_private' or row['target_epsilon'] is None:
    return 'non-private'
  return f"{row['target_epsilon']:g}"


def _recipe(d: dict) -> str:
  """The recipe's distinguishing settings, for headings."""
  hp = d.get('recipe', {}).get('hparams', {})
  return f"lr {hp['lr']:g}" if 'lr' in hp else 'recipe lr'


def _interval(summary) -> str:
  lo, hi = summary['ci95']
  return f"{summary['mean']:.3f} [{lo:.3f}, {hi:.3f}]"


def method_table(d: dict, path: str) -> list[str]:
  """One method's accuracy against epsilon, from its JSON."""
  rows = d['rows']
  n = rows[0]['small']['n_seeds']
  images = rows[0].get('n_test_images')
  out = [f"### {d['dataset']}, {d['method']}, {_recipe(d)} (`{path}`)", '',
         f'Record-level DP-SGD, {n} seeds per row'
         + (f', {images} test images per seed' if images else '')
         + f"; accuracy on {d['accuracy_on']}; mean [95% t-interval over "
         f"seeds]; delta = {d['delta']}.", '',
         '| target epsilon | epsilon spent (per seed) | noise multiplier '
         '| small | large | all |', '|---|---|---|---|---|---|']
  for r in rows:
    spent = ', '.join('inf' if v is None else f'{v:.3g}'
                      for v in r['epsilon_spent'])
    sigma = ', '.join(f'{v:.3g}' for v in np.atleast_1d(r['noise_multiplier']))
    cells = [_interval(r[g]) for g in ('small', 'large', 'all')]
    out.append(f'| {_row_label(r)} | {spent} | {sigma} | '
               + ' | '.join(cells) + ' |')
  t = d['timing']
  out += ['', f"One `run_sweep` call: {t['configs']} configs in "
          f"{t['programs']} programs, {t['sweep_wall_s']:.0f} s."]
  if 'one_program_wall_s' in t:
    out.append(f"Wall time, {t['timed_configs']} configs of seed 0: one "
               f"program {t['one_program_wall_s']:.0f} s, one by one "
               f"{t['one_by_one_wall_s']:.0f} s.")
  return out + ['']


def paired_seeds(a, b) -> dict:
  """A minus B over seed pairs: mean, 95% t-interval, paired t-test p,
  sign count; ``detectable`` is False when the interval holds 0."""
  diff = np.asarray(a, np.float64) - np.asarray(b, np.float64)
  s = summarize(diff)
  p = (float(sp_stats.ttest_rel(a, b).pvalue)
       if len(diff) > 1 and np.any(diff != diff[0]) else float('nan'))
  return {'mean': s['mean'], 'ci95': s['ci95'], 'p_value': p,
          'sign_count': [int(np.sum(diff > 0)), int(np.sum(diff < 0))],
          'detectable': not s['ci95'][0] <= 0.0 <= s['ci95'][1]}


def _difference_cells(row_a, row_b, tests: bool) -> str:
  """Table cells of ``row_a`` minus ``row_b`` per group, paired by seed;
  ``tests`` adds the paired t-test p and the sign count."""
  cells = []
  for g in ('small', 'large', 'all'):
    c = paired_seeds(row_a[g]['values'], row_b[g]['values'])
    extra = (f" p={c['p_value']:.2g} {c['sign_count'][0]}/"
             f"{c['sign_count'][1]}") if tests else ''
    cells.append(fedhelp_power.difference_text(c, extra))
  return ' | '.join(cells)


def comparison_table(a: dict, b: dict) -> list[str]:
  """``a``'s method minus ``b``'s, row by row (same dataset, recipe and
  seeds: seed ``s`` of both is the same partition and test draw)."""
  out = [f"### {a['dataset']}, {_recipe(a)}: {a['method']} minus "
         f"{b['method']}", '',
         'Paired by seed (each seed is its own partition and test draw, the '
         'same for both methods); mean difference [95% t-interval over seed '
         'pairs], paired t-test p, seeds won/lost. An interval holding 0 is '
         '"n.d." (no detectable difference).', '',
         '| target epsilon | small | large | all |', '|---|---|---|---|']
  rows_b = {_row_label(r): r for r in b['rows']}
  for ra in a['rows']:
    rb = rows_b.get(_row_label(ra))
    if rb is None or ra['seeds'] != rb['seeds']:
      continue
    out.append(f'| {_row_label(ra)} | {_difference_cells(ra, rb, True)} |')
  return out + ['']


def noise_cost_table(d: dict) -> list[str]:
  """Each private row minus the clip-only row of the same method, paired
  by seed: what the noise costs once the clipping is held fixed."""
  ref = next((r for r in d['rows'] if r.get('kind') == 'clip_only'), None)
  if ref is None:
    return []
  out = [f"### {d['dataset']}, {d['method']}, {_recipe(d)}: private minus "
         'clip only', '',
         'What the noise alone costs (the same clipped steps at sigma 0 is '
         'the reference); paired by seed, as above.', '',
         '| target epsilon | small | large | all |', '|---|---|---|---|']
  for r in d['rows']:
    if r.get('kind', 'private') != 'private':
      continue
    out.append(f'| {_row_label(r)} | {_difference_cells(r, ref, False)} |')
  return out + ['']


def epsilon_figure(runs: dict, group: str = 'small'):
  """Accuracy against epsilon per method, 95% t-band over seeds, with its
  clip-only (dotted) and non-private (dashed) levels (a
  ``matplotlib.figure.Figure``, no pyplot state)."""
  from matplotlib import figure as mpl_figure  # pylint: disable=g-import-not-at-top
  fig = mpl_figure.Figure(figsize=(6.0, 4.0), dpi=100)
  ax = fig.add_subplot()
  for i, (method, d) in enumerate(sorted(runs.items())):
    color = f'C{i}'
    private = [r for r in d['rows'] if r.get('kind', 'private') == 'private']
    eps = [r['target_epsilon'] for r in private]
    ax.plot(eps, [r[group]['mean'] for r in private], 'o-', color=color,
            label=method)
    ax.fill_between(eps, [r[group]['ci95'][0] for r in private],
                    [r[group]['ci95'][1] for r in private], color=color,
                    alpha=0.15)
    for r in d['rows']:
      style = {'clip_only': ':', 'non_private': '--'}.get(r.get('kind'))
      if style:
        ax.axhline(r[group]['mean'], color=color, linestyle=style,
                   linewidth=1)
  ax.set_xscale('log')
  ticks = sorted({r['target_epsilon'] for d in runs.values()
                  for r in d['rows'] if r.get('kind', 'private') == 'private'})
  ax.set_xticks(ticks, [f'{e:g}' for e in ticks])
  ax.minorticks_off()
  ax.set_xlabel('target epsilon (record level)')
  ax.set_ylabel(f'{group} silos: accuracy')
  d = next(iter(runs.values()))
  ax.set_title(f"{d['dataset']}, {_recipe(d)}: dotted = clip only, dashed "
               f"= non-private; {d['rows'][0][group]['n_seeds']} seeds",
               fontsize=9)
  ax.legend(fontsize=8)
  fig.tight_layout()
  return fig


_FIGURE = 'accuracy_vs_epsilon.png'


def _has_seed_values(runs: dict) -> bool:
  return bool(runs) and all('values' in d['rows'][0]['small']
                            for d in runs.values())


def _load_folders(results_root: str) -> dict:
  """``{folder: {method: result}}`` of every ``dp_*`` folder."""
  import glob  # pylint: disable=g-import-not-at-top
  import json  # pylint: disable=g-import-not-at-top
  folders = {}
  for folder in sorted(glob.glob(os.path.join(results_root, 'dp_*'))):
    folders[folder] = {}
    for path in sorted(glob.glob(os.path.join(folder, '*.json'))):
      with open(path) as f:
        folders[folder][os.path.basename(path)[:-5]] = json.load(f)
  return folders


def markdown(results_root: str = os.path.join('experiments', 'results')
             ) -> str:
  """Tables of every committed ``dp_*/<method>.json``, from the JSON alone,
  and FedHelp minus FedAvg where both ran with per-seed values."""
  import glob  # pylint: disable=g-import-not-at-top
  import json  # pylint: disable=g-import-not-at-top
  out = []
  for folder, runs in _load_folders(results_root).items():
    for method, d in runs.items():
      out += method_table(d, os.path.relpath(
          os.path.join(folder, f'{method}.json')))
      out += noise_cost_table(d)
    if _has_seed_values(runs):  # write_markdown draws it.
      png = os.path.join(folder, _FIGURE)
      out += [f'![accuracy against epsilon]({os.path.relpath(png, "docs")})',
              '']
    if 'fedhelp' in runs and 'fedavg' in runs and _has_seed_values(runs):
      out += comparison_table(runs['fedhelp'], runs['fedavg'])
  for path in sorted(glob.glob(os.path.join('benchmarks', 'results',
                                            'dp_sweep_*-*.json'))):
    with open(path) as f:
      t = json.load(f)
    out += [f'### One program against one by one (`{path}`)', '',
            f"{t['timed_configs']} private configs ({t['dataset']}, "
            f"{t['method']}, seed 0, target epsilons {t['target_epsilons']}, "
            f"{t['rounds']} rounds) on {t['device']} ({t['host_cpu_model']}, "
            f"{t['host_cpus']} CPUs, load {t.get('load_avg_1m_at_start')} at "
            f"start): one `run_sweep` call {t['one_program_wall_s']:.0f} s, "
            f"one call per config {t['one_by_one_wall_s']:.0f} s "
            f"(ratio {t['one_by_one_wall_s'] / t['one_program_wall_s']:.2f}; "
            'compilation included).', '']
  return '\n'.join(out)


def write_markdown(doc: str = os.path.join('docs', 'privacy.md'),
                   results_root: str = os.path.join('experiments', 'results')
                   ) -> None:
  """Replaces what follows the marker in ``doc`` by ``markdown()``, and
  draws each folder's ``accuracy_vs_epsilon.png``."""
  for folder, runs in _load_folders(results_root).items():
    if _has_seed_values(runs):
      epsilon_figure(runs).savefig(os.path.join(folder, _FIGURE))
  with open(doc) as f:
    text = f.read()
  head = text.split(_MARKER)[0].rstrip('\n')
  with open(doc, 'w') as f:
    f.write(f"{head}\n\n{_MARKER}\n\n{markdown(results_root)}")


def sweep_configs(base, sigmas: dict, seeds) -> tuple[list, list]:
  """Every config of one sweep call, and its ``(label, seed)``.

  Args:
    base: the recipe (``base_config``).
    sigmas: ``{(target_epsilon, seed): noise multiplier}``.
    seeds: the seeds of the two references.

  Returns:
    The private configs (label: the target epsilon), then two references
    from the same recipe: clipping alone (label 'clip_only': DP-SGD at sigma
    0, no guarantee, the same clipped steps), which separates what the clip
    does from what the noise does, and the non-private run ('non_private').
  """
  configs, labels = [], []
  for (e, s), sigma in sigmas.items():
    c = base.copy_and_resolve_references()
    c.seed = s
    c.hparams.dp_noise_multiplier = sigma
    configs.append(c)
    labels.append((e, s))
  for kind in ('clip_only', 'non_private'):
    for s in seeds:
      c = base.copy_and_resolve_references()
      c.seed = s
      if kind == 'clip_only':
        c.hparams.dp_noise_multiplier = 0.0
      else:
        c.dp.level = 'none'
      configs.append(c)
      labels.append((kind, s))
  return configs, labels


def main(argv):
  del argv
  if _MARKDOWN_ONLY.value:
    write_markdown()
    return
  base = base_config(_DATASET.value, _METHOD.value, _ROUNDS.value,
                     _LR.value)
  if _TIMING_ONLY.value:
    write_timing(base, [float(e) for e in _EPSILONS.value], _DATASET.value,
                 _METHOD.value)
    return
  targets = [float(e) for e in _EPSILONS.value]
  seeds = list(range(_SEEDS.value))
  t0 = time.time()
  by_seed = {}
  for s in seeds:
    c = base.copy_and_resolve_references()
    c.seed = s
    # Each seed's own federation (its small silos' sizes) sets sigma.
    by_seed[s] = calibrate(c, targets)
  # In sweep order: target epsilon outer, seed inner.
  sigmas = {(e, s): by_seed[s][i] for i, e in enumerate(targets)
            for s in seeds}
  print(f'[dp_sweep] calibrated noise multipliers: {sigmas} '
        f'({time.time() - t0:.0f}s)', flush=True)
  configs, labels = sweep_configs(base, sigmas, seeds)
  t_sweep = time.time()
  results = sweep.run_sweep(configs, verbose=True)
  sweep_wall = time.time() - t_sweep
  rows = []
  for e in targets + ['clip_only', 'non_private']:
    got = [r for r, (le, _) in zip(results, labels) if le == e]
    private = not isinstance(e, str)
    row = {'kind': 'private' if private else e,
           'target_epsilon': e if private else float('inf'),
           'noise_multiplier': [sigmas.get((e, s), 0.0) for s in seeds],
           'epsilon_spent': [r.get('privacy', {}).get('epsilon',
                                                      float('inf'))
                             for r in got],
           'seeds': [r['seed'] for r in got],
           'n_test_images': test_images(base)}
    for g in ('small', 'large', 'all'):
      row[g] = summarize([r['final']['summary'][g]['accuracy'] for r in got])
    rows.append(row)
    print(f"[dp_sweep] {e}: sigma {row['noise_multiplier']}, "
          f"small {row['small']['mean']:.4f}, large {row['large']['mean']:.4f}",
          flush=True)
  timing = {'sweep_wall_s': sweep_wall, 'configs': len(configs),
            'programs': len({r['program'] for r in results})}
  if _TIME_SEQUENTIAL.value:
    # Seed 0's private configs: one program, against one by one.
    timing.update(time_one_program(
        [c for c, (e, s) in zip(configs, labels)
         if s == 0 and not isinstance(e, str)]))
  out = _OUT.value or os.path.join('experiments', 'results',
                                   f'dp_{_DATASET.value}')
  os.makedirs(out, exist_ok=True)
  reporting.write_json(os.path.join(out, f'{_METHOD.value}.json'), {
      'dataset': _DATASET.value, 'method': _METHOD.value,
      'recipe': base.to_dict(), 'rows': rows, 'timing': timing,
      'accuracy_on': 'each silo\'s own test draw (100 images per silo)',
      'delta': 'one over the largest silo\'s records',
      'wall_time_s': time.time() - t0})


def define_flags():
  """The command's flags (defined only when run as a command, so importing
  the module next to other experiment scripts defines none)."""
  global _DATASET, _METHOD, _EPSILONS, _SEEDS, _ROUNDS, _TIME_SEQUENTIAL
  global _TIMING_ONLY, _OUT, _MARKDOWN_ONLY, _LR
  _DATASET = flags.DEFINE_enum('dataset', 'pneumonia', list(_DATASETS),
                               'MedMNIST subset.')
  _METHOD = flags.DEFINE_enum('method', 'fedavg', ['fedavg', 'fedhelp'],
                              'Algorithm.')
  _EPSILONS = flags.DEFINE_list('epsilons', ['0.5', '1', '2', '4', '8'],
                                'Target epsilons.')
  _SEEDS = flags.DEFINE_integer('seeds', 3, 'Seeds per epsilon.')
  _ROUNDS = flags.DEFINE_integer('rounds', None,
                                 "Rounds per run (default: the recipe's).")
  _LR = flags.DEFINE_float(
      'lr', None, "Every model's learning rate, for every method (default: "
      "the recipe's 0.05).")
  _TIME_SEQUENTIAL = flags.DEFINE_bool(
      'time_sequential', False, "Also run seed 0's configs one by one.")
  _TIMING_ONLY = flags.DEFINE_bool(
      'timing_only', False, "Only time seed 0's private configs as one "
      'program against one by one (benchmarks/results/dp_sweep_*.json).')
  _OUT = flags.DEFINE_string('out', None, 'Output directory.')
  _MARKDOWN_ONLY = flags.DEFINE_bool(
      'markdown_only', False, 'Only regenerate the tables of docs/privacy.md '
      'from the committed JSON.')


if __name__ == '__main__':
  define_flags()
  app.run(main)
