# Copyright 2026 The fedhelp_jax Authors. Licensed under the Apache License 2.0.
r"""FedHelp vs baselines with the power to see an effect.

  python -m experiments.fedhelp_power --experiment=cls_authors \
      --train_seeds=5 --partition_seeds=2 --rounds=30 \
      --out=experiments/results/fedhelp_power_pneumonia

Every (training seed, partition seed) pair runs every method on the same
partition; every silo's evaluation model is scored on the WHOLE official
test split (``config.common_test``), so all methods and silos answer on the
same images. The primary endpoint is the small group's accuracy on that
common set, averaged over the last ``--last_evals`` evaluations. Per image,
a method's small-group score is the fraction of (small silo, evaluation)
pairs that got it right; ``stats.hierarchical_bootstrap`` resamples seed
pairs and images for each method's 95% interval, and
``stats.paired_comparison`` gives FedHelp minus each baseline (bootstrap
interval of the difference, paired t over seed pairs, sign count, McNemar).

Writes ``<out>/summary.json`` (``methods[m][group]`` with ``mean``, ``sd``,
``ci95``, ``n_seeds``, ``n_test_images``; ``paired['fedhelp_vs_<m>']``;
``protocol``) and ``<out>/scores.npz`` (the per-image scores behind it).
``fedavg_samples`` is FedAvg with sample-count weights, the conventional
reference (every other method keeps the recipe's aggregation).
"""

import importlib
import json
import os
import time

from absl import app
from absl import flags
import numpy as np

from experiments import fedhelp_table_lib as table_lib
from fedhelp_jax import experiment
from fedhelp_jax import reporting
from fedhelp_jax import runner
from fedhelp_jax import stats
from fedhelp_jax import validate

# Name -> (registered algorithm, config overrides). 'fedavg_samples' is
# the conventional FedAvg (sample-count weights); 'fedhelp_no_fm' drops the
# small silos' FM distillation (the positive control's ablation); 'central'
# pools the silos' data (the positive control's precondition);
# 'fedhelp_no_forward_kd' drops step A's KD from L_k into S (the teacher
# variant's ablation). A callable value is computed from the config.
METHODS = {'fedhelp': ('fedhelp', {}), 'fedavg': ('fedavg', {}),
           'fedavg_fm': ('fedavg_fm', {}), 'local': ('local', {}),
           'fedavg_samples': ('fedavg', {'aggregation': 'samples'}),
           'fedhelp_no_fm': ('fedhelp', {'fedhelp.fm_kd': False}),
           'fedhelp_no_forward_kd': ('fedhelp',
                                     {'hparams.lambda_forward': 0.0}),
           'central': ('central', {}),
           # The FM channel's diagnosis (the positive control): distil
           # through the task head instead of the public head, or 4x the
           # weight, for FedHelp and FedAvg+FM alike.
           'fedhelp_fm_main': ('fedhelp', {'fedhelp.fm_head': 'main'}),
           'fedavg_fm_main': ('fedavg_fm', {'fedhelp.fm_head': 'main'}),
           'fedhelp_fm_x4': ('fedhelp', {'hparams.lambda_fm': 4.0}),
           'fedavg_fm_x4': ('fedavg_fm', {'hparams.lambda_fm': 4.0}),
           # The teacher's precondition: each silo trains the LARGE model
           # alone (its 'large' group score is L_k without federation).
           'local_large': ('local', {'model': lambda c: c.large_model}),
           # One L for the large group, averaged by the server (the
           # authors' code trains one large model across the large silos).
           'fedhelp_shared_large': ('fedhelp',
                                    {'fedhelp.large_sharing': 'average'})}


