# Copyright 2026 The fedhelp_jax Authors. Licensed under the Apache License 2.0.
r"""One process of ``benchmarks/scale.py``: measures, prints one JSON line.

  python -m benchmarks.scale_worker '{"mode": "silos", "silos": 64, ...}'

Started by ``benchmarks.scale`` in a fresh process per measurement, so the
host device count (fixed when jax starts), ``jax.distributed`` and the peak
resident set size (``ru_maxrss``, never lowered) belong to that measurement
alone. Modes:

  * ``silos``: one compiled FedAvg round over ``silos`` silos on one device
    (section a); also ``clients_per_round`` for one drawn-silo count.
  * ``mesh``: the same round with the client axis on ``engine.make_mesh``
    over every device of every process: 1 process x 2 host devices, or
    2 processes x 1 device joined with ``fedhelp_jax.distributed`` (the spec
    then carries ``coordinator_address``, ``num_processes``, ``process_id``;
    section b).
  * ``sample``: several ``(silos, clients_per_round)`` draws in one process,
    timed in alternation (section c).

Each compiles once (``lower().compile()``), runs one warm-up call, checks the
state is finite, then times ``repeats`` calls; the last stdout line is
``SCALE_RESULT {json}``. After ``jax.distributed.initialize`` an error exit
goes through ``distributed.exit_now`` (a plain exit would wait in JAX's
shutdown barrier for the other process, itself blocked in a collective).
"""

import json
import os
import resource
import sys
import time
import traceback

from fedhelp_jax import distributed

PREFIX = 'SCALE_RESULT '
GROUP = 'silos'  # The group of ``common.make_federation``.


def peak_rss_bytes() -> int:
  """This process's peak resident set size so far (Linux: KiB * 1024)."""
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _tree_bytes(tree) -> int:
  import jax  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  return int(sum(int(np.prod(x.shape)) * np.dtype(x.dtype).itemsize
                 for x in jax.tree.leaves(tree)))


def state_bytes(alg, data, silos: int) -> dict:
  """Client-state bytes per silo and server-state bytes (shapes only).

  Uses ``fedhelp_jax.state_bytes`` where it exists, else the same count
  inline: the client-state leaves of ``jax.eval_shape(alg.init, ...)``
  divided by the silo count.
  """
  import jax  # pylint: disable=g-import-not-at-top
  shapes = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype),
                        data)
  server, clients = jax.eval_shape(alg.init, jax.random.PRNGKey(0), shapes)
  source = 'inline eval_shape(alg.init)'
  try:
    # pylint: disable-next=g-import-not-at-top
    from fedhelp_jax import state_bytes as sb
    per_silo = int(sb.persistent_bytes_per_silo(alg, shapes)[GROUP])
    source = 'fedhelp_jax.state_bytes.persistent_bytes_per_silo'
  except (ImportError, AttributeError):
    per_silo = _tree_bytes(clients[GROUP]) // silos
  return {'persistent_state_bytes_per_silo': per_silo,
          'server_state_bytes': _tree_bytes(server),
          'state_bytes_source': source}


def _workload(spec):
  from benchmarks import common  # pylint: disable=g-import-not-at-top
  return common.fedavg_workload(
      spec.get('model', 'cnn'), batch_size=spec['batch_size'],
      local_steps=spec['local_steps'], model_kwargs=spec.get('model_kwargs'))


def _federation(spec, silos):
  """Synthetic federation on the default device: one host copy (the CPU
  client aliases aligned numpy arrays), freed when the device copy lives
  elsewhere."""
  import jax  # pylint: disable=g-import-not-at-top
  from benchmarks import common  # pylint: disable=g-import-not-at-top
  data, weights = common.make_federation(silos, spec['images_per_silo'],
                                         hw=spec.get('hw', 28))
  data_bytes = _tree_bytes(data)
  return jax.device_put((data, weights)), data_bytes


def _memory_analysis(compiled) -> dict:
  """XLA's buffer sizes of the compiled program (where it reports them):
  temporaries are what a round needs beyond its arguments and outputs."""
  try:
    m = compiled.memory_analysis()
    return {'compiled_temp_bytes': int(m.temp_size_in_bytes),
            'compiled_argument_bytes': int(m.argument_size_in_bytes),
            'compiled_output_bytes': int(m.output_size_in_bytes)}
  except Exception:  # pylint: disable=broad-except
    return {}


