# Copyright 2026 The fedhelp_jax Authors. Licensed under the Apache License 2.0.
r"""The batch-4 regime (the FedHelp authors' recipe): where a round goes, and
what makes it faster, measured side by side.

  python -m benchmarks.batch4                       # CPU, about 5 minutes
  python -m benchmarks.batch4 --scale 1.0 --repeats 5

The workload is one compiled round of ``experiments/configs/
fedhelp_cls_authors.py`` (2 large + 4 small silos by shares 0.6/0.2/0.08/
0.06/0.04/0.02, Adam, batch 4, public batch 4, one local epoch; ResNet-8
``L_k`` on the large silos, the CNN ``S`` everywhere) on synthetic images at
PneumoniaMNIST's split sizes times ``--scale`` (a precomputed random FM), as
in ``benchmarks/gpu_suite.py``'s ``authors_recipe`` section.

Profile (``profile`` rows): per group, the scanned and the active local
steps (one epoch on unequal silos: small silos run fewer, masked steps that
``lax.cond`` skips under the CPU's chunked(1) strategy), and the round time
of that group alone, so time per active step shows what a batch-4 step
costs.

Variants (``variants`` rows), each in its own process because XLA flags are
fixed when jax starts, run in two passes in opposite order; the median of
all repeats is kept:

  * ``before``: the round as it was before the batch-4 work: padded local
    steps computed and discarded (each silo of ``chunked(1)`` a size-1
    ``vmap``, under which the step's ``lax.cond`` is a select), FedHelp
    computing ``L_k``'s forward twice per step (step A's eval-mode output
    and step B's train-mode pass), Flax's ``GroupNorm``, kernel gradients
    as convolutions, one CPU device.
  * ``skip_padded``: silos mapped unbatched, so ``lax.cond`` skips the
    padded steps (``engine.map_clients``).
  * ``shared_forward``: one ``L_k`` forward, kept for the backward with
    ``jax.vjp`` (``FedHelpConfig.share_large_forward``; exact for GroupNorm
    models), still with the previous layers: the previous default.
  * ``fast_layers``: plus the library's ``GroupNorm`` (``models/layers.py``)
    and the kernel gradient as one matmul of patches
    (``models/loop_conv.py``): the same math, in ops XLA:CPU runs fast;
    still Flax's max-pool.
  * ``fast_pool``: the default now: plus the library's max-pool
    (``models/pooling.py``), whose backward is not a ``select_and_scatter``.
  * ``fast_pool_2dev``: plus the client axis sharded over 2 forced host
    devices (``--xla_force_host_platform_device_count=2``, ``make_mesh(2)``)
    with XLA's intra-op threads off (``--xla_cpu_multi_thread_eigen=false``):
    one silo stream per core, what the CLI does on CPU.

JSON: ``benchmarks/results/batch4-<backend>.json``.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

_TWO_HOST_DEVICES = ('--xla_force_host_platform_device_count=2 '
                     '--xla_cpu_multi_thread_eigen=false')
VARIANTS = {
    'before': {'share': False, 'layers': 'previous', 'padded': 'computed',
               'devices': 1, 'flags': ''},
    'skip_padded': {'share': False, 'layers': 'previous', 'devices': 1,
                    'flags': ''},
    'shared_forward': {'share': True, 'layers': 'previous', 'devices': 1,
                       'flags': ''},
    'fast_layers': {'share': True, 'layers': 'flax_pool', 'devices': 1,
                    'flags': ''},
    'fast_pool': {'share': True, 'layers': 'current', 'devices': 1,
                  'flags': ''},
    'fast_pool_2dev': {'share': True, 'layers': 'current', 'devices': 2,
                       'flags': _TWO_HOST_DEVICES},
}


def _compute_padded_steps():
  """Maps ``chunked(1)`` silos as size-1 ``vmap``s, in this process.

  Benchmark-only: under a ``vmap`` a padded step's ``lax.cond`` lowers to a
  select, so padded steps are computed and discarded, as they were before
  ``engine.map_clients`` mapped single silos unbatched.
  """
  # pylint: disable=g-import-not-at-top
  from jax import lax
  from fedhelp_jax import engine
  # pylint: enable=g-import-not-at-top
  unbatched = engine.map_clients

  def map_clients(fn, placed, unplaced, strategy):
    if strategy.name == 'chunked' and strategy.chunk_size == 1:
      unplaced = tuple(unplaced)
      return lax.map(lambda p: fn(*p, *unplaced), tuple(placed), batch_size=1)
    return unbatched(fn, placed, unplaced, strategy)

  engine.map_clients = map_clients


def _use_flax_max_pool():
  """Flax's ``nn.max_pool`` in the models, in this process.

  Benchmark-only: the variants before ``fast_pool`` time the round as it was
  built before ``models/pooling.py`` (same values and gradients; the
  backward a ``select_and_scatter``).
  """
  # pylint: disable=g-import-not-at-top
  import flax.linen as nn
  from fedhelp_jax.models import pooling
  # pylint: enable=g-import-not-at-top
  pooling.max_pool_2x2 = lambda x: nn.max_pool(x, (2, 2), strides=(2, 2))


def _use_previous_layers():
  """Flax's GroupNorm and max-pool and the kernel gradient as a
  convolution, in this process.

  Benchmark-only: the ``before`` variants time the round as it was built
  before ``models/layers.py`` had its own (same math) versions and before
  ``loop_conv`` computed the kernel gradient as a matmul of patches.
  """
  # pylint: disable=g-import-not-at-top
  import types
  import flax.linen as nn
  import jax.numpy as jnp
  from fedhelp_jax.models import layers
  from fedhelp_jax.models import loop_conv
  # pylint: enable=g-import-not-at-top
  _use_flax_max_pool()
  loop_conv.patches = types.SimpleNamespace(
      is_plain_nhwc=lambda *args, **kwargs: False)
  layers.GroupNorm = lambda num_groups, dtype, name: nn.GroupNorm(
      num_groups=num_groups, dtype=dtype, param_dtype=jnp.float32, name=name)


def _federation(algorithm, scale, share, tmp, groups=None):
  """``(config, Federation)`` of the authors' recipe (synthetic data)."""
  # pylint: disable=g-import-not-at-top
  from benchmarks import gpu_suite
  # pylint: enable=g-import-not-at-top
  config, fed, _ = gpu_suite._authors_federation(  # pylint: disable=protected-access
      algorithm, 'synthetic', scale, tmp)
  if algorithm == 'fedhelp':
    config.fedhelp.share_large_forward = share
  if groups is not None:
    fed = fed._replace(
        fed={g: fed.fed[g] for g in groups},
        weights={g: fed.weights[g] for g in groups},
        groups=tuple(groups),
        info={**fed.info, 'groups': {g: fed.info['groups'][g]
                                     for g in groups}})
  return config, fed