def method_config(get_config, method: str, *, partition_seed: int,
                  rounds: int):
  """One method's config: the experiment's recipe for its algorithm, with
  the run's rounds, partition seed and common-test scoring."""
  algorithm, overrides = METHODS[method]
  config = get_config(algorithm)
  config.seed = int(partition_seed)
  config.rounds = int(rounds)
  config.common_test = True
  for path, value in overrides.items():
    *parents, leaf = path.split('.')
    node = config
    for name in parents:
      node = node[name]
    node[leaf] = value(config) if callable(value) else value
  validate.validate_config(config)
  return config


def image_scores(result, info, last_evals: int) -> dict[str, np.ndarray]:
  """Per group, per image: the fraction of (silo, last evaluations) that
  classified the image correctly (``[N]``; 'all' weights every silo alike,
  as the group summaries do)."""
  kept = result.common_correct[-last_evals:]
  out = {}
  for g in info['groups']:
    out[g] = np.mean([c['correct'][g].mean(axis=0) for c in kept], axis=0)
  every = [np.concatenate([c['correct'][g] for g in info['groups']])
           for c in kept]
  out['all'] = np.mean([e.mean(axis=0) for e in every], axis=0)
  return out


def run_partition(get_config, methods, *, train_seeds, partition_seed: int,
                  rounds: int, last_evals: int, log, parts_dir=None):
  """Every method on one partition, its training seeds as one program.

  The K = len(train_seeds) runs of a method share the partition, so they go
  through ``runner.run`` together (one compile, a map or vmap over seeds, as
  the backend's measured plan says). With ``parts_dir``, each method's
  scores are saved there as they finish and reused when present, so an
  interrupted table continues where it stopped.

  Returns:
    ``{method: {'scores': {group: [K, N]}, 'wall_s', 'protocol'}}`` and,
    for methods trained here (not reused), ``'common_summary'``: per seed,
    the last evaluation's group metrics on the common test set.
  """
  base = method_config(get_config, methods[0], partition_seed=partition_seed,
                       rounds=rounds)
  raw = experiment.load_raw(base)
  partitioned = experiment.build_federation(base, raw)
  common = runner.CommonTest(np.asarray(raw['test_x']),
                             np.asarray(raw['test_y']))
  out = {}
  for m in methods:
    config = method_config(get_config, m, partition_seed=partition_seed,
                           rounds=rounds)
    part = parts_dir and os.path.join(
        parts_dir, f'{m}-p{partition_seed}-t{"_".join(map(str, train_seeds))}'
        f'-r{rounds}-l{last_evals}.npz')
    # Prepared even when reused: the protocol names the FM (cached on disk).
    fed = experiment.prepare_federation(config, raw, partitioned)
    if part and os.path.exists(part):
      with np.load(part, allow_pickle=False) as f:
        out[m] = {'scores': {k: f[k] for k in f.files if k != 'wall_s'},
                  'wall_s': float(f['wall_s'])}
      log(f'[{m}] partition {partition_seed}: reused {part}')
    else:
      program = runner.build_program(config, fed.task, fed.groups, fed.info)
      t0 = time.time()
      results = runner.run(
          program, [fed._replace(seed=int(t)) for t in train_seeds],
          rounds=rounds, eval_every=int(config.eval_every), nonfinite='stop',
          common_test=common,
          labels=[f'{m} seed {t} partition {partition_seed}'
                  for t in train_seeds])
      per_seed = [image_scores(r, fed.info, last_evals) for r in results]
      scores = {g: np.stack([s[g] for s in per_seed]) for g in per_seed[0]}
      out[m] = {'scores': scores, 'wall_s': time.time() - t0,
                'common_summary': [r.final_common['summary']
                                   for r in results]}
      if part:
        np.savez(part, wall_s=out[m]['wall_s'], **scores)
    out[m]['protocol'] = table_lib.protocol_record(config, fed.info.get('fm'))
    scores = out[m]['scores']
    log(f'[{m}] partition {partition_seed}, seeds {list(train_seeds)}: '
        + ', '.join(f'{g} {scores[g].mean():.4f}' for g in scores)
        + f' ({out[m]["wall_s"]:.1f}s)')
  return out


