# Copyright 2026 The fedhelp_jax Authors. Licensed under the Apache License 2.0.
r"""Scale: silos per process, processes per run, silos drawn per round.

FedAvg with the default CNN (``experiments/configs/fedavg_cls.py``'s model:
2 conv layers 32/64, GroupNorm, dense 128) on synthetic 28x28x1 images,
``engine.build_round(strategy='auto')`` compiled with ``engine.run_rounds``
(``check=False``). Every measurement runs in a FRESH process
(``benchmarks/scale_worker.py``): it compiles once, makes one warm-up call,
then times ``--repeats`` calls (the median is reported), and its
``peak_rss_bytes`` (``ru_maxrss``) is that process's own peak, data and
compilation included. Sections:

  (a) ``silos``: 8 -> 10,000 silos in one process on one host device
      (``FEDHELP_HOST_DEVICES=1``, no device count in ``XLA_FLAGS``). Goal:
      seconds per silo-step flat within 15% from 64 silos up, and 10,000
      silos within the host's memory. Rows from ``--big_from`` silos up run
      ``--big_local_steps`` local steps (a round of 10,000 silos x 4 steps
      would take ~13 min on 2 CPU cores at the ~20 ms per silo-step
      measured at 64 silos); their ``note`` says so, and a
      reference row at ``--ref_silos`` silos with the same steps is added,
      so every row's ``silo_step_cost_vs_ref`` compares equal step counts.
  (b) ``processes``: the same round over 1 process x 2 host devices and
      2 processes x 1 device (``fedhelp_jax.distributed.initialize`` on
      127.0.0.1, ``engine.make_mesh(2)`` spanning both), launched in
      alternation ``--b_launches`` times each; each launch times
      ``--repeats`` calls in the workers (process 0's median is the
      launch's), the row is the median over launches. Goal: the 2-process
      run at >= 0.85x the speed of the 1-process one. On CPU both sides get
      ``--xla_cpu_multi_thread_eigen=false`` (one core per device, as
      ``fedhelp_jax.host_devices`` sets for several host devices).
  (c) ``sampling``: ``clients_per_round`` m of C silos, one process, one
      device, the draws timed in alternation: m = 25/50/100 of 10,000 and
      m = 100 of 1,000. Goal: time per round proportional to m, not C.

JSON: ``benchmarks/results/scale-<backend>.json`` (rows with ``silos``,
``processes``, ``devices_per_process``, ``seconds_per_round``,
``images_per_s``, ``peak_rss_bytes``, ``persistent_state_bytes_per_silo``,
``data_bytes_per_silo`` and more; ``summary`` per section). Markdown:
``python -m benchmarks.report`` (``report.scale_table``).

  python -m benchmarks.scale                        # ~25 min, 2 cores
  python -m benchmarks.scale --sections a --silos 8,64,512
  python -m benchmarks.scale --quick --out "$(mktemp -d)"   # smoke, seconds
"""

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time

from benchmarks import common

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SECTIONS = ('a', 'b', 'c')
_COUNT_FLAG = '--xla_force_host_platform_device_count'
_SINGLE_THREAD_FLAG = '--xla_cpu_multi_thread_eigen=false'
_MIB = 1 << 20


class WorkerError(RuntimeError):
  """A worker exited with an error, was killed or ran past its timeout."""


def parse_ints(s):
  return [int(v) for v in s.split(',') if v]


def parse_draws(s):
  """``'10000:25,1000:100'`` -> ``[(10000, 25), (1000, 100)]``."""
  draws = []
  for item in filter(None, s.split(',')):
    silos, _, drawn = item.partition(':')
    draws.append((int(silos), int(drawn)))
  return draws


def host_memory_bytes():
  try:
    return os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES')
  except (ValueError, OSError, AttributeError):
    return None


