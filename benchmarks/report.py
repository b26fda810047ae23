# Copyright 2026 The fedhelp_jax Authors. Licensed under the Apache License 2.0.
r"""Prints the benchmark results in ``benchmarks/results/`` as markdown tables.

  python -m benchmarks.report            # every result file found
  python -m benchmarks.report --backend cpu

The README's benchmark tables are this script's output.
"""

import argparse
import glob
import json
import os

from benchmarks import common


def _device(rec):
  dev = rec['device']
  if rec['backend'] == 'cpu':
    dev = f"{rec.get('host_cpu_model', 'CPU')}, {rec['host_cpus']} cores"
  load = rec.get('load_avg_1m_at_start')
  load = f', load avg {load} at start' if load is not None else ''
  return f"{rec['backend']} ({dev}{load}), jax {rec['jax']}"


def round_throughput_table(rec) -> str:
  """Rows: silo count x strategy; images/s, ratio to the loop, compile."""
  w = rec['workload']
  lines = [
      f"Round throughput on {_device(rec)}: FedAvg, {w['model']} "
      f"({w['dtype']}), {w['local_steps']} local steps x batch "
      f"{w['batch_size']} per silo, {w['image'][0]}x{w['image'][1]} images; "
      f"median of {w['repeats']} interleaved repeats.", '',
      '| silos | conv | strategy | s / round | images/s | loop images/s '
      '| vs loop | compile s |', '|---|---|---|---|---|---|---|---|']
  for r in rec['rows']:
    name = r['strategy']
    if r['strategy'] == 'auto' or r['resolved'] == 'chunked':
      name = (f"{r['strategy']} → {r['resolved']}" if r['strategy'] == 'auto'
              else r['resolved'])
      if r['resolved'] == 'chunked':
        name += f"({r['chunk_size']})"
    loop = (f"{r['loop_images_per_s']:.0f}" if r['loop_images_per_s']
            else '—')
    ratio = (f"**{r['speedup_vs_loop']:.2f}×**" if r['speedup_vs_loop']
             else '—')
    lines.append(f"| {r['silos']} | {r.get('conv', 'xla')} | {name} | "
                 f"{r['round_s']:.3f} | {r['images_per_s']:.0f} | {loop} | "
                 f"{ratio} | {r['compile_s']:.1f} |")
  if rec.get('max_silos_auto'):
    lines += ['', f"Largest silo count that fit (auto): "
              f"{rec['max_silos_auto']}."]
  return '\n'.join(lines)


def sweep_table(rec) -> str:
  """Rows: workload x K; vmapped sweep vs K sequential runs."""
  lines = [f'Sweep on {_device(rec)}: {rec["workload_note"]}.', '',
           '| workload | K | sweep s | sequential s | speed-up | '
           'sweep compile s | sequential compile s | speed-up incl. compile |',
           '|---|---|---|---|---|---|---|---|']
  for r in rec['rows']:
    lines.append(
        f"| {r['workload']} | {r['configs']} | {r['sweep_s']:.3f} | "
        f"{r['sequential_s']:.3f} | **{r['speedup']:.2f}×** | "
        f"{r['sweep_compile_s']:.1f} | {r['sequential_compile_s']:.1f} | "
        f"{r['speedup_incl_compile']:.2f}× |")
  return '\n'.join(lines)


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--backend', default='*')
  parser.add_argument('--results', default=common.RESULTS_DIR)
  args = parser.parse_args(argv)
  tables = {'round_throughput': round_throughput_table,
            'sweep': sweep_table}
  for name, fn in tables.items():
    for path in sorted(glob.glob(os.path.join(
        args.results, f'{name}-{args.backend}.json'))):
      with open(path) as f:
        print(fn(json.load(f)) + '\n')


if __name__ == '__main__':
  main()
