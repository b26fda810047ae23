# Copyright 2026 The fedhelp_jax Authors. Licensed under the Apache License 2.0.
r"""K ablation configs as one program (vmapped or mapped) vs K sequential runs.

Same work on every side: K FedAvg runs of ``rounds`` rounds that differ in
seed (initial weights, data order) and learning rate, on the same silos.

  * sweep (vmap): ``engine.run_sweep_rounds(config_parallel='vmap')`` — one
    compiled program whose state and hyperparameters carry a leading
    ``[K]`` axis, batched;
  * sweep (map): ``config_parallel='map'`` — the same program with a
    ``lax.map`` over the config axis (configs one after another inside it);
  * sequential: ``engine.run_rounds`` compiled ONCE and called K times (the
    fair baseline: no recompilation between configs).

``auto`` (``engine.resolve_config_parallel``) picks between the two sweep
plans per backend from these rows.

Steady-state seconds and compile seconds are reported separately, for
K = 1, 4, 8, 16, for three workloads: the default CNN on 28x28 images with
XLA's convolution and with the im2col convolution (``model.conv``), and
logistic regression on 30 tabular features (the pFedNet tabular task's
shape). JSON goes to ``benchmarks/results/sweep-<backend>.json``.

  python -m benchmarks.sweep
  python -m benchmarks.sweep --configs 1,4,8,16 --workloads cnn,cnn_im2col
"""

import argparse
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks import common
from fedhelp_jax import engine

_WORKLOADS = {
    # name: (model, conv, make_federation kwargs, local_steps, batch_size)
    'cnn': ('cnn', 'xla', {}, 4, 32),
    'cnn_im2col': ('cnn', 'im2col', {}, 4, 32),
    'logreg': ('logreg', None, {'features': 30}, 10, 16),
}


def _stack(trees):
  return jax.tree.map(lambda *xs: jnp.stack(xs), *trees)


def _configs(alg, data, hparams, k):
  """K initial states (seeds 0..K-1) and K learning rates, stacked."""
  lrs = np.geomspace(0.01, 0.1, k).astype(np.float32) if k > 1 else [0.05]
  states = [engine.init_state(alg, data, seed) for seed in range(k)]
  hps = [dict(hparams, lr=jnp.float32(lr)) for lr in lrs]
  return states, hps


def measure(workload, k, *, silos, rounds, repeats):
  """Steady and compile seconds of the sweep and of the sequential runs."""
  model, conv, fed_kwargs, steps, batch = _WORKLOADS[workload]
  alg, hparams = common.fedavg_workload(model, batch_size=batch,
                                        local_steps=steps, conv=conv)
  data, weights = common.make_federation(silos, batch * steps, **fed_kwargs)
  data, weights = jax.device_put((data, weights))
  round_fn = engine.build_round(alg, ('silos',), strategy='auto')
  states, hps = _configs(alg, data, hparams, k)

  sweep = engine.run_sweep_rounds(round_fn, rounds)
  t0 = time.perf_counter()
  sweep_c = sweep.lower(_stack(states), data, weights, _stack(hps)).compile()
  sweep_compile = time.perf_counter() - t0
  mapped = engine.run_sweep_rounds(round_fn, rounds, config_parallel='map')
  t0 = time.perf_counter()
  map_c = mapped.lower(_stack(states), data, weights, _stack(hps)).compile()
  map_compile = time.perf_counter() - t0

  def run_sweep():
    out = sweep_c(_stack(states), data, weights, _stack(hps))
    common.block(out)

  def run_map():
    common.block(map_c(_stack(states), data, weights, _stack(hps)))

  single = engine.run_rounds(round_fn, rounds, check=False)
  t0 = time.perf_counter()
  single_c = single.lower(states[0], data, weights, hps[0]).compile()
  single_compile = time.perf_counter() - t0

  def run_sequential():
    for s, hp in zip(states, hps):
      # Copy: the compiled call donates (consumes) its input state.
      out = single_c(jax.tree.map(jnp.copy, s), data, weights, hp)
      common.block(out)

  run_sweep()
  run_map()
  run_sequential()  # Warm-ups.
  # Alternate them so a change in background load hits all alike.
  sweep_t, map_t, seq_t = [], [], []
  for _ in range(repeats):
    sweep_t += common.time_calls(run_sweep, 1)
    map_t += common.time_calls(run_map, 1)
    seq_t += common.time_calls(run_sequential, 1)
  sweep_s, seq_s = common.median(sweep_t), common.median(seq_t)
  map_s = common.median(map_t)
  return {'workload': workload, 'conv': conv, 'configs': k, 'silos': silos,
          'rounds': rounds, 'strategy': round_fn.strategy.name,
          'chunk_size': round_fn.strategy.chunk_size,
          'sweep_s': sweep_s, 'sequential_s': seq_s,
          'speedup': seq_s / sweep_s,
          'sweep_compile_s': sweep_compile,
          'map_s': map_s, 'speedup_map': seq_s / map_s,
          'map_compile_s': map_compile,
          'auto_plan': engine.resolve_config_parallel('auto').name,
          'sequential_compile_s': single_compile,
          'speedup_incl_compile': (seq_s + single_compile)
                                  / (sweep_s + sweep_compile)}


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--configs', default='1,4,8,16')
  parser.add_argument('--workloads', default='cnn,cnn_im2col,logreg',
                      help=f'some of {sorted(_WORKLOADS)}')
  parser.add_argument('--silos', type=int, default=8)
  parser.add_argument('--rounds', type=int, default=3)
  parser.add_argument('--repeats', type=int, default=3)
  parser.add_argument('--out', default=common.RESULTS_DIR)
  args = parser.parse_args(argv)
  record = {'benchmark': 'sweep', **common.device_record(),
            'workload_note': 'FedAvg, configs differ in seed and lr; '
                             'synthetic data with the real shapes',
            'rows': []}
  print(f"device: {record['device']} ({record['backend']}), jax "
        f"{record['jax']}", flush=True)
  print(f"{'workload':>8} {'K':>3} {'sweep_s':>8} {'map_s':>8} "
        f"{'seq_s':>8} {'vmap':>7} {'map':>7} {'+compile':>8}", flush=True)
  for workload in args.workloads.split(','):
    for k in (int(v) for v in args.configs.split(',')):
      row = measure(workload, k, silos=args.silos, rounds=args.rounds,
                    repeats=args.repeats)
      record['rows'].append(row)
      print(f"{workload:>8} {k:>3} {row['sweep_s']:8.3f} "
            f"{row['map_s']:8.3f} {row['sequential_s']:8.3f} "
            f"{row['speedup']:6.2f}x {row['speedup_map']:6.2f}x "
            f"{row['speedup_incl_compile']:7.2f}x", flush=True)
  path = common.write_result('sweep', record, args.out)
  print(f'wrote {path}')


if __name__ == '__main__':
  sys.exit(main())