def _compiled_call(fn, state, data, weights, hparams):
  """``(call, compile_s)``: ``fn`` compiled ahead of time; ``call()`` runs it
  on the carried (donated) state and blocks on the outputs."""
  from benchmarks import common  # pylint: disable=g-import-not-at-top
  t0 = time.perf_counter()
  compiled = fn.lower(state, data, weights, hparams).compile()
  compile_s = time.perf_counter() - t0
  box = [state]

  def call():
    box[0], metrics = compiled(box[0], data, weights, hparams)
    common.block((box[0], metrics))

  call.box = box
  call.memory = _memory_analysis(compiled)
  return call, compile_s


def init_state(alg, data):
  """``engine.init_state(alg, data, 0)`` as one compiled program (eager, the
  model init dispatches op by op: seconds of setup on XLA:CPU)."""
  import jax  # pylint: disable=g-import-not-at-top
  from fedhelp_jax import engine  # pylint: disable=g-import-not-at-top
  return jax.jit(lambda d: engine.init_state(alg, d, 0))(data)


def _device_bytes():
  from benchmarks import common  # pylint: disable=g-import-not-at-top
  try:
    return common.peak_device_bytes()
  except Exception:  # pylint: disable=broad-except
    return None


def _common_fields(spec, silos):
  import jax  # pylint: disable=g-import-not-at-top
  return {'silos': silos, 'local_steps': spec['local_steps'],
          'batch_size': spec['batch_size'],
          'images_per_silo': spec['images_per_silo'],
          'model': spec.get('model', 'cnn'),
          'model_kwargs': spec.get('model_kwargs'),
          'hw': spec.get('hw', 28),
          'rounds_per_call': spec['rounds_per_call'],
          'worker_backend': jax.default_backend(),
          'worker_devices': jax.device_count(),
          'xla_flags': os.environ.get('XLA_FLAGS', '')}


def run_silos(spec) -> dict:
  """Section a: the round over ``spec['silos']`` silos, one device."""
  from benchmarks import common  # pylint: disable=g-import-not-at-top
  from fedhelp_jax import engine  # pylint: disable=g-import-not-at-top
  silos = int(spec['silos'])
  t0 = time.perf_counter()
  (data, weights), data_bytes = _federation(spec, silos)
  setup_s = time.perf_counter() - t0
  rss_data = peak_rss_bytes()
  alg, hparams = _workload(spec)
  drawn = int(spec.get('clients_per_round') or 0)
  round_fn = engine.build_round(alg, (GROUP,), strategy='auto',
                                clients_per_round={GROUP: drawn})
  fn = engine.run_rounds(round_fn, spec['rounds_per_call'], check=False)
  state = init_state(alg, data)
  call, compile_s = _compiled_call(fn, state, data, weights, hparams)
  rss_compile = peak_rss_bytes()
  t0 = time.perf_counter()
  call()  # Warm-up: the first execution allocates its buffers.
  warmup_s = time.perf_counter() - t0
  common.check_finite(call.box[0], f'round over {silos} silos')
  times = common.time_calls(call, spec['repeats'])
  per_round = [t / spec['rounds_per_call'] for t in times]
  return {**_common_fields(spec, silos), **state_bytes(alg, data, silos),
          'clients_per_round': drawn or silos,
          'strategy': round_fn.strategy.name,
          'chunk_size': round_fn.strategy.chunk_size,
          'seconds_per_round': common.median(per_round),
          'seconds_per_round_all': per_round,
          'data_bytes_per_silo': data_bytes // silos, **call.memory,
          'setup_s': setup_s, 'compile_s': compile_s,
          'warmup_s': warmup_s,
          'peak_rss_bytes_after_data': rss_data,
          'peak_rss_bytes_after_compile': rss_compile,
          'peak_rss_bytes': peak_rss_bytes(),
          'peak_device_bytes': _device_bytes()}


