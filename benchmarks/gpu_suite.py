# Copyright 2026 The fedhelp_jax Authors. Licensed under the Apache License 2.0.
r"""Every benchmark in one run, sized for one H100/H200 in under 8 minutes.

Sections, in this order, each guarded (a failure is recorded in the JSON and
the suite goes on) and each stopped early when its share of ``--budget_s``
is spent:

  * ``round_throughput``: FedAvg with the default CNN at ``--silos``
    (8/32/128/1024) for ``vmap``, ``chunked`` (``--chunk_sizes``), ``auto``
    and the per-client Python ``loop``, in float32 and bfloat16
    (``benchmarks.round_throughput.measure``);
  * ``peer_torch``: the compiled round against a plain PyTorch per-client
    loop on the same device (``benchmarks.peer_torch``); recorded as skipped
    when torch is not importable;
  * ``sweep``: K = 1/4/8/16 configs as one vmapped program vs K sequential
    runs (``benchmarks.sweep.measure``);
  * ``authors_recipe``: the round time of the FedHelp authors' recipe
    (``experiments/configs/fedhelp_cls_authors.py``: 6 silos, Adam, batch 4,
    one local epoch; FedHelp with its ResNet-8 large models, and FedAvg) on
    synthetic data with PneumoniaMNIST's split sizes and a synthetic
    precomputed FM, so no dataset is needed (``--authors_data=real`` loads
    the real data through TFDS instead; ``off`` skips it);
  * ``scale``: section (a) of ``benchmarks/scale.py`` at ``--scale_silos``
    (64/1024/10000): FedAvg with the default CNN, 4 local steps of batch 32
    per silo, each silo count in a fresh process (its own peak RSS and
    device memory; a count that does not fit is a row with its error);
    written to ``scale-<backend>.json`` (the K-config sweep rows are the
    ``sweep`` section's);
  * ``max_silos``: the largest silo count whose compiled ``auto`` round
    fits, doubling from 64 (``round_throughput.find_max_silos``); last,
    because it takes whatever time is left.

Writes, under ``--out_dir`` (default ``benchmarks/results``):
``round_throughput-<backend>.json`` (rows carry their ``dtype``; the max
silo search is added to it), ``peer-<backend>.json``, ``sweep-<backend>.json``,
``authors_recipe-<backend>.json``, ``scale-<backend>.json`` and
``gpu_suite-<backend>.json`` (every section's status, seconds and error,
and the budget). ``<backend>`` is ``gpu`` on an NVIDIA GPU.

``--smoke`` checks the plumbing on a CPU: every section with tiny shapes
(logistic regression on 4x4 images for the FedAvg sections and the authors'
recipe, a one-layer CNN for the torch peer, 2 silos, 1 repeat).

  bash benchmarks/gpu_suite.sh                       # on the GPU machine
  bash benchmarks/gpu_suite.sh --budget_s 300
  python -m benchmarks.gpu_suite --smoke --out_dir "$(mktemp -d)"  # CPU
"""

import argparse
import json
import os
import sys
import tempfile
import time
import traceback

import jax
import numpy as np

from benchmarks import common
from benchmarks import peer_torch
from benchmarks import round_throughput
from benchmarks import scale
from benchmarks import sweep
from fedhelp_jax import algorithms
from fedhelp_jax import engine
from fedhelp_jax import experiment

SECTIONS = ('round_throughput', 'peer_torch', 'sweep', 'authors_recipe',
            'scale', 'max_silos')
# Share of the total budget each section may use before it stops starting
# new measurements (max_silos gets whatever is left; a scale row may run 30 s
# past its share before its process is stopped).
_SHARES = {'round_throughput': 0.4, 'peer_torch': 0.1, 'sweep': 0.15,
           'authors_recipe': 0.2, 'scale': 0.15, 'max_silos': 1.0}
# PneumoniaMNIST's official train and test split sizes, which the synthetic
# authors'-recipe federation copies, and the 2000 public images of
# ``experiments/configs/common.outside_fm``.
_PNEUMONIA = {'train': 4708, 'test': 624, 'public': 2000}


class Budget:
  """The suite's deadline and each section's share of it."""

  def __init__(self, seconds: float):
    self.seconds = seconds
    self.start = time.monotonic()
    self.end = self.start + seconds

  def left(self) -> float:
    return self.end - time.monotonic()

  def section_deadline(self, share: float) -> float:
    return min(self.end, time.monotonic() + share * self.seconds)


