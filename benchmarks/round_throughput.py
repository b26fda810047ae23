# Copyright 2026 The fedhelp_jax Authors. Licensed under the Apache License 2.0.
r"""Round throughput: the compiled round vs a per-client Python loop.

Same work for every row: FedAvg with the default CNN (2 conv layers 32/64,
GroupNorm, dense 128) on 28x28x1 images, ``local_steps`` SGD steps of
``batch_size`` per silo, for 8, 32 and 128 silos (add 1024 on accelerators).
For each silo count it measures, side by side in one process:

  * the compiled round (``engine.run_rounds``: ``rounds_per_call`` rounds in
    one ``lax.scan``) under each client-parallel strategy (``vmap``,
    ``chunked`` with each ``--chunk_sizes``, and ``auto``, reported with the
    strategy it resolved to);
  * the per-client Python loop of jitted single-silo steps (``loop``,
    FedJAX-style), which is the baseline;

and reports time per round, images/s, the ratio to the loop, compile time
(separately from steady state) and peak device memory where the backend
reports it. JSON goes to ``benchmarks/results/round_throughput-<backend>.json``.

  python -m benchmarks.round_throughput                       # CPU defaults
  python -m benchmarks.round_throughput --silos 8,32,128,1024 # accelerators
  python -m benchmarks.round_throughput --find_max_silos     # largest fit
"""

import argparse
import sys
import time

import jax

from benchmarks import common
from fedhelp_jax import engine


def parse_ints(s):
  return [int(v) for v in s.split(',') if v]


def prepare_compiled(alg, hparams, data, weights, *, strategy, chunk_size,
                     rounds_per_call, seed=0):
  """Compiles one strategy; returns ``(call, info)`` after a warm-up call.

  ``call()`` runs ``rounds_per_call`` rounds and blocks.
  """
  fn, resolved = common.compiled_rounds(alg, rounds_per_call,
                                        strategy=strategy,
                                        chunk_size=chunk_size)
  state = engine.init_state(alg, data, seed)
  t0 = time.perf_counter()
  compiled = fn.lower(state, data, weights, hparams).compile()
  compile_s = time.perf_counter() - t0
  box = [state]

  def call():
    box[0], metrics = compiled(box[0], data, weights, hparams)
    common.block((box[0], metrics))

  call()  # Warm-up (first execution allocates buffers).
  common.check_finite(box[0], f'compiled round ({strategy})')
  return call, {'strategy': strategy, 'resolved': resolved.name,
                'chunk_size': resolved.chunk_size, 'compile_s': compile_s,
                'rounds_per_call': rounds_per_call}


def prepare_sharded(alg, hparams, data, weights, *, rounds_per_call, seed=0):
  """The compiled round with the client axis sharded over every visible
  device (``auto`` per device); ``(call, info)`` after a warm-up call.

  On CPU, run with ``XLA_FLAGS=--xla_force_host_platform_device_count=N``
  (one silo stream per core); the silo count must divide by N.
  """
  mesh = engine.make_mesh(jax.device_count())
  round_fn = engine.build_round(alg, ('silos',), strategy='auto', mesh=mesh)
  fn = engine.run_rounds(round_fn, rounds_per_call, check=False)
  data = engine.shard_clients(data, mesh)
  weights = engine.shard_clients(weights, mesh)
  hparams = engine.replicate(hparams, mesh)
  box = [engine.shard_state(engine.init_state(alg, data, seed), mesh)]

  def call():
    box[0], metrics = fn(box[0], data, weights, hparams)
    common.block((box[0], metrics))

  t0 = time.perf_counter()
  call()  # Compiles.
  common.check_finite(box[0], 'sharded compiled round')
  return call, {'strategy': 'sharded', 'resolved': (
      f'{round_fn.strategy.name} on {jax.device_count()} devices'),
                'chunk_size': round_fn.strategy.chunk_size,
                'compile_s': time.perf_counter() - t0,
                'rounds_per_call': rounds_per_call}


def prepare_loop(alg, hparams, data, weights, *, seed=0):
  """The per-client Python loop; ``(call, info)`` after a warm-up round."""
  loop = engine.build_round(alg, ('silos',), strategy='loop')
  box = [engine.init_state(alg, data, seed)]

  def call():
    box[0], metrics = loop(box[0], data, weights, hparams)
    common.block((box[0], metrics))

  t0 = time.perf_counter()
  call()  # Compiles the single-silo step and the server step.
  common.check_finite(box[0], 'per-client loop')
  return call, {'first_call_s': time.perf_counter() - t0,
                'rounds_per_call': 1}