def worker_env(devices, *, single_thread=False, extra_flags=()):
  """The environment of a worker with ``devices`` host devices.

  Any host device count in ``XLA_FLAGS`` is replaced (none for one
  device), ``FEDHELP_HOST_DEVICES`` says the same count, ``extra_flags``
  are appended. GPU memory is not preallocated (a worker may share the
  device with its launcher, e.g. ``gpu_suite``).
  """
  env = dict(os.environ)
  flags = [f for f in env.get('XLA_FLAGS', '').split()
           if not f.startswith(_COUNT_FLAG)]
  if devices > 1:
    flags.append(f'{_COUNT_FLAG}={devices}')
  if single_thread and _SINGLE_THREAD_FLAG not in flags:
    flags.append(_SINGLE_THREAD_FLAG)
  flags += [f for f in extra_flags if f not in flags]
  env['XLA_FLAGS'] = ' '.join(flags)
  env['FEDHELP_HOST_DEVICES'] = str(devices)
  env['XLA_PYTHON_CLIENT_PREALLOCATE'] = 'false'
  env['PYTHONUNBUFFERED'] = '1'
  env['PYTHONPATH'] = os.pathsep.join(
      p for p in (ROOT, env.get('PYTHONPATH')) if p)
  return env


def _command(spec):
  return [sys.executable, '-m', 'benchmarks.scale_worker', json.dumps(spec)]


def _result(stdout):
  from benchmarks import scale_worker  # pylint: disable=g-import-not-at-top
  lines = [l for l in stdout.splitlines()
           if l.startswith(scale_worker.PREFIX)]
  return json.loads(lines[-1][len(scale_worker.PREFIX):]) if lines else None


def _failure(what, rc, stderr):
  how = (f'killed by signal {-rc}' + (' (out of memory?)' if rc == -9 else '')
         if rc < 0 else f'exit status {rc}')
  return WorkerError(f'{what}: {how}; stderr tail:\n{stderr[-3000:]}')


def run_worker(spec, env, timeout_s):
  """Runs one worker process; returns its result dict."""
  try:
    proc = subprocess.run(_command(spec), cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout_s,
                          check=False)
  except subprocess.TimeoutExpired as e:
    raise WorkerError(f'worker ran past its {timeout_s:.0f} s timeout') from e
  result = _result(proc.stdout)
  if proc.returncode != 0 or result is None:
    raise _failure('worker', proc.returncode, proc.stderr)
  return result


def _free_port():
  with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


def run_processes(spec, num_processes, env, timeout_s):
  """``num_processes`` workers joined by ``jax.distributed`` on 127.0.0.1;
  returns their results, process 0 first. All are killed on a timeout or as
  soon as one fails (the others would wait in a collective for it)."""
  address = f'127.0.0.1:{_free_port()}'
  with tempfile.TemporaryDirectory() as tmp:
    files, procs = [], []
    try:
      for i in range(num_processes):
        out = open(os.path.join(tmp, f'{i}.out'), 'w+')
        err = open(os.path.join(tmp, f'{i}.err'), 'w+')
        files.append((out, err))
        procs.append(subprocess.Popen(
            _command({**spec, 'coordinator_address': address,
                      'num_processes': num_processes, 'process_id': i}),
            cwd=ROOT, env=env, stdout=out, stderr=err, text=True))
      deadline = time.monotonic() + timeout_s
      failed = []
      while any(p.poll() is None for p in procs):
        failed = [i for i, p in enumerate(procs)
                  if p.poll() not in (None, 0)]
        if failed:
          break
        if time.monotonic() > deadline:
          raise WorkerError(f'the processes ran past the {timeout_s:.0f} s '
                            'timeout')
        time.sleep(0.05)
    finally:
      for p in procs:
        if p.poll() is None:
          p.kill()
          p.wait()
    texts = []
    for out, err in files:
      out.seek(0)
      err.seek(0)
      texts.append((out.read(), err.read()))
      out.close()
      err.close()
  # The first to fail on its own, not one stopped here because of it.
  for i in failed + list(range(num_processes)):
    if procs[i].returncode != 0:
      raise _failure(f'process {i}', procs[i].returncode, texts[i][1])
  results = [_result(out) for out, _ in texts]
  if not all(results):
    raise WorkerError('a process printed no result: '
                      + ' | '.join(err[-1000:] for _, err in texts))
  return results