def run_mesh(spec) -> dict:
  """Section b: the round with the client axis over every device of every
  process (the caller has joined the processes)."""
  import jax  # pylint: disable=g-import-not-at-top
  from benchmarks import common  # pylint: disable=g-import-not-at-top
  from fedhelp_jax import engine  # pylint: disable=g-import-not-at-top
  silos = int(spec['silos'])
  devices = jax.device_count()
  if devices != spec.get('devices', devices):
    raise ValueError(f"the mesh needs {spec['devices']} devices; "
                     f'{devices} are visible.')
  if silos % devices:
    raise ValueError(f'{silos} silos do not split over {devices} devices.')
  mesh = engine.make_mesh(devices)
  host, host_weights = common.make_federation(silos, spec['images_per_silo'],
                                              hw=spec.get('hw', 28))
  data_bytes = _tree_bytes(host)
  alg, hparams = _workload(spec)
  round_fn = engine.build_round(alg, (GROUP,), strategy='auto', mesh=mesh)
  fn = engine.run_rounds(round_fn, spec['rounds_per_call'], check=False)
  # Every process holds the same host copies; each places only the rows of
  # its own devices.
  data = engine.shard_clients(host, mesh)
  weights = engine.shard_clients(host_weights, mesh)
  hparams = engine.replicate(hparams, mesh)
  state = engine.shard_state(init_state(alg, host), mesh)
  sizes = state_bytes(alg, host, silos)
  del host, host_weights
  call, compile_s = _compiled_call(fn, state, data, weights, hparams)
  t0 = time.perf_counter()
  call()  # Warm-up.
  warmup_s = time.perf_counter() - t0
  common.check_finite(engine.local_rows(call.box[0]), 'sharded round')
  times = common.time_calls(call, spec['repeats'])
  per_round = [t / spec['rounds_per_call'] for t in times]
  return {**_common_fields(spec, silos), **sizes,
          'processes': jax.process_count(),
          'devices_per_process': jax.local_device_count(),
          'process_id': jax.process_index(), 'clients_per_round': silos,
          'strategy': f'{round_fn.strategy.name} per device, '
                      f'{devices} devices',
          'chunk_size': round_fn.strategy.chunk_size,
          'seconds_per_round': common.median(per_round),
          'seconds_per_round_all': per_round,
          'data_bytes_per_silo': data_bytes // silos, **call.memory,
          'compile_s': compile_s, 'warmup_s': warmup_s,
          'peak_rss_bytes': peak_rss_bytes(),
          'peak_device_bytes': _device_bytes()}


def run_sample(spec) -> dict:
  """Section c: each ``(silos, drawn)`` of ``spec['draws']``, compiled once
  and timed in alternation (one federation per distinct silo count)."""
  from benchmarks import common  # pylint: disable=g-import-not-at-top
  from fedhelp_jax import engine  # pylint: disable=g-import-not-at-top
  alg, hparams = _workload(spec)
  feds, calls, info = {}, {}, {}
  for silos, drawn in spec['draws']:
    if silos not in feds:
      feds[silos] = _federation(spec, silos)
    (data, weights), data_bytes = feds[silos]
    round_fn = engine.build_round(alg, (GROUP,), strategy='auto',
                                  clients_per_round={GROUP: drawn})
    fn = engine.run_rounds(round_fn, spec['rounds_per_call'], check=False)
    call, compile_s = _compiled_call(
        fn, init_state(alg, data), data, weights, hparams)
    t0 = time.perf_counter()
    call()  # Warm-up.
    warmup_s = time.perf_counter() - t0
    common.check_finite(call.box[0], f'{drawn} of {silos} silos')
    calls[(silos, drawn)] = call
    info[(silos, drawn)] = {
        **state_bytes(alg, data, silos), 'strategy': round_fn.strategy.name,
        'chunk_size': round_fn.strategy.chunk_size,
        'data_bytes_per_silo': data_bytes // silos, **call.memory,
        'compile_s': compile_s, 'warmup_s': warmup_s}
  times = {key: [] for key in calls}
  for _ in range(spec['repeats']):  # Alternated: load drift hits all alike.
    for key, call in calls.items():
      times[key] += [t / spec['rounds_per_call']
                     for t in common.time_calls(call, 1)]
  rows = []
  for (silos, drawn), ts in times.items():
    rows.append({**_common_fields(spec, silos), **info[(silos, drawn)],
                 'clients_per_round': drawn,
                 'seconds_per_round': common.median(ts),
                 'seconds_per_round_all': ts,
                 'peak_rss_bytes': peak_rss_bytes(),
                 'peak_device_bytes': _device_bytes()})
  return {'rows': rows}


def main(argv) -> int:
  spec = json.loads(argv[0])
  connected = False
  try:
    if spec.get('num_processes', 1) > 1:
      distributed.initialize(spec['coordinator_address'],
                             spec['num_processes'], spec['process_id'],
                             initialization_timeout=spec.get('init_timeout',
                                                             120))
      connected = True
    from benchmarks import common  # pylint: disable=g-import-not-at-top
    record = common.device_record()  # Starts the backend; load at start.
    t0 = time.perf_counter()
    out = {'silos': run_silos, 'mesh': run_mesh,
           'sample': run_sample}[spec['mode']](spec)
    out['worker_wall_s'] = time.perf_counter() - t0
    out['device_record'] = record
  except Exception:  # pylint: disable=broad-except
    traceback.print_exc()
    sys.stderr.flush()
    if connected:
      distributed.exit_now(1)
    return 1
  print(PREFIX + json.dumps(out), flush=True)
  return 0


if __name__ == '__main__':
  sys.exit(main(sys.argv[1:]))
