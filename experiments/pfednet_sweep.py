# Copyright 2026 The fedhelp_jax Authors. Licensed under the Apache License 2.0.
r"""pFedNet: baselines, vmapped lambda/gamma sweeps, bytes on the wire, figures.

  python -m experiments.pfednet_sweep --task=tabular --seeds=5
  python -m experiments.pfednet_sweep --task=cls --seeds=2
  python -m experiments.pfednet_sweep --task=seg --seeds=1

For one task (``experiments/configs/pfednet_<task>.py``) this builds the
silos ONCE and then:
  1. runs the baselines and pFedNet (``METHODS``: fedavg, fedprox, ditto,
     fedper, local, pfednet at the config's lambda) for every seed;
  2. runs the lambda sweep (gamma = 0) and the gamma sweep (lambda from the
     config, TV-compressed uploads) each as ONE vmapped program
     (``engine.run_sweep_rounds``: state and hparams with a leading [K] axis,
     K = values x seeds) AND as the same K configs run one after another with
     one compiled ``run_rounds``; it times both (compile and steady state
     separately), and checks that they agree;
  3. measures the bytes a real encoder would send: every silo's upload of
     every round of the gamma sweep is encoded (run-length + zlib,
     ``encode.encode``) and compared with raw float32; at the chosen
     gamma (the largest whose mean metric is within 0.01 of gamma = 0) it
     also runs the uploads ternarized (STC, top 20%).
It writes ``experiments/results/pfednet_<task>/summary.json`` (DESIGN.md
format plus ``compression_ratio`` and ``sweep_speedup``), ``sweeps.json``
(everything measured), ``accuracy_vs_lambda.png`` and
``compression_vs_gamma.png``.
"""

import json
import os
import time
from typing import NamedTuple

from absl import app
from absl import flags
import jax
import jax.numpy as jnp
import numpy as np

from fedhelp_jax import experiment
from fedhelp_jax import models
from fedhelp_jax import reporting
from fedhelp_jax import runner
from fedhelp_jax import validate
from fedhelp_jax.algorithms import common
from fedhelp_jax.algorithms import pfednet
from fedhelp_jax.algorithms.pfednet import encode as encode_lib

_TASK = flags.DEFINE_enum('task', 'tabular', ['tabular', 'cls', 'seg'],
                          'Which experiment.')
_SEEDS = flags.DEFINE_integer('seeds', 3, 'Training seeds.')
_ROUNDS = flags.DEFINE_integer('rounds', None, 'Override config.rounds.')
_LAMBDAS = flags.DEFINE_list('lambdas', ['0', '1e-3', '1e-2', '1e-1', '1',
                                         '10'], 'Lambda sweep values.')
_GAMMAS = flags.DEFINE_list('gammas', None, 'Gamma sweep values (default: '
                            'per task, _DEFAULT_GAMMAS).')
# Uploads are model deltas; their scale (and so gamma's) depends on the task.
_DEFAULT_GAMMAS = {'tabular': (0, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1),
                   'cls': (0, 1e-4, 1e-3, 1e-2, 1e-1),
                   'seg': (0, 1e-4, 1e-3, 1e-2, 1e-1)}
_METHODS = flags.DEFINE_list('methods', None, 'Subset of the baselines.')
_OUT = flags.DEFINE_string('out', None, 'Output directory (default '
                           'experiments/results/pfednet_<task>).')
_TERNARIZE_P = 0.2


def _config_module(task):
  if task == 'tabular':
    from experiments.configs import pfednet_tabular as module
  elif task == 'cls':
    from experiments.configs import pfednet_cls as module
  else:
    from experiments.configs import pfednet_seg as module
  return module


def _stats(values):
  values = np.asarray(values, np.float64)
  return {'mean': float(np.mean(values)), 'std': float(np.std(values))}