def _settings(args):
  """Shapes and counts of every section: the real ones, or tiny (smoke)."""
  if args.smoke:
    # Logistic regression on 4x4 images: the same code path as the CNN at a
    # fraction of its compile time (XLA:CPU takes seconds per conv program).
    # 'auto' is chunked(1) on CPU, so the chunked path runs too.
    return {'model': 'logreg', 'silos': [2], 'strategies': ['vmap', 'auto'],
            'chunk_sizes': [],
            'dtypes': ['float32', 'bfloat16'], 'batch_size': 8,
            'local_steps': 2, 'hw': 4, 'model_kwargs': None, 'repeats': 1,
            'rounds_per_call': 1, 'loop_max_silos': 2, 'peer_silos': [2],
            'peer_repeats': 1, 'peer_hw': 8,
            'peer_model_kwargs': peer_torch.SMOKE_MODEL,
            'sweep_workloads': ['logreg'], 'sweep_configs': [2],
            'sweep_silos': 2, 'sweep_rounds': 1, 'sweep_repeats': 1,
            'authors_algorithms': ['fedavg'], 'authors_scale': 0.05,
            'authors_model': {'name': 'logreg'}, 'authors_repeats': 1,
            'max_silos_start': 2, 'max_silos_limit': 2,
            'scale_silos': [2],
            'scale_xla_flags': ['--xla_backend_optimization_level=0']}
  ints = round_throughput.parse_ints
  return {'model': 'cnn', 'silos': ints(args.silos),
          'strategies': args.strategies.split(','),
          'chunk_sizes': ints(args.chunk_sizes),
          'dtypes': args.dtypes.split(','), 'batch_size': 32,
          'local_steps': 4, 'hw': 28, 'model_kwargs': None,
          'repeats': args.repeats, 'rounds_per_call': 2,
          'loop_max_silos': args.loop_max_silos,
          'peer_silos': ints(args.peer_silos), 'peer_repeats': args.repeats,
          'peer_hw': 28, 'peer_model_kwargs': None,
          'sweep_workloads': args.sweep_workloads.split(','),
          'sweep_configs': ints(args.sweep_configs), 'sweep_silos': 8,
          'sweep_rounds': 3, 'sweep_repeats': args.repeats,
          'authors_algorithms': args.authors_algorithms.split(','),
          'authors_scale': args.authors_scale, 'authors_model': None,
          'authors_repeats': args.repeats,
          'max_silos_start': 64, 'max_silos_limit': args.max_silos_limit,
          'scale_silos': ints(args.scale_silos), 'scale_xla_flags': []}


def _workload_note(s):
  return {'algorithm': 'fedavg', 'model': s['model'],
          'model_kwargs': s['model_kwargs'], 'image': [s['hw'], s['hw'], 1],
          'batch_size': s['batch_size'], 'local_steps': s['local_steps'],
          'rounds_per_call': s['rounds_per_call'], 'repeats': s['repeats'],
          'data': 'synthetic, shapes of PneumoniaMNIST'}


def section_round_throughput(s, deadline, out_dir, shared):
  """All strategies x silo counts x dtypes; stops at ``deadline``."""
  record = {'benchmark': 'round_throughput', **common.device_record(),
            'workload': {**_workload_note(s), 'dtype': ','.join(s['dtypes'])},
            'rows': [], 'suite': 'gpu_suite'}
  shared['round_throughput'] = record
  print(round_throughput.HEADER, flush=True)
  workloads = {dtype: {'xla': common.fedavg_workload(
      s['model'], batch_size=s['batch_size'], local_steps=s['local_steps'],
      dtype=dtype, model_kwargs=s['model_kwargs'])} for dtype in s['dtypes']}
  skipped = []
  # Silo counts outermost: a spent budget drops the largest counts of every
  # dtype, not a whole dtype.
  for silos in s['silos']:
    for dtype in s['dtypes']:
      if time.monotonic() > deadline:
        skipped.append({'dtype': dtype, 'silos': silos})
        continue
      print(f'-- {dtype}', flush=True)
      runs = round_throughput.strategy_runs(
          workloads[dtype], s['strategies'], s['chunk_sizes'])
      rows = round_throughput.measure(
          silos, workloads[dtype], runs, batch_size=s['batch_size'],
          local_steps=s['local_steps'],
          rounds_per_call=s['rounds_per_call'], repeats=s['repeats'],
          with_loop=silos <= s['loop_max_silos'], hw=s['hw'])
      record['rows'] += [dict(r, dtype=dtype) for r in rows]
      # Written as it grows: a run killed later keeps what was measured.
      common.write_result('round_throughput', record, out_dir)
  record['not_measured_budget'] = skipped
  record['host_maxrss_mb'] = common.host_maxrss_mb()
  return {'file': common.write_result('round_throughput', record, out_dir),
          'rows': len(record['rows']), 'not_measured_budget': skipped}


