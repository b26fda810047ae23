# Copyright 2026 The fedhelp_jax Authors. Licensed under the Apache License 2.0.
r"""Prints the benchmark results in ``benchmarks/results/`` as markdown tables.

  python -m benchmarks.report            # every result file found
  python -m benchmarks.report --backend cpu
  python -m benchmarks.report --markdown docs/benchmarks.md   # the docs page

It reads the committed JSON only; it never runs a benchmark. The tables of
``docs/benchmarks.md`` are this script's output.
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


def _strategy(r) -> str:
  """``auto → chunked(1)``-style name of a row's strategy."""
  name, resolved = r['strategy'], r.get('resolved') or r['strategy']
  if resolved == 'chunked':
    resolved += f"({r.get('chunk_size')})"
  return name if resolved == name else f'{name} → {resolved}'


def peer_table(rec) -> str:
  """Rows of ``benchmarks/peer_torch.py``: the compiled round (and the
  library's loop) against the eager torch per-client loop."""
  w = rec['workload']
  torch = rec.get('torch') or {}
  lines = [
      f"Against the {rec['peer']} on {_device(rec)}, "
      f"{rec.get('num_devices', 1)} JAX device(s), torch "
      f"{torch.get('version', '—')}: FedAvg, {w['model']} ({w['dtype']}), "
      f"{w['local_steps']} local steps x batch {w['batch_size']} per silo, "
      f"{w['image'][0]}x{w['image'][1]} images; median of {w['repeats']} "
      'interleaved repeats.', '',
      '| silos | fedhelp_jax strategy | images/s | torch threads | torch '
      'images/s | fedhelp_jax vs torch |', '|---|---|---|---|---|---|']
  for r in rec.get('rows') or []:
    lines.append(
        f"| {r['silos']} | {_strategy(r)} | {r['images_per_s']:.0f} | "
        f"{r['peer_threads']} | {r['peer_images_per_s']:.0f} | "
        f"**{r['speedup_vs_peer']:.2f}×** |")
  if not rec.get('rows'):
    lines.append(f"| — | {rec.get('skipped', 'no rows')} | | | | |")
  return '\n'.join(lines)


def sampling_table(rec) -> str:
  """Rows of ``benchmarks/sampling.py``: round time vs silos drawn."""
  lines = [
      f"Client sampling on {_device(rec)}: the round-throughput FedAvg "
      f"round, strategy {rec['strategy'].split(':')[0]}; median of "
      f"{rec['repeats']} interleaved repeats.", '',
      '| silos | drawn | drawn fraction | s / round | round time vs all '
      'drawn |', '|---|---|---|---|---|']
  for r in rec['rows']:
    lines.append(f"| {r['silos']} | {r['clients_per_round']} | "
                 f"{r['drawn_fraction']:.3f} | {r['round_s']:.3f} | "
                 f"{r['time_vs_all']:.2f} |")
  return '\n'.join(lines)


def sweep_plans_table(rec) -> str:
  """Rows of ``benchmarks/sweep.py`` with the map plan: K configs vmapped,
  mapped inside one program, and run one by one."""
  lines = [f'Sweep plans on {_device(rec)}: {rec["workload_note"]}.', '',
           '| workload | K | silos | rounds | vmap s | map s | sequential s '
           '| vmap vs sequential | map vs sequential |',
           '|---|---|---|---|---|---|---|---|---|']
  for r in rec['rows']:
    lines.append(
        f"| {r['workload']} | {r['configs']} | {r['silos']} | "
        f"{r['rounds']} | {r['sweep_s']:.3f} | {r['map_s']:.3f} | "
        f"{r['sequential_s']:.3f} | {r['speedup']:.2f}× | "
        f"{r['speedup_map']:.2f}× |")
  return '\n'.join(lines)