def _max_abs_diff(a, b):
  return max(float(jnp.max(jnp.abs(x - y)))
             for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


class Setup(NamedTuple):
  """One method on the fixed federation: its program and host silos."""
  program: runner.Program
  fed: experiment.Federation


def make_setup(config, raw, fed0, info0, **pfednet_kwargs) -> Setup:
  """``config`` prepared on the shared partition ``(fed0, info0)``.

  ``pfednet_kwargs`` build a pFedNet variant the registry does not (uploads
  returned, compressed or ternarized).
  """
  validate.validate_config(config)
  fed = experiment.prepare_federation(config, raw, (fed0, info0))
  alg = None
  if pfednet_kwargs:
    settings = pfednet.pfednet_settings(config)
    graph = fed.info['pfednet']
    alg = pfednet.pfednet(
        models.from_config(config.model, fed.task.num_classes), fed.task,
        common.LocalConfig.from_config(config.local), fed.groups,
        edges=np.asarray(graph['edges'], np.int64).reshape(-1, 2),
        num_silos_per_group=graph['num_silos_per_group'],
        personal_pattern=settings['personal_pattern'],
        shared_pattern=settings['shared_pattern'],
        admm_iters=int(settings['admm_iters']),
        tv_iters=int(settings['tv_iters']), **pfednet_kwargs)
  program = runner.build_program(config, fed.task, fed.groups, fed.info,
                                 alg=alg)
  return Setup(program, fed)


def _run(setup, seeds, hparams_list, rounds, **kwargs):
  """``runner.run`` of these (seed, hparams) configs as one program; every
  round in one compiled call, non-finite values recorded, not raised."""
  members = [setup.fed._replace(seed=seed, hparams=hp)
             for seed, hp in zip(seeds, hparams_list)]
  return runner.run(setup.program, members, rounds=rounds, eval_every=rounds,
                    nonfinite='record', **kwargs)


def _scores(setup, result):
  summary = result.final['summary']
  return {g: summary[g][setup.program.metric]
          for g in (*setup.program.groups, 'all')}


def run_method(setup, seeds, rounds, log):
  """Every seed of one method, one after another on one executable."""
  t0 = time.time()
  results = [_run(setup, [seed], [setup.fed.hparams], rounds)[0]
             for seed in seeds]
  compile_s = sum(r.timing_s['compile'] for r in results)
  finals = [_scores(setup, r) for r in results]
  wall = time.time() - t0
  log(f'  {setup.program.config.algorithm}: ' + ', '.join(
      f'{g} {np.mean([f[g] for f in finals]):.4f}' for g in finals[0])
      + f' ({wall:.1f}s, compile {compile_s:.1f}s)')
  return {'per_seed': finals, 'compile_s': compile_s, 'wall_s': wall}


def run_sweep(setup, hparams_list, seeds, rounds):
  """K configs vmapped as one program, then the same K one at a time.

  Returns:
    ``(vmapped, sequential, timing)``: the ``runner.run`` results of both
    ways (the vmapped ones with every round's metrics) and the timings.
  """
  vmapped = _run(setup, seeds, hparams_list, rounds, keep_metrics=True)
  sequential = [_run(setup, [s], [hp], rounds)[0]
                for s, hp in zip(seeds, hparams_list)]
  vm_t = vmapped[0].timing_s
  seq_compile = sum(r.timing_s['compile'] for r in sequential)
  seq_steady = sum(r.timing_s['steady'] for r in sequential)
  diffs = [_max_abs_diff(v.state.server, q.state.server)
           for v, q in zip(vmapped, sequential)]
  timing = {
      'configs': len(hparams_list), 'rounds': rounds,
      'vmap_compile_s': vm_t['compile'], 'vmap_steady_s': vm_t['steady'],
      'sequential_compile_s': seq_compile,
      'sequential_steady_s': seq_steady,
      'speedup_steady': seq_steady / vm_t['steady'],
      'speedup_total': (seq_compile + seq_steady) / (vm_t['compile'] +
                                                     vm_t['steady']),
      'max_abs_diff_vmap_vs_sequential': max(diffs),
      'max_abs_diff_per_config': diffs,
  }
  return vmapped, sequential, timing


def upload_bytes(results, setup):
  """``(raw, encoded)`` bytes ``[K, R]`` of all real silos' uploads, from
  ``runner.run`` results kept with their round metrics."""
  raw = np.zeros((len(results), int(results[0].rounds)))
  enc = np.zeros_like(raw)
  for k, res in enumerate(results):
    for g in setup.program.groups:
      up = np.asarray(res.round_metrics.silos[g]['upload'])  # [R, C, d]
      for t in range(up.shape[0]):
        for c in range(len(setup.fed.info['groups'][g])):
          raw[k, t] += encode_lib.raw_bytes(up[t, c])
          enc[k, t] += encode_lib.encoded_bytes(up[t, c])
  return raw, enc


def _symlog_x(ax, values):
  nonzero = [v for v in values if v > 0]
  linthresh = min(nonzero) if nonzero else 1.0
  ax.set_xscale('symlog', linthresh=linthresh)
  ax.set_xlim(-0.3 * linthresh, 2.0 * max(values + [linthresh]))


def plot_lambda(path, lam_rows, baselines, metric, title):
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  fig, ax = plt.subplots(figsize=(6, 4))
  lams = [r['lam'] for r in lam_rows]
  ax.errorbar(lams, [r['all']['mean'] for r in lam_rows],
              yerr=[r['all']['std'] for r in lam_rows], marker='o',
              capsize=3, label='pFedNet (gamma = 0)')
  styles = {'fedavg': ('tab:red', '--', 'FedAvg', 1.5),
            'fedper': ('tab:purple', '-.', 'FedPer', 1.5),
            'local': ('tab:green', ':', 'Local-only', 3.0)}
  for m, (color, ls, label, width) in styles.items():
    if m in baselines:
      mean = baselines[m]['all']['mean']
      ax.axhline(mean, color=color, ls=ls, lw=width,
                 label=f'{label} ({mean:.3f})')
  _symlog_x(ax, lams)
  ax.set_xlabel('lambda (graph-lasso strength; symlog, 0 at the left)')
  ax.set_ylabel(f'test {metric} (mean over silos)')
  ax.set_title(title)
  ax.legend(fontsize=8)
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)