def section_peer_torch(s, deadline, out_dir, shared):
  """The torch per-client loop; raises ``TorchUnavailable`` without torch."""
  del shared
  torch = peer_torch.import_torch()
  device = peer_torch.torch_device(torch)
  record = {'benchmark': 'peer_torch', **common.device_record(),
            'torch': peer_torch.torch_info(torch, device),
            'workload': {**_workload_note(s), 'model': 'cnn',
                         'model_kwargs': s['peer_model_kwargs'],
                         'image': [s['peer_hw'], s['peer_hw'], 1],
                         'dtype': 'float32', 'repeats': s['peer_repeats']},
            'peer': peer_torch.PEER, 'rows': [], 'suite': 'gpu_suite'}
  skipped = []
  for silos in s['peer_silos']:
    if time.monotonic() > deadline:
      skipped.append(silos)
      continue
    rows, extra = peer_torch.measure(
        silos, strategies=('auto', 'loop'), threads='default,1',
        batch_size=s['batch_size'],
        local_steps=s['local_steps'], rounds_per_call=s['rounds_per_call'],
        repeats=s['peer_repeats'], hw=s['peer_hw'],
        model_kwargs=s['peer_model_kwargs'], torch=torch)
    record['rows'] += rows
    record.setdefault('models', extra)
  record['not_measured_budget'] = skipped
  return {'file': common.write_result('peer', record, out_dir),
          'rows': len(record['rows']), 'not_measured_budget': skipped}


def section_sweep(s, deadline, out_dir, shared):
  """K configs vmapped vs sequential, per workload and K."""
  del shared
  record = {'benchmark': 'sweep', **common.device_record(),
            'workload_note': 'FedAvg, configs differ in seed and lr; '
                             'synthetic data with the real shapes',
            'rows': [], 'suite': 'gpu_suite'}
  skipped = []
  for workload in s['sweep_workloads']:
    for k in s['sweep_configs']:
      if time.monotonic() > deadline:
        skipped.append({'workload': workload, 'configs': k})
        continue
      row = sweep.measure(workload, k, silos=s['sweep_silos'],
                          rounds=s['sweep_rounds'],
                          repeats=s['sweep_repeats'])
      record['rows'].append(row)
      print(f"sweep {workload} K={k}: sweep {row['sweep_s']:.3f}s, "
            f"sequential {row['sequential_s']:.3f}s, "
            f"{row['speedup']:.2f}x", flush=True)
  record['not_measured_budget'] = skipped
  return {'file': common.write_result('sweep', record, out_dir),
          'rows': len(record['rows']), 'not_measured_budget': skipped}


def _synthetic_authors_raw(scale: float, seed: int = 0):
  """Random images and labels in PneumoniaMNIST's split sizes (x ``scale``).

  Returns the ``load_raw``-style dict, with the 10% reserve the authors'
  split removes, and the public set the FM answers on.
  """
  rng = np.random.default_rng(seed)
  # At least 100 test images: the smallest share (0.02) must get one.
  sizes = {'train': max(int(_PNEUMONIA['train'] * scale), 300),
           'test': max(int(_PNEUMONIA['test'] * scale), 100),
           'public': max(int(_PNEUMONIA['public'] * scale), 16)}
  raw = {}
  for split, n in sizes.items():
    raw[f'{split}_x'] = rng.random((n, 28, 28, 1), dtype=np.float32)
    raw[f'{split}_y'] = rng.integers(0, 2, n).astype(np.int32)
  reserve = 0.1
  return experiment.reserve_split(raw, reserve, seed=0), sizes