def _derive(row):
  """Throughput fields from ``seconds_per_round``."""
  s = row['seconds_per_round']
  steps = row['clients_per_round'] * row['local_steps']
  row['silo_steps_per_round'] = steps
  row['images_per_round'] = steps * row['batch_size']
  row['images_per_s'] = row['images_per_round'] / s
  row['silo_steps_per_s'] = steps / s
  row['seconds_per_silo_step'] = s / steps
  return row


HEADER = (f"{'sec':>3} {'silos':>6} {'drawn':>6} {'PxD':>4} {'steps':>5} "
          f"{'s/round':>9} {'img/s':>8} {'ms/silo-step':>12} "
          f"{'peak RSS MiB':>12} {'state B/silo':>12} {'data B/silo':>11}  "
          'note')


def print_row(row):
  if 'skipped' in row:
    print(f"{row['section']:>3} {row['silos']:>6} skipped: {row['skipped']}",
          flush=True)
    return
  if 'error' in row:
    print(f"{row['section']:>3} {row['silos']:>6} error: "
          f"{row['error'].splitlines()[0]}", flush=True)
    return
  pxd = f"{row['processes']}x{row['devices_per_process']}"
  print(f"{row['section']:>3} {row['silos']:>6} "
        f"{row['clients_per_round']:>6} {pxd:>4} {row['local_steps']:>5} "
        f"{row['seconds_per_round']:9.3f} {row['images_per_s']:8.0f} "
        f"{row['seconds_per_silo_step'] * 1e3:12.2f} "
        f"{row['peak_rss_bytes'] / _MIB:12.0f} "
        f"{row['persistent_state_bytes_per_silo']:>12,} "
        f"{row['data_bytes_per_silo']:>11,}  {row.get('note', '')}",
        flush=True)


def _base_spec(s):
  return {'batch_size': s['batch_size'], 'images_per_silo': s['images'],
          'model': s['model'], 'model_kwargs': s['model_kwargs'],
          'hw': s['hw'], 'repeats': s['repeats'], 'rounds_per_call': 1}


def a_runs(s):
  """``(silos, local_steps, note)`` of section a, in the order run."""
  runs = []
  big = [n for n in s['silos'] if s['big_from'] and n >= s['big_from']]
  for n in s['silos']:
    if n in big:
      runs.append((n, s['big_local_steps'],
                   f"{s['big_local_steps']} local step(s), not "
                   f"{s['local_steps']}, to keep the run short"))
    else:
      runs.append((n, s['local_steps'], ''))
  if big and not any(n == s['ref_silos'] and k == s['big_local_steps']
                     for n, k, _ in runs):
    # The reference of the rows with fewer steps: same steps, few silos.
    index = next((i for i, (n, _, _) in enumerate(runs)
                  if n >= s['big_from']), len(runs))
    runs.insert(index, (s['ref_silos'], s['big_local_steps'],
                        f"reference for the {s['big_local_steps']}-step "
                        'rows'))
  return runs


def section_a(s, emit, *, deadline=None, note='', device_records=None):
  """One fresh one-device process per silo count; returns the rows.

  With ``deadline`` (``time.monotonic()``), rows are not started past it and
  a worker's timeout ends 30 s after it. ``device_records``, a list, gets
  each worker's ``common.device_record()``.
  """
  rows = []
  for silos, steps, why in a_runs(s):
    if deadline is not None and time.monotonic() > deadline:
      row = {'section': 'a', 'silos': silos, 'local_steps': steps,
             'skipped': 'time budget spent'}
      rows.append(row)
      emit(row)
      continue
    spec = {**_base_spec(s), 'mode': 'silos', 'silos': silos,
            'local_steps': steps}
    timeout = s['timeout_s']
    if deadline is not None:
      timeout = min(timeout, max(30.0, deadline - time.monotonic() + 30.0))
    row = {'section': 'a', 'processes': 1, 'devices_per_process': 1,
           'note': '; '.join(filter(None, (why, note)))}
    try:
      result = run_worker(
          spec, worker_env(1, extra_flags=s['xla_flags']), timeout)
      record = result.pop('device_record', None) or {}
      if device_records is not None and record:
        device_records.append(record)
      row.update(result)
      row['load_avg_1m_at_start'] = record.get('load_avg_1m_at_start')
      _derive(row)
    except WorkerError as e:
      row.update({'silos': silos, 'local_steps': steps, 'error': str(e)})
    rows.append(row)
    emit(row)
  return rows