def interleaved_round_times(calls, repeats):
  """Median seconds per round of each call, timed in alternation.

  Every repeat times each call once, in turn, so a change in background load
  hits all of them alike and the ratios stay fair.
  """
  times = {name: [] for name in calls}
  for _ in range(repeats):
    for name, (call, info) in calls.items():
      t0 = time.perf_counter()
      call()
      times[name].append((time.perf_counter() - t0) / info['rounds_per_call'])
  return {name: common.median(ts) for name, ts in times.items()}


def find_max_silos(alg, hparams, strategy, *, batch_size, local_steps,
                   limit=1 << 17, start=64, hw=28, deadline=None):
  """Doubles the silo count until the compiled round runs out of memory.

  Args:
    alg: the FedAvg workload (``common.fedavg_workload``).
    hparams: its hyperparameters.
    strategy: the client-parallel strategy to compile.
    batch_size: local batch size.
    local_steps: local steps per silo (each silo holds
      ``batch_size * local_steps`` examples).
    limit: largest silo count tried.
    start: first silo count tried.
    hw: image height and width.
    deadline: ``time.monotonic()`` value by which the search should end
      (None: no deadline). A larger count is not started when the last try,
      doubled, would run past it.

  Returns:
    ``{'largest': the largest count that fit (None if none did),
    'stopped': 'out_of_memory' | 'limit' | 'deadline', 'tried': [...]}``.
  """
  silos, largest, stopped, tried = start, None, 'limit', []
  last_s = 0.0
  while silos <= limit:
    t0 = time.monotonic()
    if deadline is not None and t0 + 2 * last_s > deadline:
      stopped = 'deadline'
      break
    data, weights = common.make_federation(
        silos, batch_size * local_steps, hw=hw)
    try:
      data, weights = jax.device_put((data, weights))
      prepare_compiled(alg, hparams, data, weights, strategy=strategy,
                       chunk_size=None, rounds_per_call=1)
      largest = silos
      last_s = time.monotonic() - t0
      tried.append({'silos': silos, 'fits': True, 'seconds': last_s})
      print(f'  {silos} silos: fits', flush=True)
    except Exception as e:  # pylint: disable=broad-except
      if not isinstance(e, MemoryError) and (
          'RESOURCE_EXHAUSTED' not in str(e)
          and 'memory' not in str(e).lower()):
        raise
      tried.append({'silos': silos, 'fits': False})
      print(f'  {silos} silos: out of memory', flush=True)
      stopped = 'out_of_memory'
      break
    finally:
      del data, weights
    silos *= 2
  return {'largest': largest, 'stopped': stopped, 'tried': tried}


def strategy_runs(convs, strategies, chunk_sizes):
  """``(conv, strategy, chunk_size)`` triples: chunked once per chunk size."""
  runs = []
  for conv in convs:
    for s in strategies:
      if s == 'chunked':
        runs += [(conv, 'chunked', k) for k in chunk_sizes]
      else:
        runs.append((conv, s, None))
  return runs


HEADER = (f"{'silos':>6} {'strategy':>24} {'round_s':>9} {'img/s':>10} "
          f"{'loop img/s':>11} {'vs loop':>8} {'compile_s':>9}")