def batch4_table(rec) -> str:
  """Rows of ``benchmarks/batch4.py``: the variants side by side, then the
  profile of today's default round."""
  w = rec['workload']
  lines = [
      f"Batch-4 round (the FedHelp authors' recipe) on {_device(rec)}: "
      f"`{w['config']}`, {w['data']}; each variant in its own process, "
      f"{w['passes']} passes in opposite order, median of every timed "
      'round.', '',
      '| variant | padded steps | one `L_k` forward | layers | devices '
      '| FedHelp s / round | vs before | FedAvg s / round | vs before |',
      '|---|---|---|---|---|---|---|---|---|']
  variants: dict = {}
  for v in rec['variants']:
    variants.setdefault(v['variant'], {})[v['algorithm']] = v
  for name, by_alg in variants.items():
    first = next(iter(by_alg.values()))
    cells = []
    for alg in ('fedhelp', 'fedavg'):
      v = by_alg.get(alg)
      cells += (['–', '–'] if v is None else
                [f"{v['round_s']:.3f}", f"{v['speedup_vs_before']:.2f}×"])
    lines.append(
        f"| `{name}` | {first['padded_steps']} | "
        f"{'yes' if first['share_large_forward'] else 'no'} | "
        f"{first['layers']} | {first['devices']} | " + ' | '.join(cells)
        + ' |')
  lines += ['', 'Profile of the default round on one device, one program '
            'per row (compile excluded), timed in its own process before '
            'the variants: compare its rows with each other.', '',
            '| algorithm | groups | s / round | active local steps | '
            'scanned steps | ms per active step |',
            '|---|---|---|---|---|---|']
  for p in rec.get('profile') or []:
    steps = p['steps'].values()
    lines.append(
        f"| {p['algorithm']} | {', '.join(p['groups'])} | "
        f"{p['round_s']:.2f} | {sum(s['active_total'] for s in steps)} | "
        f"{sum(s['scanned_total'] for s in steps)} | "
        f"{p['ms_per_active_step']:.1f} |")
  return '\n'.join(lines)


# (file name prefix, section title, table function), in page order.
TABLES = (
    ('round_throughput', 'Round throughput', round_throughput_table),
    ('sweep', 'Sweeps: vmapped vs sequential', sweep_table),
    ('sweep_plans', 'Sweep plans: vmap, map and sequential',
     sweep_plans_table),
    ('sampling', 'Client sampling', sampling_table),
    ('peer', 'Against a PyTorch per-client loop', peer_table),
    ('batch4', "The batch-4 regime (the FedHelp authors' recipe)",
     batch4_table),
    ('scale', 'Scale: silos, processes, sampling', scale_table),
)


def result_files(results: str, name: str, backend: str = '*') -> list[str]:
  """``name-<backend>.json`` and ``name-<backend>-<variant>.json``."""
  found = set(glob.glob(os.path.join(results, f'{name}-{backend}.json')))
  found |= set(glob.glob(os.path.join(results, f'{name}-{backend}-*.json')))
  return sorted(found)


def markdown_page(results: str, backend: str = '*') -> str:
  """The docs page: every committed result file as a table, with its
  source named."""
  out = [
      '# Benchmark results', '',
      'Generated by `python -m benchmarks.report --markdown '
      'docs/benchmarks.md` from the JSON files in `benchmarks/results/`; '
      'edit the JSON (by rerunning a benchmark), not this page. Each file '
      'records the device, the jax version and the load average at the '
      'start. The last digits differ across CPU models and with the load '
      'of the machine. What the numbers mean, and how each benchmark is '
      'run, is in [scale.md](scale.md) and [perf_notes.md](perf_notes.md).']
  paths = [p for name, _, _ in TABLES
           for p in result_files(results, name, backend)]
  if not any('-gpu' in os.path.basename(p) for p in paths):
    out += ['', 'No GPU results are committed yet: `bash '
            'benchmarks/gpu_suite.sh` writes them (`*-gpu.json`).']
  for name, title, fn in TABLES:
    for path in result_files(results, name, backend):
      with open(path) as f:
        table = fn(json.load(f))
      out += ['', f'## {title} (`benchmarks/results/'
              f'{os.path.basename(path)}`)', '', table]
  return '\n'.join(out) + '\n'


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--backend', default='*')
  parser.add_argument('--results', default=common.RESULTS_DIR)
  parser.add_argument('--markdown', default=None, metavar='PATH',
                      help='write every table as one markdown page to PATH '
                      'instead of printing them')
  args = parser.parse_args(argv)
  if args.markdown:
    with open(args.markdown, 'w') as f:
      f.write(markdown_page(args.results, args.backend))
    print('wrote', args.markdown)
    return
  for name, _, fn in TABLES:
    for path in result_files(args.results, name, args.backend):
      with open(path) as f:
        print(fn(json.load(f)) + '\n')


if __name__ == '__main__':
  main()
