# Copyright 2026 The fedhelp_jax Authors. Licensed under the Apache License 2.0.
r"""Client sampling: does a round's time scale with the silos drawn?

The FedAvg round of ``round_throughput`` (default CNN, 4 SGD steps of batch
32 per silo) over ``--silos`` silos, with ``clients_per_round`` = all, 1/2,
1/4 and 1/8 of them, compiled with ``auto`` and timed interleaved in one
process. Only the drawn silos are gathered and trained, so the round time
should fall with the draw; the ratio to the full round is printed and
written to ``benchmarks/results/sampling-<backend>.json``.

  python -m benchmarks.sampling                # 32 silos
  python -m benchmarks.sampling --silos 256    # accelerators
"""

import argparse
import sys

import jax

from benchmarks import common
from fedhelp_jax import engine


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--silos', type=int, default=32)
  parser.add_argument('--examples', type=int, default=128)
  parser.add_argument('--repeats', type=int, default=5)
  parser.add_argument('--rounds_per_call', type=int, default=2)
  parser.add_argument('--out_dir', default=common.RESULTS_DIR)
  args = parser.parse_args(argv)

  data, weights = common.make_federation(args.silos, args.examples)
  data, weights = jax.device_put((data, weights))
  alg, hparams = common.fedavg_workload('cnn', batch_size=32, local_steps=4)
  draws = sorted({args.silos, args.silos // 2, args.silos // 4,
                  args.silos // 8} - {0}, reverse=True)
  calls = {}
  for m in draws:
    fn, strategy = common.compiled_rounds(
        alg, args.rounds_per_call, strategy='auto',
        clients_per_round=None if m == args.silos else m)
    box = [engine.init_state(alg, data, 0)]

    def call(fn=fn, box=box):
      box[0], metrics = fn(box[0], data, weights, hparams)
      common.block((box[0], metrics))

    call()  # Compile and warm up.
    calls[m] = call
  times = {m: [] for m in draws}
  for _ in range(args.repeats):  # Interleaved: load drifts hit all alike.
    for m in draws:
      times[m] += common.time_calls(calls[m], 1)
  full = common.median(times[args.silos]) / args.rounds_per_call
  rows = []
  for m in draws:
    round_s = common.median(times[m]) / args.rounds_per_call
    rows.append({'silos': args.silos, 'clients_per_round': m,
                 'round_s': round_s, 'time_vs_all': round_s / full,
                 'drawn_fraction': m / args.silos})
    print(f'{m:5d} of {args.silos} silos: {round_s:.3f} s/round, '
          f'{round_s / full:.2f}x the full round (drawn {m / args.silos:.2f})')
  record = {**common.device_record(), 'benchmark': 'sampling',
            'strategy': strategy.describe(), 'rows': rows,
            'repeats': args.repeats}
  print('wrote', common.write_result('sampling', record, args.out_dir))


if __name__ == '__main__':
  sys.exit(main())