def _authors_federation(algorithm, data_kind, scale, tmp_dir, model=None):
  """``(config, Federation, note)`` of the authors' recipe for ``algorithm``
  (``model`` replaces ``config.model``: smoke runs)."""
  # Imported here: the experiment configs need ml_collections, which the
  # other sections (jax, flax, optax, numpy) do not.
  # pylint: disable=g-import-not-at-top
  from experiments.configs import fedhelp_cls_authors
  import ml_collections
  # pylint: enable=g-import-not-at-top
  config = fedhelp_cls_authors.get_config(algorithm)
  note = {}
  if model is not None:
    config.model = ml_collections.ConfigDict(model)
    note['model_override'] = dict(model)
  if data_kind == 'real':
    raw = experiment.load_raw(config)
    note['data'] = 'PneumoniaMNIST (TFDS) and the configured FM'
  else:
    raw, sizes = _synthetic_authors_raw(scale)
    # A precomputed FM with random answers over the task's classes (the
    # configured FM is a proxy trained on OrganAMNIST, 11-way answers).
    public = raw['public_x'].shape[0]
    probs = np.random.default_rng(1).dirichlet(np.ones(2), public)
    path = os.path.join(tmp_dir, 'fm.npz')
    np.savez(path, ids=np.arange(public), outputs=probs.astype(np.float32))
    config.fm.provider = 'precomputed'
    config.fm.path = path
    config.fm.cache_dir = tmp_dir
    note['data'] = (f'synthetic, PneumoniaMNIST split sizes x {scale} '
                    f'({sizes}); FM: precomputed random 2-way answers on '
                    f'{public} public images (the config\'s FM answers '
                    '11-way)')
  return config, experiment.prepare_federation(config, raw), note


def section_authors_recipe(s, deadline, out_dir, shared, *, data_kind):
  """Round time of the authors' recipe for each algorithm."""
  del shared
  record = {'benchmark': 'authors_recipe', **common.device_record(),
            'config': 'experiments/configs/fedhelp_cls_authors.py',
            'rows': [], 'suite': 'gpu_suite'}
  skipped = []
  for algorithm in s['authors_algorithms']:
    if time.monotonic() > deadline:
      skipped.append(algorithm)
      continue
    with tempfile.TemporaryDirectory() as tmp:
      config, fed, note = _authors_federation(
          algorithm, data_kind, s['authors_scale'], tmp,
          model=s['authors_model'])
    alg = algorithms.build(config.algorithm, config, fed.task, fed.groups,
                           info=fed.info)
    round_fn = engine.build_round(alg, fed.groups, strategy='auto')
    data = jax.device_put(fed.fed)
    weights = jax.device_put(fed.weights)
    state = engine.init_state(alg, data, 0)
    fn = engine.run_rounds(round_fn, 1, check=False)
    t0 = time.perf_counter()
    compiled = fn.lower(state, data, weights, fed.hparams).compile()
    compile_s = time.perf_counter() - t0
    box = [state]

    def call(compiled=compiled, box=box, data=data, weights=weights,
             hparams=fed.hparams):
      box[0], metrics = compiled(box[0], data, weights, hparams)
      common.block((box[0], metrics))

    call()  # Warm-up.
    times = common.time_calls(call, s['authors_repeats'])
    local = algorithms.local_config(config)
    steps = {g: engine.num_local_steps(
        int(d['x'].shape[1]), batch_size=local.batch_size,
        local_steps=local.local_steps, local_epochs=local.local_epochs)
             for g, d in fed.fed.items()}
    row = {'algorithm': algorithm, 'strategy': round_fn.strategy.name,
           'chunk_size': round_fn.strategy.chunk_size,
           'silos': {g: int(d['n'].shape[0]) for g, d in fed.fed.items()},
           'train_sizes': fed.info['train_sizes'],
           'padded_local_steps': steps,
           'train_images_per_round': int(sum(fed.info['train_sizes'])),
           'round_s': common.median(times), 'round_s_all': times,
           'compile_s': compile_s, 'optimizer': local.optimizer,
           'batch_size': local.batch_size,
           'local_epochs': local.local_epochs, **note}
    row['images_per_s'] = row['train_images_per_round'] / row['round_s']
    record['rows'].append(row)
    print(f"authors' recipe, {algorithm}: {row['round_s']:.3f} s/round "
          f"(compile {compile_s:.1f} s), silos {row['silos']}", flush=True)
  record['not_measured_budget'] = skipped
  return {'file': common.write_result('authors_recipe', record, out_dir),
          'rows': len(record['rows']), 'not_measured_budget': skipped}