def summarize(scores: dict[str, dict[str, np.ndarray]],
              reference: str = 'fedhelp',
              extra_pairs: tuple[tuple[str, str], ...] = ()) -> dict:
  """``methods[m][group]`` intervals and ``paired[ref_vs_m]`` tests from
  ``scores[m][group] [pairs, N]``; each ``(a, b)`` of ``extra_pairs`` adds
  ``paired[a_vs_b]`` (e.g. the teacher's precondition, ``local_large`` vs
  ``fedavg``)."""
  summary = {'methods': {}, 'paired': {}}
  for m, by_group in scores.items():
    summary['methods'][m] = {g: stats.hierarchical_bootstrap(v)
                             for g, v in by_group.items()}
  pairs = [(reference, m) for m in scores
           if reference in scores and m != reference]
  for a, b in extra_pairs:
    unknown = sorted({a, b} - set(scores))
    if unknown:
      raise ValueError(f'compared methods {unknown} were not run; ran '
                       f'{sorted(scores)}.')
    pairs.append((a, b))
  for a, b in pairs:
    summary['paired'][f'{a}_vs_{b}'] = {
        g: stats.paired_comparison(scores[a][g], scores[b][g], correct=False)
        for g in scores[b]}
  return summary


def difference_text(r: dict, extra: str = '') -> str:
  """A paired difference ``r`` (``mean``, ``ci95``, ``detectable``) as
  ``+m [+lo, +hi]``, then ``extra``, then ' n.d.' when its interval holds
  0 (no detectable difference)."""
  return (f"{r['mean']:+.3f} [{r['ci95'][0]:+.3f}, {r['ci95'][1]:+.3f}]"
          f"{extra}{'' if r['detectable'] else ' n.d.'}")


def images_text(r: dict) -> str:
  """Test images per seed of an interval ``r``: ``N``, or ``lo-hi`` where
  each data seed drew its own test set of a different size."""
  counts = r.get('n_test_images_per_seed')
  if counts and min(counts) != max(counts):
    return f'{min(counts)}-{max(counts)}'
  return str(r['n_test_images'])


def markdown(summary: dict, group: str = 'small') -> str:
  """The table of a ``summary.json``: per method the mean, SD and 95%
  interval of ``group``, then FedHelp minus each method (paired)."""
  lines = ['| method | mean | SD over seeds | 95% CI | seed pairs | test images |',
           '|---|---|---|---|---|---|']
  for m, by_group in summary['methods'].items():
    r = by_group[group]
    lines.append(f"| {m} | {r['mean']:.4f} | {r['sd']:.4f} | "
                 f"[{r['ci95'][0]:.4f}, {r['ci95'][1]:.4f}] | {r['n_seeds']} "
                 f"| {images_text(r)} |")
  lines += ['', '| comparison | mean difference | 95% CI | paired t p | '
            'sign (+/-) | reading |', '|---|---|---|---|---|---|']
  for name, by_group in summary['paired'].items():
    r = by_group[group]
    reading = ('detectable' if r['detectable']
               else 'no detectable difference')
    lines.append(f"| {name} | {r['mean']:+.4f} | [{r['ci95'][0]:+.4f}, "
                 f"{r['ci95'][1]:+.4f}] | {r['p_value']:.3f} | "
                 f"{r['sign_count'][0]}/{r['sign_count'][1]} | {reading} |")
  return '\n'.join(lines)