def _time_round(config, fed, *, devices, repeats):
  """Median seconds of one compiled round, its compile time, the steps."""
  # pylint: disable=g-import-not-at-top
  import jax
  from benchmarks import common
  from fedhelp_jax import algorithms
  from fedhelp_jax import engine
  # pylint: enable=g-import-not-at-top
  alg = algorithms.build(config.algorithm, config, fed.task, fed.groups,
                         info=fed.info)
  data, weights, info = fed.fed, fed.weights, fed.info
  mesh = None
  if devices > 1:
    mesh = engine.make_mesh(devices)
    data, weights, info = engine.pad_federation_for_mesh(data, weights, info,
                                                         mesh)
  round_fn = engine.build_round(alg, fed.groups, strategy='auto', mesh=mesh)
  data_d, weights_d = jax.device_put((data, weights))
  state = engine.init_state(alg, data_d, 0)
  if mesh is not None:
    data_d = engine.shard_clients(data_d, mesh)
    weights_d = engine.shard_clients(weights_d, mesh)
    state = engine.shard_state(state, mesh)
  t0 = time.perf_counter()
  compiled = engine.run_rounds(round_fn, 1, check=False).lower(
      state, data_d, weights_d, fed.hparams).compile()
  compile_s = time.perf_counter() - t0
  box = [state]

  def call():
    box[0], metrics = compiled(box[0], data_d, weights_d, fed.hparams)
    common.block((box[0], metrics))

  call()  # Warm-up.
  common.check_finite(box[0], f'{config.algorithm} round')
  times = common.time_calls(call, repeats)
  local = algorithms.local_config(config)
  steps = {}
  for g, d in fed.fed.items():
    scanned = engine.num_local_steps(
        int(d['x'].shape[1]), batch_size=local.batch_size,
        local_steps=local.local_steps, local_epochs=local.local_epochs)
    real = [int(n) for n in d['n'] if n > 0]
    active = [int(np.ceil(local.local_epochs * n / local.batch_size))
              for n in real]
    steps[g] = {'silos': len(real), 'scanned_per_silo': scanned,
                'active': active, 'active_total': sum(active),
                'scanned_total': scanned * len(real)}
  return {'round_s': float(np.median(times)), 'round_s_all': times,
          'compile_s': compile_s, 'strategy': round_fn.strategy.describe(),
          'steps': steps}


def child(args):
  """One variant (or the profile) in this process; prints a JSON line."""
  spec = json.loads(args.child)
  if spec.get('layers') == 'previous':
    _use_previous_layers()
  elif spec.get('layers') == 'flax_pool':
    _use_flax_max_pool()
  if spec.get('padded') == 'computed':
    _compute_padded_steps()
  out = []
  with tempfile.TemporaryDirectory() as tmp:
    for algorithm in spec['algorithms']:
      for groups in spec.get('group_sets', [None]):
        config, fed = _federation(algorithm, spec['scale'], spec['share'],
                                  tmp, groups)
        row = _time_round(config, fed, devices=spec['devices'],
                          repeats=spec['repeats'])
        row.update(algorithm=algorithm, groups=list(fed.groups))
        out.append(row)
  print('BATCH4 ' + json.dumps(out), flush=True)