def section_scale(s, deadline, out_dir, shared):
  """``benchmarks/scale.py`` section (a) at ``s['scale_silos']``: one fresh
  process per silo count, every row with the same local steps."""
  del shared
  settings = {'model': s['model'], 'model_kwargs': s['model_kwargs'],
              'hw': s['hw'], 'batch_size': s['batch_size'],
              'local_steps': s['local_steps'],
              'images': s['batch_size'] * s['local_steps'],
              'repeats': s['repeats'], 'silos': s['scale_silos'],
              'big_from': 0, 'big_local_steps': s['local_steps'],
              'ref_silos': min(s['scale_silos']), 'timeout_s': 600.0,
              'xla_flags': s['scale_xla_flags']}
  note = ''
  if jax.default_backend() != 'cpu':
    # XLA preallocates a share of the device for this process when its
    # backend starts; the workers do not preallocate and get the rest.
    note = ('device memory shared with the gpu_suite process, which holds '
            'its own (preallocated) pool')
  record = scale.new_record(settings, 'gpu_suite')
  record['suite'] = 'gpu_suite'
  print(scale.HEADER, flush=True)

  def emit(row):
    scale.print_row(row)
    record['rows'].append(row)
    common.write_result('scale', record, out_dir)

  rows = scale.section_a(settings, emit, deadline=deadline, note=note)
  record['summary'] = {'a': scale.a_summary(rows, settings['ref_silos'],
                                            record['host_memory_bytes'])}
  skipped = [r['silos'] for r in rows if 'skipped' in r]
  errors = [r['silos'] for r in rows if 'error' in r]
  record['not_measured_budget'] = skipped
  path = common.write_result('scale', record, out_dir)
  if errors and len(errors) == len(rows) - len(skipped):
    raise RuntimeError(f'every scale row failed ({errors}); see {path}')
  return {'file': path, 'rows': len(rows) - len(skipped),
          'errors': errors, 'not_measured_budget': skipped}


def section_max_silos(s, deadline, out_dir, shared):
  """Largest silo count that fits (auto, float32); added to the
  round-throughput JSON."""
  alg, hparams = common.fedavg_workload(
      s['model'], batch_size=s['batch_size'], local_steps=s['local_steps'],
      model_kwargs=s['model_kwargs'])
  search = round_throughput.find_max_silos(
      alg, hparams, 'auto', batch_size=s['batch_size'],
      local_steps=s['local_steps'], limit=s['max_silos_limit'],
      start=s['max_silos_start'], hw=s['hw'], deadline=deadline)
  record = shared.get('round_throughput')
  if record is None:
    record = {'benchmark': 'round_throughput', **common.device_record(),
              'workload': {**_workload_note(s), 'dtype': 'float32'},
              'rows': [], 'suite': 'gpu_suite'}
  record['max_silos_auto'] = search['largest']
  record['max_silos_search'] = search
  return {'file': common.write_result('round_throughput', record, out_dir),
          **search}


def run_section(name, fn, budget, summary, out_dir, skip):
  """Runs one section; records ok / error / skipped and never raises."""
  entry = {'status': 'skipped'}
  if name in skip:
    entry['reason'] = 'skipped by --skip'
  elif budget.left() <= 0:
    entry['reason'] = 'the suite budget was spent'
  else:
    print(f'== {name} ({budget.left():.0f} s of the budget left)', flush=True)
    t0 = time.monotonic()
    try:
      entry = {'status': 'ok', **fn(budget.section_deadline(_SHARES[name]))}
    except peer_torch.TorchUnavailable as e:
      entry = {'status': 'skipped', 'reason': str(e)}
    except Exception as e:  # pylint: disable=broad-except
      entry = {'status': 'error', 'error': f'{type(e).__name__}: {e}'[:2000],
               'traceback': traceback.format_exc()[-4000:]}
    entry['seconds'] = round(time.monotonic() - t0, 2)
    if 'file' in entry:
      entry['file'] = os.path.basename(entry['file'])
  print(f"== {name}: {entry['status']}"
        + (f" ({entry.get('reason') or entry.get('error')})"
           if entry['status'] != 'ok' else f" in {entry['seconds']} s"),
        flush=True)
  summary['sections'][name] = entry
  _write_summary(summary, out_dir)