def interval_bars_figure(summary: dict, groups, *,
                         highlight: str, xlabel: str, title: str,
                         best_on_top: bool = False):
  """Per group, each method's mean with its 95% interval, one bar a method.

  Args:
    summary: a powered summary (``summary['methods'][m][group]`` holds
      ``mean`` and ``ci95``).
    groups: one panel per group, side by side.
    highlight: methods whose name starts with it are coloured.
    xlabel: format string of each panel's x label (``{group}`` fills in).
    title: each panel's title.
    best_on_top: order the methods by the last group's mean.
  """
  from matplotlib import figure as mpl_figure  # pylint: disable=g-import-not-at-top
  methods = list(summary['methods'])
  if best_on_top:
    methods.sort(key=lambda m: summary['methods'][m][groups[-1]]['mean'])
  fig = mpl_figure.Figure(
      figsize=(max(6.5, 5.0 * len(groups)), 0.4 * len(methods) + 1.4),
      dpi=100)
  for i, g in enumerate(groups):
    ax = fig.add_subplot(1, len(groups), i + 1)
    rows = [summary['methods'][m][g] for m in methods]
    ax.barh(range(len(methods)), [r['mean'] for r in rows],
            xerr=[[r['mean'] - r['ci95'][0] for r in rows],
                  [r['ci95'][1] - r['mean'] for r in rows]],
            color=['tab:orange' if m.startswith(highlight) else 'tab:gray'
                   for m in methods], capsize=3)
    ax.set_yticks(range(len(methods)),
                  methods if i == 0 else [''] * len(methods))
    ax.set_xlim(min(r['ci95'][0] for r in rows) - 0.02,
                max(r['ci95'][1] for r in rows) + 0.01)
    ax.set_xlabel(xlabel.format(group=g))
    ax.set_title(title, fontsize=10)
  fig.tight_layout()
  return fig


def figure(summary: dict, groups=('small', 'large')):
  """Per group, each method's mean with its 95% interval, titled with the
  seed pairs and test images it rests on."""
  n = next(iter(summary['methods'].values()))[groups[0]]
  fig = interval_bars_figure(
      summary, groups, highlight='fedhelp',
      xlabel='{group} group: accuracy on the common test set (95% CI)',
      title=f"{n['n_seeds']} seed pairs x {images_text(n)} images")
  fig.suptitle(summary.get('experiment', ''), fontsize=10)
  fig.tight_layout()
  return fig


def precondition(fm_test_accuracy: float, central: dict) -> dict:
  """Whether the FM knows the task better than the silos' pooled data can
  teach: its own test accuracy against ``central``'s 95% interval (both on
  the whole official test split)."""
  hi = central['all']['ci95'][1]
  holds = bool(fm_test_accuracy > hi)
  return {'fm_test_accuracy': float(fm_test_accuracy),
          'central_all': central['all'], 'holds': holds,
          'reading': (f'FM test accuracy {fm_test_accuracy:.4f} '
                      f"{'above' if holds else 'NOT above'} central's 95% "
                      f"interval [{central['all']['ci95'][0]:.4f}, {hi:.4f}]")}


