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


def _mib(num) -> str:
  return '—' if num is None else f'{num / (1 << 20):,.0f}'


def scale_table(rec) -> str:
  """Rows of ``benchmarks/scale.py``: silos per process (a), processes (b),
  silos drawn per round (c); then each section's summary."""
  w = rec['workload']
  names = {'a': 'a: silos, 1 process', 'b': 'b: processes',
           'c': 'c: sampling'}
  lines = [
      f"Scale on {_device(rec)}, host memory "
      f"{(rec.get('host_memory_bytes') or 0) / (1 << 30):.1f} GiB: FedAvg, "
      f"{w['model']}, batch {w['batch_size']}, {w['images_per_silo']} "
      f"images per silo, {w['image'][0]}x{w['image'][1]} images, strategy "
      f"{w['strategy']}; each row a fresh process (b: per launch), median "
      f"of {w['repeats']} timed calls after a warm-up.", '',
      '| section | silos | drawn | processes x devices | local steps '
      '| s / round | images/s | ms / silo-step | vs ref | peak RSS MiB '
      '| state B/silo | data B/silo | note |',
      '|---|---|---|---|---|---|---|---|---|---|---|---|---|']
  for r in rec['rows']:
    section = names.get(r['section'], r['section'])
    if 'seconds_per_round' not in r:
      why = r.get('skipped') or r.get('error', '').splitlines()[0]
      lines.append(f"| {section} | {r['silos']} | | | "
                   f"{r.get('local_steps', '')} | — | | | | | | | {why} |")
      continue
    ratio = r.get('silo_step_cost_vs_ref')
    ratio = f'{ratio:.2f}' if ratio is not None else '—'
    lines.append(
        f"| {section} | {r['silos']:,} | {r['clients_per_round']:,} | "
        f"{r['processes']} x {r['devices_per_process']} | "
        f"{r['local_steps']} | {r['seconds_per_round']:.3f} | "
        f"{r['images_per_s']:,.0f} | "
        f"{r['seconds_per_silo_step'] * 1e3:.2f} | {ratio} | "
        f"{_mib(r['peak_rss_bytes'])} | "
        f"{r['persistent_state_bytes_per_silo']:,} | "
        f"{r['data_bytes_per_silo']:,} | {r.get('note', '')} |")
  summary = rec.get('summary', {})
  a, b, c = summary.get('a'), summary.get('b'), summary.get('c')
  notes = []
  if a and a.get('max_silo_step_cost_vs_ref') is not None:
    notes.append(
        f"(a) cost per silo-step vs {a['ref_silos']} silos (same local "
        f"steps): {a['min_silo_step_cost_vs_ref']:.2f}-"
        f"{a['max_silo_step_cost_vs_ref']:.2f}x; flat within 15%: "
        f"{'yes' if a['flat_within_15pct'] else 'no'}. Largest: "
        f"{a.get('largest_silos', 0):,} silos at "
        f"{_mib(a.get('largest_peak_rss_bytes'))} MiB peak RSS.")
  if b and b.get('two_process_speed_vs_one_process') is not None:
    notes.append(
        f"(b) 2 processes x 1 device at "
        f"{b['two_process_speed_vs_one_process']:.2f}x the speed of 1 "
        f"process x 2 devices (goal {b['goal']}).")
  if c:
    ratios = [f"{v:.2f}x at m = {k.rsplit('_m', 1)[1]}"
              for k, v in c.items() if k.startswith('round_s_ratio')]
    notes.append(
        '(c) seconds per drawn silo, largest over smallest: '
        f"{c['seconds_per_drawn_silo_max_over_min']:.2f}x"
        + (f"; round time, largest C over smallest: {', '.join(ratios)}"
           if ratios else '') + '.')
  if notes:
    lines += [''] + notes
  return '\n'.join(lines)


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--backend', default='*')
  parser.add_argument('--results', default=common.RESULTS_DIR)
  args = parser.parse_args(argv)
  tables = {'round_throughput': round_throughput_table,
            'sweep': sweep_table, 'scale': scale_table}
  for name, fn in tables.items():
    for path in sorted(glob.glob(os.path.join(
        args.results, f'{name}-{args.backend}.json'))):
      with open(path) as f:
        print(fn(json.load(f)) + '\n')


if __name__ == '__main__':
  main()