def a_summary(rows, ref_silos, host_memory):
  """Per-silo-step cost of each row against the ``ref_silos`` row with the
  same local steps (``silo_step_cost_vs_ref``); the goals' verdicts."""
  done = [r for r in rows if 'seconds_per_silo_step' in r]
  for r in done:
    refs = [q for q in done if q['local_steps'] == r['local_steps']
            and q['silos'] >= ref_silos]
    if refs:
      ref = min(refs, key=lambda q: q['silos'])
      r['ref_silos'] = ref['silos']
      r['silo_step_cost_vs_ref'] = (r['seconds_per_silo_step']
                                    / ref['seconds_per_silo_step'])
  ratios = [r['silo_step_cost_vs_ref'] for r in done
            if r['silos'] >= ref_silos and 'silo_step_cost_vs_ref' in r]
  largest = max(done, key=lambda r: r['silos'], default=None)
  summary = {'ref_silos': ref_silos,
             'max_silo_step_cost_vs_ref': max(ratios, default=None),
             'min_silo_step_cost_vs_ref': min(ratios, default=None),
             'flat_within_15pct': bool(ratios) and all(
                 abs(x - 1) <= 0.15 for x in ratios),
             'host_memory_bytes': host_memory,
             'errors': [r['silos'] for r in rows if 'error' in r]}
  if largest is not None:
    summary['largest_silos'] = largest['silos']
    summary['largest_peak_rss_bytes'] = largest['peak_rss_bytes']
    if host_memory:
      summary['largest_peak_rss_fraction_of_host'] = (
          largest['peak_rss_bytes'] / host_memory)
  return summary


def section_b(s, emit):
  """1 process x 2 devices and 2 processes x 1 device, alternated."""
  spec = {**_base_spec(s), 'mode': 'mesh', 'silos': s['b_silos'],
          'local_steps': s['local_steps'], 'devices': 2}
  env = lambda devices: worker_env(devices,
                                  single_thread=s['b_single_thread'],
                                  extra_flags=s['xla_flags'])
  sides = {(1, 2): lambda: [run_worker(spec, env(2), s['timeout_s'])],
           (2, 1): lambda: run_processes(spec, 2, env(1), s['timeout_s'])}
  launches = {side: [] for side in sides}
  errors = {}
  for _ in range(s['b_launches']):
    for side, launch in sides.items():
      if side in errors:
        continue
      try:
        launches[side].append(launch())
      except WorkerError as e:
        errors[side] = str(e)
  rows = []
  for (procs, devs), results in launches.items():
    row = {'section': 'b', 'processes': procs, 'devices_per_process': devs,
           'note': f'median over {len(results)} alternated launches'}
    if not results:
      row.update({'silos': s['b_silos'], 'error': errors[(procs, devs)]})
      rows.append(row)
      emit(row)
      continue
    firsts = [r[0] for r in results]  # Process 0 of each launch.
    row.update({k: v for k, v in firsts[0].items()
                if k not in ('seconds_per_round', 'seconds_per_round_all',
                             'device_record', 'process_id')})
    row['seconds_per_round'] = common.median(
        [r['seconds_per_round'] for r in firsts])
    row['seconds_per_round_launches'] = [r['seconds_per_round_all']
                                         for r in firsts]
    row['seconds_per_round_by_process'] = [
        [launch[i]['seconds_per_round'] for i in range(procs)]
        for launch in results]
    row['peak_rss_bytes'] = max(r['peak_rss_bytes'] for r in firsts)
    row['peak_rss_bytes_per_process'] = [
        max(launch[i]['peak_rss_bytes'] for launch in results)
        for i in range(procs)]
    row['compile_s'] = common.median([r['compile_s'] for r in firsts])
    row['load_avg_1m_at_start'] = [
        r.get('device_record', {}).get('load_avg_1m_at_start')
        for r in firsts]
    row['launches'] = len(results)
    if (procs, devs) in errors:
      row['error_in_a_later_launch'] = errors[(procs, devs)]
    rows.append(_derive(row))
    emit(row)
  return rows