def _spawn(spec, flags):
  env = dict(os.environ)
  env['XLA_FLAGS'] = (env.get('XLA_FLAGS', '') + ' ' + flags).strip()
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  env['PYTHONPATH'] = os.pathsep.join(
      p for p in (root, env.get('PYTHONPATH')) if p)
  proc = subprocess.run(
      [sys.executable, '-m', 'benchmarks.batch4', '--child', json.dumps(spec)],
      cwd=root, env=env, capture_output=True, text=True, check=False)
  lines = [l for l in proc.stdout.splitlines() if l.startswith('BATCH4 ')]
  if proc.returncode or not lines:
    raise RuntimeError(f'variant failed (rc={proc.returncode}):\n'
                       f'{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}')
  return json.loads(lines[-1][len('BATCH4 '):])


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--scale', type=float, default=0.25,
                      help="x PneumoniaMNIST's split sizes")
  parser.add_argument('--repeats', type=int, default=3)
  parser.add_argument('--algorithms', default='fedhelp,fedavg')
  parser.add_argument('--variants', default=','.join(VARIANTS))
  parser.add_argument('--out_dir', default=None)
  parser.add_argument('--child', default=None, help=argparse.SUPPRESS)
  args = parser.parse_args(argv)
  if args.child:
    child(args)
    return None
  # pylint: disable=g-import-not-at-top
  from benchmarks import common
  # pylint: enable=g-import-not-at-top
  algorithms_ = args.algorithms.split(',')
  names = args.variants.split(',')
  base = {'scale': args.scale, 'repeats': args.repeats}
  t_start = time.time()
  profile = _spawn({**base, 'algorithms': algorithms_, 'share': True,
                    'layers': 'current', 'devices': 1,
                    'group_sets': [['large', 'small'], ['large'], ['small']]},
                   '')
  for row in profile:
    active = sum(s['active_total'] for s in row['steps'].values())
    row['ms_per_active_step'] = 1e3 * row['round_s'] / active
    print(f"profile {row['algorithm']} {row['groups']}: "
          f"{row['round_s']:.3f} s/round, {active} active steps, "
          f"{row['ms_per_active_step']:.2f} ms/step", flush=True)
  runs = {n: [] for n in names}
  for order in (names, names[::-1]):  # Two passes in opposite order.
    for name in order:
      v = VARIANTS[name]
      algs = [a for a in algorithms_
              # FedAvg has no L_k: shared_forward is skip_padded for it.
              if a == 'fedhelp' or name != 'shared_forward']
      rows = _spawn({**base, 'algorithms': algs, 'share': v['share'],
                     'layers': v['layers'], 'padded': v.get('padded'),
                     'devices': v['devices']},
                    v['flags'])
      runs[name] += rows
      for row in rows:
        print(f"{name} {row['algorithm']}: {row['round_s']:.3f} s/round",
              flush=True)
  variants = []
  for name in names:
    for algorithm in algorithms_:
      rows = [r for r in runs[name] if r['algorithm'] == algorithm]
      if not rows:
        continue
      times = [t for r in rows for t in r['round_s_all']]
      variants.append({'variant': name, 'algorithm': algorithm,
                       **{k: VARIANTS[name][k] for k in ('devices', 'flags')},
                       'share_large_forward': VARIANTS[name]['share'],
                       'layers': VARIANTS[name]['layers'],
                       'padded_steps': VARIANTS[name].get('padded',
                                                          'skipped'),
                       'round_s': float(np.median(times)),
                       'round_s_all': times,
                       'compile_s': [r['compile_s'] for r in rows],
                       'strategy': rows[0]['strategy']})
  for algorithm in algorithms_:
    ref = [v for v in variants if v['algorithm'] == algorithm
           and v['variant'] == 'before']
    for v in variants:
      if v['algorithm'] == algorithm and ref:
        v['speedup_vs_before'] = ref[0]['round_s'] / v['round_s']
  record = {'benchmark': 'batch4', **common.device_record(),
            'workload': {'config': 'experiments/configs/fedhelp_cls_authors.py',
                         'data': f"synthetic, PneumoniaMNIST split sizes x "
                                 f"{args.scale}", 'repeats': args.repeats,
                         'passes': 2},
            'profile': profile, 'variants': variants,
            'wall_s': time.time() - t_start}
  path = common.write_result('batch4', record,
                             args.out_dir or common.RESULTS_DIR)
  for v in variants:
    ratio = {k: round(x, 2) for k, x in v.items() if k.startswith('speedup')}
    print(f"{v['variant']:>20} {v['algorithm']:>8}: {v['round_s']:.3f} "
          f"s/round {ratio}")
  print(f'-> {path}')
  return record


if __name__ == '__main__':
  main()