def measure(silos, workloads, runs, *, batch_size, local_steps,
            rounds_per_call, repeats, with_loop=True, loop_conv=None, hw=28):
  """Times every run of ``runs`` (and the loop) on ``silos`` silos.

  Args:
    silos: number of silos.
    workloads: ``{conv: (alg, hparams)}`` from ``common.fedavg_workload``.
    runs: ``(conv, strategy, chunk_size)`` triples (``strategy_runs``).
    batch_size: local batch size.
    local_steps: local steps per silo.
    rounds_per_call: rounds per compiled call.
    repeats: interleaved repeats (the median is reported).
    with_loop: also time the per-client Python loop (the baseline).
    loop_conv: the workload the loop runs (default: the first).
    hw: image height and width.

  Returns:
    One row per run (printed as it is measured).
  """
  data, weights = common.make_federation(silos, batch_size * local_steps,
                                         hw=hw)
  data, weights = jax.device_put((data, weights))
  images = silos * local_steps * batch_size
  calls = {}
  for conv, strategy, chunk in runs:
    alg, hparams = workloads[conv]
    calls[(conv, strategy, chunk)] = prepare_compiled(
        alg, hparams, data, weights, strategy=strategy, chunk_size=chunk,
        rounds_per_call=rounds_per_call)
  if with_loop:
    # The loop baseline uses XLA's convolution: the library default.
    calls['loop'] = prepare_loop(
        *workloads[loop_conv or next(iter(workloads))], data, weights)
  round_s = interleaved_round_times(calls, repeats)
  loop_s = round_s.get('loop')
  rows = []
  for key, (_, m) in calls.items():
    if key == 'loop':
      continue
    conv, strategy, _ = key
    row = {'silos': silos, 'conv': conv, 'images_per_round': images, **m,
           'round_s': round_s[key], 'images_per_s': images / round_s[key],
           'loop_round_s': loop_s,
           'loop_first_call_s': with_loop and calls['loop'][1][
               'first_call_s'],
           'loop_images_per_s': loop_s and images / loop_s,
           'speedup_vs_loop': loop_s and loop_s / round_s[key],
           'peak_device_bytes': common.peak_device_bytes()}
    rows.append(row)
    name = strategy + (f'({m["chunk_size"]})' if m['resolved'] == 'chunked'
                       else '')
    name = f'{conv}:{name}'
    if strategy == 'auto':
      name = f"{conv}:auto={m['resolved']}" + (
          f"({m['chunk_size']})" if m['resolved'] == 'chunked' else '')
    loop_ips = (f"{row['loop_images_per_s']:11.0f}" if with_loop
                else ' ' * 11)
    ratio = f"{row['speedup_vs_loop']:7.2f}x" if with_loop else ' ' * 8
    print(f"{silos:>6} {name:>24} {round_s[key]:9.3f} "
          f"{row['images_per_s']:10.0f} {loop_ips} {ratio} "
          f"{m['compile_s']:9.1f}", flush=True)
  return rows


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  backend = jax.default_backend()
  parser.add_argument('--silos', default='8,32,128' if backend == 'cpu'
                      else '8,32,128,1024')
  parser.add_argument('--strategies', default='vmap,chunked,auto')
  parser.add_argument('--chunk_sizes', default='1,4',
                      help='chunk sizes tried for the chunked strategy')
  parser.add_argument('--model', default='cnn', choices=('cnn', 'logreg'))
  parser.add_argument('--dtype', default='float32',
                      help='computation dtype (params stay float32)')
  parser.add_argument('--convs', default='xla,im2col',
                      help='convolution implementations of the CNN to try')
  parser.add_argument('--batch_size', type=int, default=32)
  parser.add_argument('--local_steps', type=int, default=4)
  parser.add_argument('--rounds_per_call', type=int, default=2)
  parser.add_argument('--repeats', type=int, default=3)
  parser.add_argument('--loop_max_silos', type=int, default=1024,
                      help='skip the Python loop above this silo count')
  parser.add_argument('--find_max_silos', action='store_true',
                      help='also find the largest silo count that fits')
  parser.add_argument('--max_silos_limit', type=int, default=1 << 17)
  parser.add_argument('--out', default=common.RESULTS_DIR)
  args = parser.parse_args(argv)

  record = {'benchmark': 'round_throughput', **common.device_record(),
            'workload': {'algorithm': 'fedavg', 'model': args.model,
                         'dtype': args.dtype, 'image': [28, 28, 1],
                         'batch_size': args.batch_size,
                         'local_steps': args.local_steps,
                         'rounds_per_call': args.rounds_per_call,
                         'repeats': args.repeats,
                         'data': 'synthetic, shapes of PneumoniaMNIST'},
            'rows': []}
  print(f"device: {record['device']} ({record['backend']}, "
        f"{record['num_devices']} devices), jax {record['jax']}", flush=True)
  workloads = {conv: common.fedavg_workload(
      args.model, batch_size=args.batch_size, local_steps=args.local_steps,
      dtype=args.dtype, conv=conv) for conv in args.convs.split(',')}
  runs = strategy_runs(workloads, args.strategies.split(','),
                       parse_ints(args.chunk_sizes))
  print(HEADER, flush=True)
  for silos in parse_ints(args.silos):
    record['rows'] += measure(
        silos, workloads, runs, batch_size=args.batch_size,
        local_steps=args.local_steps, rounds_per_call=args.rounds_per_call,
        repeats=args.repeats, with_loop=silos <= args.loop_max_silos,
        loop_conv=args.convs.split(',')[0])
  if args.find_max_silos:
    print('largest silo count whose compiled round fits (auto):', flush=True)
    search = find_max_silos(
        *workloads[args.convs.split(',')[0]], 'auto',
        batch_size=args.batch_size, local_steps=args.local_steps,
        limit=args.max_silos_limit)
    record['max_silos_auto'] = search['largest']
    record['max_silos_search'] = search
  record['host_maxrss_mb'] = common.host_maxrss_mb()
  path = common.write_result('round_throughput', record, args.out)
  print(f'wrote {path}')


if __name__ == '__main__':
  sys.exit(main())