def b_summary(rows):
  t = {(r['processes'], r['devices_per_process']): r['seconds_per_round']
       for r in rows if 'seconds_per_round' in r}
  speed = (t[(1, 2)] / t[(2, 1)]) if (1, 2) in t and (2, 1) in t else None
  return {'two_process_speed_vs_one_process': speed,
          'goal': '>= 0.85',
          'meets_goal': speed is not None and speed >= 0.85}


def section_c(s, emit):
  """The draws of ``s['c_draws']`` in one process, one device."""
  spec = {**_base_spec(s), 'mode': 'sample', 'draws': s['c_draws'],
          'local_steps': s['local_steps']}
  try:
    result = run_worker(spec, worker_env(1, extra_flags=s['xla_flags']),
                        s['timeout_s'])
  except WorkerError as e:
    row = {'section': 'c', 'silos': s['c_draws'][0][0], 'error': str(e)}
    emit(row)
    return [row]
  rows = []
  load = result.get('device_record', {}).get('load_avg_1m_at_start')
  for r in result['rows']:
    row = {'section': 'c', 'processes': 1, 'devices_per_process': 1, **r,
           'load_avg_1m_at_start': load,
           'note': f"{r['clients_per_round']} of {r['silos']} silos drawn; "
                   'peak RSS of the one process of every draw'}
    _derive(row)
    row['seconds_per_drawn_silo'] = (row['seconds_per_round']
                                     / row['clients_per_round'])
    rows.append(row)
    emit(row)
  return rows


def c_summary(rows):
  done = [r for r in rows if 'seconds_per_round' in r]
  if not done:
    return {}
  per = [r['seconds_per_drawn_silo'] for r in done]
  out = {'seconds_per_drawn_silo_max_over_min': max(per) / min(per)}
  by = {(r['silos'], r['clients_per_round']): r['seconds_per_round']
        for r in done}
  same_m = {}
  for (silos, m), t in by.items():
    same_m.setdefault(m, {})[silos] = t
  for m, ts in same_m.items():
    if len(ts) > 1:
      out[f'round_s_ratio_largest_vs_smallest_C_at_m{m}'] = (
          ts[max(ts)] / ts[min(ts)])
  return out


def settings(args):
  """Sizes of every section: the full ones, or tiny (``--quick``)."""
  if args.quick:
    # Logistic regression on 4x4 images: the code path of the CNN at a
    # fraction of its compile time (XLA:CPU takes seconds per conv
    # program), compiled without XLA's backend optimisations (a smoke test
    # times nothing); 'auto' is chunked(1) on CPU either way.
    return {'model': 'logreg', 'model_kwargs': None, 'hw': 4,
            'batch_size': 4, 'local_steps': 2, 'images': 8, 'repeats': 2,
            'silos': parse_ints(args.silos) if args.silos else [4, 16],
            'big_from': 0, 'big_local_steps': 1, 'ref_silos': 4,
            'b_silos': 4, 'b_launches': 1, 'b_single_thread': True,
            'c_draws': [(32, 4), (8, 4)], 'timeout_s': 120.0,
            'xla_flags': ['--xla_backend_optimization_level=0']}
  return {'model': 'cnn', 'model_kwargs': None, 'hw': 28,
          'batch_size': args.batch_size, 'local_steps': args.local_steps,
          'images': args.images_per_silo, 'repeats': args.repeats,
          'silos': parse_ints(args.silos or '8,64,512,2048,10000'),
          'big_from': args.big_from, 'big_local_steps': args.big_local_steps,
          'ref_silos': args.ref_silos, 'b_silos': args.b_silos,
          'b_launches': args.b_launches,
          'b_single_thread': args.b_single_thread,
          'c_draws': parse_draws(args.c_draws),
          'timeout_s': args.timeout_s, 'xla_flags': []}