def _write_summary(summary, out_dir):
  summary['elapsed_s'] = round(time.monotonic() - summary['_start'], 2)
  os.makedirs(out_dir, exist_ok=True)
  path = os.path.join(out_dir, f"gpu_suite-{summary['backend']}.json")
  with open(path, 'w') as f:
    json.dump({k: v for k, v in summary.items() if not k.startswith('_')},
              f, indent=1, sort_keys=True)
  return path


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--smoke', action='store_true',
                      help='tiny shapes on CPU: the whole suite in seconds')
  parser.add_argument('--out_dir', default=common.RESULTS_DIR)
  parser.add_argument('--budget_s', type=float, default=420.0,
                      help='total time budget; sections stop starting new '
                      'measurements when their share of it is spent')
  parser.add_argument('--skip', default='',
                      help=f'comma-separated sections to skip, of {SECTIONS}')
  parser.add_argument('--silos', default='8,32,128,1024')
  parser.add_argument('--strategies', default='vmap,chunked,auto')
  parser.add_argument('--chunk_sizes', default='8')
  parser.add_argument('--dtypes', default='float32,bfloat16')
  parser.add_argument('--repeats', type=int, default=3)
  parser.add_argument('--loop_max_silos', type=int, default=1024)
  parser.add_argument('--peer_silos', default='8,32')
  parser.add_argument('--sweep_workloads', default='cnn')
  parser.add_argument('--sweep_configs', default='1,4,8,16')
  parser.add_argument('--authors_data', default='synthetic',
                      choices=('synthetic', 'real', 'off'))
  parser.add_argument('--authors_algorithms', default='fedhelp,fedavg')
  parser.add_argument('--authors_scale', type=float, default=1.0,
                      help='synthetic data: PneumoniaMNIST split sizes times '
                      'this')
  parser.add_argument('--max_silos_limit', type=int, default=1 << 17)
  parser.add_argument('--scale_silos', default='64,1024,10000',
                      help='silo counts of the scale section, one fresh '
                      'process each')
  args = parser.parse_args(argv)
  unknown = set(filter(None, args.skip.split(','))) - set(SECTIONS)
  if unknown:
    parser.error(f'--skip: unknown sections {sorted(unknown)}; expected some '
                 f'of {SECTIONS}')
  skip = set(filter(None, args.skip.split(',')))
  if args.authors_data == 'off':
    skip.add('authors_recipe')
  s = _settings(args)
  budget = Budget(args.budget_s)
  summary = {'benchmark': 'gpu_suite', **common.device_record(),
             'smoke': args.smoke, 'budget_s': args.budget_s,
             'settings': {k: v for k, v in s.items()},
             'authors_data': args.authors_data, 'sections': {},
             '_start': budget.start}
  print(f"device: {summary['device']} ({summary['backend']}), jax "
        f"{summary['jax']}; budget {args.budget_s:.0f} s", flush=True)
  shared = {}
  sections = {
      'round_throughput': lambda d: section_round_throughput(
          s, d, args.out_dir, shared),
      'peer_torch': lambda d: section_peer_torch(s, d, args.out_dir, shared),
      'sweep': lambda d: section_sweep(s, d, args.out_dir, shared),
      'authors_recipe': lambda d: section_authors_recipe(
          s, d, args.out_dir, shared, data_kind=args.authors_data),
      'scale': lambda d: section_scale(s, d, args.out_dir, shared),
      'max_silos': lambda d: section_max_silos(s, d, args.out_dir, shared),
  }
  for name in SECTIONS:
    run_section(name, sections[name], budget, summary, args.out_dir, skip)
  summary['host_maxrss_mb'] = common.host_maxrss_mb()
  path = _write_summary(summary, args.out_dir)
  failed = [n for n, e in summary['sections'].items()
            if e['status'] == 'error']
  print(f"wrote {path} ({summary['elapsed_s']:.0f} s); "
        + (f'failed: {failed}' if failed else 'no section failed'),
        flush=True)
  return 1 if failed else 0


if __name__ == '__main__':
  sys.exit(main())