def plot_gamma(path, gamma_rows, tern, metric, title):
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  fig, ax = plt.subplots(figsize=(6, 4))
  gammas = [r['gamma'] for r in gamma_rows]
  ax.plot(gammas, [r['compression_ratio'] for r in gamma_rows], 'o-',
          color='tab:blue', label='TV prox (run-length + zlib)')
  if tern:
    ax.plot([tern['gamma']], [tern['compression_ratio']], 's',
            color='tab:cyan', label=f'TV + ternarized (p={_TERNARIZE_P})')
  ax.set_yscale('log')
  ax.set_ylabel('upload compression ratio (raw f32 / encoded)',
                color='tab:blue')
  _symlog_x(ax, gammas)
  ax.set_xlabel('gamma (TV strength of uploads; symlog, 0 at the left)')
  ax2 = ax.twinx()
  ax2.errorbar(gammas, [r['all']['mean'] for r in gamma_rows],
               yerr=[r['all']['std'] for r in gamma_rows], marker='^',
               color='tab:orange', capsize=3, label=f'test {metric}')
  if tern:
    ax2.plot([tern['gamma']], [tern['all']], 'v', color='tab:brown',
             label=f'test {metric}, ternarized')
  ax2.set_ylabel(f'test {metric} (mean over silos)', color='tab:orange')
  lines = ax.get_legend_handles_labels()
  lines2 = ax2.get_legend_handles_labels()
  ax.legend(lines[0] + lines2[0], lines[1] + lines2[1], fontsize=8,
            loc='center left')
  ax.set_title(title)
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)


def _per_value(evals, values, seeds, key):
  """Groups K = values x seeds evaluations by value."""
  rows = []
  for i, v in enumerate(values):
    chunk = evals[i * len(seeds):(i + 1) * len(seeds)]
    rows.append({key: v, **{g: _stats([e[g] for e in chunk])
                            for g in chunk[0]},
                 'per_seed': chunk})
  return rows