def main(argv):
  del argv
  if _CONFIG_MODULE.value:
    module = importlib.import_module(_CONFIG_MODULE.value)
  else:
    module = importlib.import_module(
        f'experiments.configs.fedhelp_{_EXPERIMENT.value}')
  out = _OUT.value or os.path.join('experiments', 'results',
                                   f'fedhelp_power_{_EXPERIMENT.value}')
  os.makedirs(out, exist_ok=True)
  methods = list(_METHODS.value)
  unknown = sorted(set(methods) - set(METHODS))
  if unknown:
    raise app.UsageError(f'--methods: unknown {unknown}; known '
                         f'{sorted(METHODS)}.')
  t0 = time.time()
  lines = []

  def log(msg):
    print(msg, flush=True)
    lines.append(msg)

  train_seeds = list(range(_TRAIN_SEEDS.value))
  pairs = [(t, p) for p in range(_PARTITION_SEEDS.value) for t in train_seeds]
  parts_dir = os.path.join(out, 'parts')
  os.makedirs(parts_dir, exist_ok=True)
  per_partition, protocol, walls = [], None, {m: 0.0 for m in methods}
  for p in range(_PARTITION_SEEDS.value):
    res = run_partition(module.get_config, methods, train_seeds=train_seeds,
                        partition_seed=p, rounds=_ROUNDS.value,
                        last_evals=_LAST_EVALS.value, log=log,
                        parts_dir=parts_dir)
    per_partition.append(res)
    protocol = protocol or res[methods[0]]['protocol']
    for m in methods:
      walls[m] += res[m]['wall_s']
  # Rows are (partition, training seed) pairs, in ``pairs`` order.
  scores = {m: {g: np.concatenate([r[m]['scores'][g] for r in per_partition])
                for g in per_partition[0][m]['scores']} for m in methods}
  extra = [tuple(spec.split(':')) for spec in _COMPARE.value]
  if any(len(pair) != 2 for pair in extra):
    raise app.UsageError(f'--compare takes a:b pairs; got {_COMPARE.value}.')
  summary = summarize(scores, _REFERENCE.value, tuple(extra))
  summary.update({
      'experiment': _CONFIG_MODULE.value or f'fedhelp_{_EXPERIMENT.value}',
      'endpoint': f'accuracy on the whole official test split, mean over '
                  f'the last {_LAST_EVALS.value} evaluations',
      'pairs': [{'train_seed': t, 'partition_seed': p} for t, p in pairs],
      'rounds': _ROUNDS.value, 'protocol': protocol,
      'method_wall_s': walls, 'wall_time_s': time.time() - t0,
      'log': lines})
  fm_score = next((r[m]['protocol']['fm_test_score'] for r in per_partition
                   for m in methods if r[m]['protocol']['fm_test_score']
                   is not None), None)
  if 'central' in methods and fm_score is not None:
    summary['precondition'] = precondition(fm_score,
                                           summary['methods']['central'])
    log(f"precondition: {summary['precondition']['reading']}")
  reporting.write_json(os.path.join(out, 'summary.json'), summary)
  figure(summary).savefig(os.path.join(out, 'accuracy.png'))
  np.savez_compressed(os.path.join(out, 'scores.npz'),
                      **{f'{m}/{g}': v for m, by in scores.items()
                         for g, v in by.items()})
  print(json.dumps({m: summary['methods'][m]['small'] for m in methods},
                   indent=1))


def define_flags():
  """The command's flags (defined only when run as a command, so importing
  the module next to other experiment scripts defines none)."""
  global _EXPERIMENT, _METHODS, _TRAIN_SEEDS, _PARTITION_SEEDS, _ROUNDS
  global _LAST_EVALS, _CONFIG_MODULE, _OUT, _REFERENCE, _COMPARE
  _EXPERIMENT = flags.DEFINE_string(
      'experiment', 'cls_authors',
      'Config module experiments/configs/fedhelp_<name>.py (classification).')
  _METHODS = flags.DEFINE_list(
      'methods', ['fedhelp', 'fedavg', 'fedavg_fm', 'local', 'fedavg_samples'],
      f'Methods to run, of {sorted(METHODS)}.')
  _TRAIN_SEEDS = flags.DEFINE_integer('train_seeds', 5, 'Training seeds.')
  _PARTITION_SEEDS = flags.DEFINE_integer('partition_seeds', 2,
                                          'Partition seeds.')
  _ROUNDS = flags.DEFINE_integer('rounds', 30, 'Rounds per run.')
  _LAST_EVALS = flags.DEFINE_integer(
      'last_evals', 3, 'Evaluations averaged for the endpoint.')
  _CONFIG_MODULE = flags.DEFINE_string(
      'config_module', None, 'Python module with get_config(algorithm) to use '
      'instead of --experiment (e.g. tests.tiny_config).')
  _OUT = flags.DEFINE_string('out', None, 'Output directory.')
  _REFERENCE = flags.DEFINE_string('reference', 'fedhelp',
                                   'The method every other is paired with.')
  _COMPARE = flags.DEFINE_list(
      'compare', [], 'More paired comparisons, as a:b (a minus b), e.g. '
      'local_large:fedavg, the teacher precondition (its large group).')


if __name__ == '__main__':
  define_flags()
  app.run(main)