def new_record(s, args_note, device=None):
  """The JSON record; ``device`` (a worker's ``common.device_record()``)
  spares starting a backend in this process."""
  if device is None:
    # On a GPU the launcher must not hold the device's memory while its
    # workers run (read when the backend starts, in device_record).
    os.environ.setdefault('XLA_PYTHON_CLIENT_PREALLOCATE', 'false')
    device = common.device_record()
  return {'benchmark': 'scale', **device,
          'workload': {'algorithm': 'fedavg', 'model': s['model'],
                       'model_kwargs': s['model_kwargs'],
                       'image': [s['hw'], s['hw'], 1],
                       'batch_size': s['batch_size'],
                       'local_steps': s['local_steps'],
                       'images_per_silo': s['images'],
                       'repeats': s['repeats'], 'strategy': 'auto',
                       'data': 'synthetic, shapes of PneumoniaMNIST'},
          'settings': {k: v for k, v in s.items()},
          'host_memory_bytes': host_memory_bytes(), 'note': args_note,
          'rows': [], 'summary': {}}


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--sections', default='a,b,c',
                      help=f'some of {SECTIONS}')
  parser.add_argument('--silos', default=None,
                      help='section a silo counts (default '
                      '8,64,512,2048,10000)')
  parser.add_argument('--quick', action='store_true',
                      help='tiny sizes: a smoke test of every section')
  parser.add_argument('--batch_size', type=int, default=32)
  parser.add_argument('--local_steps', type=int, default=4)
  parser.add_argument('--images_per_silo', type=int, default=128)
  parser.add_argument('--repeats', type=int, default=3,
                      help='timed calls per process (median)')
  parser.add_argument('--big_from', type=int, default=2048,
                      help='section a: rows from this many silos run '
                      '--big_local_steps (0: none)')
  parser.add_argument('--big_local_steps', type=int, default=1)
  parser.add_argument('--ref_silos', type=int, default=64,
                      help='section a: the per-silo-step cost reference')
  parser.add_argument('--b_silos', type=int, default=32)
  parser.add_argument('--b_launches', type=int, default=3,
                      help='section b: alternated launches of each side')
  parser.add_argument('--b_single_thread', default=True,
                      action=argparse.BooleanOptionalAction,
                      help='section b: one XLA:CPU thread per device')
  parser.add_argument('--c_draws', default='10000:25,10000:50,10000:100,'
                      '1000:100', help='section c: SILOS:DRAWN pairs')
  parser.add_argument('--timeout_s', type=float, default=3600.0,
                      help='per worker process')
  parser.add_argument('--out', default=common.RESULTS_DIR)
  args = parser.parse_args(argv)
  sections = [x for x in args.sections.split(',') if x]
  unknown = sorted(set(sections) - set(SECTIONS))
  if unknown:
    parser.error(f'--sections: unknown {unknown}; expected some of '
                 f'{SECTIONS}')
  s = settings(args)
  record = new_record(s, 'quick (smoke) sizes' if args.quick else '')
  record['argv'] = list(sys.argv[1:] if argv is None else argv)
  print(f"device: {record['device']} ({record['backend']}), jax "
        f"{record['jax']}, host memory "
        f"{(record['host_memory_bytes'] or 0) / (1 << 30):.1f} GiB",
        flush=True)
  print(HEADER, flush=True)

  def emit(row):
    print_row(row)
    record['rows'].append(row)
    common.write_result('scale', record, args.out)  # Kept if killed later.

  t0 = time.monotonic()
  if 'a' in sections:
    rows = section_a(s, emit)
    record['summary']['a'] = a_summary(rows, s['ref_silos'],
                                       record['host_memory_bytes'])
  if 'b' in sections:
    record['summary']['b'] = b_summary(section_b(s, emit))
  if 'c' in sections:
    record['summary']['c'] = c_summary(section_c(s, emit))
  record['elapsed_s'] = time.monotonic() - t0
  for name, summary in record['summary'].items():
    print(f'summary {name}: {json.dumps(summary)}', flush=True)
  path = common.write_result('scale', record, args.out)
  print(f'wrote {path}')
  failed = [r for r in record['rows'] if 'error' in r]
  return 1 if failed else 0


if __name__ == '__main__':
  sys.exit(main())