def main(argv):
  del argv
  task = _TASK.value
  module = _config_module(task)
  out_dir = _OUT.value or os.path.join('experiments', 'results',
                                       f'pfednet_{task}')
  os.makedirs(out_dir, exist_ok=True)
  seeds = list(range(_SEEDS.value))
  lambdas = [float(v) for v in _LAMBDAS.value]
  gammas = [float(v) for v in (_GAMMAS.value or _DEFAULT_GAMMAS[task])]
  lines = []

  def log(msg):
    print(msg, flush=True)
    lines.append(msg)

  t_all = time.time()
  base = module.get_config('pfednet')
  if _ROUNDS.value:
    base.rounds = _ROUNDS.value
  rounds = int(base.rounds)
  raw = experiment.load_raw(base)
  fed0, info0 = experiment.build_federation(base, raw)

  # 1. Baselines and pFedNet at the config's lambda.
  records = {}
  for m in _METHODS.value or module.METHODS:
    config = module.get_config(m)
    config.rounds = rounds
    records[m] = run_method(make_setup(config, raw, fed0, info0), seeds,
                            rounds, log)

  # 2. Lambda sweep (no compression) as one vmapped program.
  lam_setup = make_setup(base, raw, fed0, info0)
  metric = lam_setup.program.metric
  groups_out = (('small', 'large', 'all')
                if set(lam_setup.program.groups) == {'large', 'small'}
                else ('all',))
  hp0 = dict(lam_setup.fed.hparams, gamma=jnp.float32(0.0))
  lam_hps = [dict(hp0, lam=jnp.float32(v)) for v in lambdas for _ in seeds]
  lam_seeds = [s for _ in lambdas for s in seeds]
  lam_vmap, lam_seq, lam_timing = run_sweep(lam_setup, lam_hps, lam_seeds,
                                            rounds)
  lam_evals = [_scores(lam_setup, r) for r in lam_vmap]
  # The same configs run sequentially, scored: how far float differences
  # between the vmapped and the sequential programs move the metric.
  lam_timing['metric_abs_diff_per_config'] = [
      abs(_scores(lam_setup, s)['all'] - e['all'])
      for s, e in zip(lam_seq, lam_evals)]
  lam_rows = _per_value(lam_evals, lambdas, seeds, 'lam')
  log(f'lambda sweep ({len(lam_hps)} configs): ' + ', '.join(
      f'{r["lam"]:g}: {r["all"]["mean"]:.4f}' for r in lam_rows))
  log(f'  timing: {json.dumps(lam_timing)}')

  # 3. Gamma sweep (lambda from the config), uploads returned for encoding.
  gam_setup = make_setup(base, raw, fed0, info0, compress=True,
                         return_uploads=True)
  gam_hps = [dict(gam_setup.fed.hparams, gamma=jnp.float32(v))
             for v in gammas for _ in seeds]
  gam_seeds = [s for _ in gammas for s in seeds]
  gam_vmap, gam_seq, gam_timing = run_sweep(gam_setup, gam_hps, gam_seeds,
                                            rounds)
  gam_evals = [_scores(gam_setup, r) for r in gam_vmap]
  gam_timing['metric_abs_diff_per_config'] = [
      abs(_scores(gam_setup, s)['all'] - e['all'])
      for s, e in zip(gam_seq, gam_evals)]
  del lam_vmap, lam_seq, gam_seq
  raw_b, enc_b = upload_bytes(gam_vmap, gam_setup)
  del gam_vmap
  gam_rows = _per_value(gam_evals, gammas, seeds, 'gamma')
  for i, row in enumerate(gam_rows):
    sl = slice(i * len(seeds), (i + 1) * len(seeds))
    row['raw_bytes_per_round'] = float(raw_b[sl].mean())
    row['encoded_bytes_per_round'] = float(enc_b[sl].mean())
    row['compression_ratio'] = float(raw_b[sl].sum() / enc_b[sl].sum())
  log('gamma sweep: ' + ', '.join(
      f'{r["gamma"]:g}: {metric} {r["all"]["mean"]:.4f} ratio '
      f'{r["compression_ratio"]:.2f}' for r in gam_rows))
  log(f'  timing: {json.dumps(gam_timing)}')
  ok = [r for r in gam_rows
        if r['all']['mean'] >= gam_rows[0]['all']['mean'] - 0.01]
  chosen = max(ok, key=lambda r: r['gamma'])

  # 4. Ternarized uploads at the chosen gamma (first seed).
  tern_setup = make_setup(base, raw, fed0, info0, compress=True,
                          ternarize_p=_TERNARIZE_P, return_uploads=True)
  tern_hp = dict(tern_setup.fed.hparams, gamma=jnp.float32(chosen['gamma']))
  tern_run = _run(tern_setup, seeds[:1], [tern_hp], rounds,
                  keep_metrics=True)
  traw, tenc = upload_bytes(tern_run, tern_setup)
  tern = {'gamma': chosen['gamma'], 'p': _TERNARIZE_P, 'seed': seeds[0],
          'all': _scores(tern_setup, tern_run[0])['all'],
          'raw_bytes_per_round': float(traw.mean()),
          'encoded_bytes_per_round': float(tenc.mean()),
          'compression_ratio': float(traw.sum() / tenc.sum())}
  log(f'ternarized at gamma={chosen["gamma"]:g}: {metric} '
      f'{tern["all"]:.4f}, ratio {tern["compression_ratio"]:.2f}')

  baselines = {m: {g: _stats([f[g] for f in r['per_seed']])
                   for g in groups_out} for m, r in records.items()}
  wall = time.time() - t_all
  summary = {
      'experiment': f'pfednet_{task}', 'metric': metric,
      'seeds': len(seeds), 'methods': baselines,
      'compression_ratio': chosen['compression_ratio'],
      'sweep_speedup': {'steady': lam_timing['speedup_steady'],
                        'total': lam_timing['speedup_total'],
                        'configs': lam_timing['configs']},
      'compression': {
          'chosen_gamma': chosen['gamma'],
          'rule': 'largest gamma whose mean metric is within 0.01 of '
                  'gamma = 0 (chosen on the test metric)',
          'tv': chosen['compression_ratio'],
          'tv_ternarized': tern['compression_ratio'],
          'uncompressed_gamma0': gam_rows[0]['compression_ratio'],
          'definition': 'raw float32 bytes / run-length + zlib encoded '
                        'bytes, all silos\' uploads summed over all rounds',
      },
      'sweep_timing': {'lambda': lam_timing, 'gamma': gam_timing,
                       'headline': 'sweep_speedup is the lambda sweep: '
                                   'steady = sequential run time / vmapped '
                                   'run time; total = the same with the '
                                   'compile times added (sequential '
                                   'compiles once, same shapes)'},
      'lambda_sweep': [{k: v for k, v in r.items() if k != 'per_seed'}
                       for r in lam_rows],
      'gamma_sweep': [{k: v for k, v in r.items() if k != 'per_seed'}
                      for r in gam_rows],
      'ternarized': tern,
      'hparams': {k: float(v) for k, v in base.hparams.items()},
      'pfednet': base.pfednet.to_dict(),
      'graph': lam_setup.fed.info['pfednet'],
      'rounds': rounds, 'wall_time_s': wall,
      'method_wall_s': {m: r['wall_s'] for m, r in records.items()},
      'device': str(jax.devices()[0]), 'backend': jax.default_backend(),
      'jax': jax.__version__,
      'std': 'population std over seeds of the per-seed mean over silos',
  }
  summary = reporting.strict(summary)
  with open(os.path.join(out_dir, 'summary.json'), 'w') as f:
    json.dump(summary, f, indent=1)
  with open(os.path.join(out_dir, 'sweeps.json'), 'w') as f:
    json.dump(reporting.strict(
        {'lambda': lam_rows, 'gamma': gam_rows, 'methods': records}), f,
              indent=1)
  title = f'pfednet_{task}: {len(seeds)} seed(s), {rounds} rounds'
  plot_lambda(os.path.join(out_dir, 'accuracy_vs_lambda.png'), lam_rows,
              baselines, metric, title)
  plot_gamma(os.path.join(out_dir, 'compression_vs_gamma.png'), gam_rows,
             tern, metric, title)
  log(f'total wall time {wall:.1f}s -> {out_dir}')
  with open(os.path.join(out_dir, 'log.txt'), 'w') as f:
    f.write('\n'.join(lines) + '\n')


if __name__ == '__main__':
  app.run(main)
