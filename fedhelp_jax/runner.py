# Copyright 2026 The fedhelp_jax Authors. Licensed under the Apache License 2.0.
"""The one host loop: K >= 1 configs of one compiled program, chunk by chunk.

Every run in the project goes through ``run``:

  * ``experiment.run_experiment``: K = 1, with hooks for its checkpoint
    (``restore``, and saves in ``on_eval``), metrics log and progress bar;
  * ``sweep.run_sweep``: K configs stacked on a leading axis as one vmapped
    program (or K = 1 programs when shapes differ);
  * the experiment scripts (``experiments/fedhelp_table``,
    ``experiments/pfednet_sweep``): every seed of a method on one fixed
    partition, one by one (reusing the executable) or vmapped.

A ``Program`` holds what is static (algorithm, compiled round, predict
function); a ``Federation`` is one config's data, info, hyperparameters and seed.
``run`` compiles ``eval_every`` rounds as one call per chunk length (cached
on the program, so seeds run one after another reuse the executable), and
after every chunk, for every config: reads the non-finite flags and applies
the policy ('stop', 'skip' or 'record'), evaluates on the host, keeps the
best score and calls ``on_eval``. The jit/vmap/scan boundaries stay in
``engine``; this module only drives them.
"""

import time
from typing import Any, Callable, NamedTuple, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from fedhelp_jax import algorithms
from fedhelp_jax import engine
from fedhelp_jax import guards
from fedhelp_jax import metrics as metrics_lib
from fedhelp_jax import reporting
from fedhelp_jax import tasks
from fedhelp_jax.algorithms import common

NONFINITE_POLICIES = guards.POLICIES


def clients_per_round(config) -> dict[str, int]:
  """Group -> silos sampled per round (``config.clients_per_round``; groups
  with 0, or absent, run every silo)."""
  return {g: int(m) for g, m in (config.get('clients_per_round') or {}).items()
          if m}


def client_sampling(config) -> str:
  """'fixed' (``clients_per_round`` silos drawn) or 'poisson' (each silo
  with probability ``clients_per_round / silos``), ``config.client_sampling``."""
  return config.get('client_sampling', 'fixed') or 'fixed'


def primary_metric(task) -> str:
  return 'accuracy' if task.name == 'classification' else 'dice'


# ---------------------------------------------------------------------------
# What a run is made of.
# ---------------------------------------------------------------------------


class Program(NamedTuple):
  """The static half of a run, shared by the K configs that run as one.

  ``executables`` caches compiled chunks by ``(rounds, K, stacked_data)``:
  a program is built for one set of shapes, so a second ``run`` of the same
  program (the next seed) reuses them.
  """
  config: Any
  task: tasks.Task
  groups: tuple[str, ...]
  alg: Any
  round_fn: Any
  predict_fn: Any
  mesh: Any
  executables: dict
  config_parallel: Optional[engine.Strategy] = None
  predict_common_fn: Any = None

  @property
  def metric(self) -> str:
    return primary_metric(self.task)

  @property
  def strategy(self) -> engine.Strategy:
    return self.round_fn.strategy


def build_program(config, task, groups, info, *, alg=None,
                  mesh=None) -> Program:
  """The algorithm, compiled round and predict function of ``config``.

  Args:
    config: the (first) experiment config; strategy, chunk size, non-finite
      handling and client sampling are read from it.
    task: its ``tasks.Task``.
    groups: the groups that have silos.
    info: the federation info (prepare hooks may have added what the
      algorithm needs, e.g. pFedNet's graph).
    alg: an already built algorithm (a variant the registry does not
      build, e.g. pFedNet returning its uploads); default the registry's.
    mesh: shard the client axis over this mesh: a 1-D ``'clients'`` mesh
      (``engine.make_mesh``) for one config, or a ``('configs',
      'clients')`` mesh (``engine.make_sweep_mesh``) for K configs.
  """
  if alg is None:
    alg = algorithms.build(config.algorithm, config, task, groups, info=info)
  round_fn = engine.build_round(
      alg, groups, strategy=config.get('strategy', 'auto'),
      chunk_size=config.get('chunk_size'),
      nonfinite=config.get('nonfinite', 'stop'), mesh=mesh,
      clients_per_round=clients_per_round(config),
      sampling=client_sampling(config))
  predict_fn = engine.build_predict(
      alg, groups, common.predict_probs(task),
      strategy=round_fn.strategy.name,
      chunk_size=round_fn.strategy.chunk_size)
  sweep_mesh = mesh if mesh is not None and 'configs' in mesh.axis_names \
      else None
  config_parallel = engine.resolve_config_parallel(
      config.get('config_parallel', 'auto'), mesh=sweep_mesh)
  predict_common_fn = engine.build_predict_common(
      alg, groups, common.predict_probs(task),
      strategy=round_fn.strategy.name,
      chunk_size=round_fn.strategy.chunk_size)
  return Program(config, task, tuple(groups), alg, round_fn, predict_fn,
                 mesh, {}, config_parallel, predict_common_fn)


class Federation(NamedTuple):
  """The host-side silos of one config, ready to be put on device: what
  ``experiment.prepare_federation`` builds and ``run`` runs (one per config
  of a program; ``_replace`` another seed or hparams for the next)."""
  task: tasks.Task
  fed: dict[str, dict[str, np.ndarray]]  # Host-only ('_') keys dropped.
  info: dict[str, Any]
  groups: tuple[str, ...]
  weights: dict[str, np.ndarray]
  hparams: dict[str, jax.Array]
  seed: int = 0  # Training seed: initial state, batch order, sampling.


# ---------------------------------------------------------------------------
# Host-side reading of one chunk.
# ---------------------------------------------------------------------------


def evaluate(predict_fn, state, fed, task, info,
             test_inputs=None) -> dict[str, Any]:
  """Per-silo and per-group metrics of the current state.

  ``test_inputs`` are the ``{group: {'test_x'}}`` already placed like the
  state (a mesh run); by default they are taken from ``fed``. Predictions
  are gathered from every process (``engine.fetch``), so every process
  computes the same metrics.
  """
  if test_inputs is None:
    test_inputs = {g: {'test_x': d['test_x']} for g, d in fed.items()}
  probs = engine.fetch(predict_fn(state, test_inputs))
  per_client: dict[str, list[float]] = {}
  for g, d in fed.items():
    num_real = int(np.sum(d['n'] > 0))
    for c in range(num_real):
      nt = int(d['test_n'][c])
      m = _silo_metrics(task, probs[g][c, :nt], d['test_y'][c, :nt])
      for k, v in m.items():
        per_client.setdefault(k, []).append(float(v))
  per_client_np = {k: np.asarray(v) for k, v in per_client.items()}
  groups = {g: np.asarray(ix) for g, ix in info['groups'].items()}
  summary = metrics_lib.per_group_summary(per_client_np, groups)
  out = {'clients': per_client, 'summary': reporting.strict(summary)}
  covered = metrics_lib.coverage(per_client_np, groups)
  if covered:  # Some group means skip silos where a metric is undefined.
    out['coverage'] = covered
  return out


class CommonTest(NamedTuple):
  """One test set every silo is scored on (e.g. the whole official split).

  Attributes:
    x: ``[N, ...]`` inputs.
    y: ``[N]`` labels or ``[N, H, W]`` masks.
  """
  x: np.ndarray
  y: np.ndarray


def _silo_metrics(task, probs, labels) -> dict[str, float]:
  if task.name == 'classification':
    return metrics_lib.classification_metrics(probs, labels)
  return metrics_lib.segmentation_metrics(np.argmax(probs, -1), labels,
                                          num_classes=task.num_classes)


def evaluate_common(predict_common_fn, state, fed, common_test: CommonTest,
                    task, info) -> dict[str, Any]:
  """Every real silo's evaluation model scored on ``common_test``.

  Returns:
    ``{'clients', 'summary'}`` as ``evaluate``, and for classification
    ``'correct'``: group -> ``[C_real, N]`` uint8 per-image correctness
    (host arrays; the per-image record paired tests need).
  """
  sizes = {g: d['n'] for g, d in fed.items()}
  probs = engine.fetch(predict_common_fn(state, sizes, common_test.x))
  per_client: dict[str, list[float]] = {}
  correct = {}
  for g, ids in info['groups'].items():
    num_real = len(ids)
    for c in range(num_real):
      for k, v in _silo_metrics(task, probs[g][c], common_test.y).items():
        per_client.setdefault(k, []).append(float(v))
    if task.name == 'classification':
      correct[g] = (np.argmax(probs[g][:num_real], -1)
                    == common_test.y[None]).astype(np.uint8)
  per_client_np = {k: np.asarray(v) for k, v in per_client.items()}
  groups = {g: np.asarray(ix) for g, ix in info['groups'].items()}
  out = {'clients': per_client,
         'summary': reporting.strict(
             metrics_lib.per_group_summary(per_client_np, groups)),
         'n_test_images': int(len(common_test.y))}
  if correct:
    out['correct'] = correct
  return out


def round_losses(round_metrics: engine.RoundMetrics, info,
                 groups) -> dict[str, list[float]]:
  """Per group, per round: mean train loss over the real silos whose update
  was kept (and that were drawn, under client sampling)."""
  out = {}
  for g in groups:
    real = len(info['groups'][g])
    loss = np.asarray(round_metrics.silos[g]['train_loss'])[:, :real]
    kept = ~np.asarray(round_metrics.nonfinite[g], bool)[:, :real]
    kept &= np.asarray(round_metrics.sampled[g], bool)[:, :real]
    total = np.where(kept, loss, 0.0).sum(axis=1)
    count = kept.sum(axis=1)
    out[g] = [float(t / c) if c else float('nan')
              for t, c in zip(total, count)]
  return out


# ---------------------------------------------------------------------------
# The loop.
# ---------------------------------------------------------------------------


def same_data(members: Sequence[Federation]) -> bool:
  """Whether every member holds the first one's silos and weights."""
  first = members[0]
  for m in members[1:]:
    for g in first.fed:
      for k, v in first.fed[g].items():
        if not np.array_equal(v, m.fed[g][k]):
          return False
      if not np.array_equal(first.weights[g], m.weights[g]):
        return False
  return True


def _take(tree, k):
  return jax.tree.map(lambda x: x[k], tree)


def run(program: Program, members: Sequence[Federation], *, rounds: int,
        eval_every: int, nonfinite: str = 'record',
        restore: Optional[Callable[[Any], tuple[Any, int]]] = None,
        on_eval: Optional[Callable[[int, dict, Any], None]] = None,
        keep_metrics: bool = False,
        labels: Optional[Sequence[str]] = None,
        common_test: Optional[CommonTest] = None) -> list['RunResult']:
  """Runs ``members`` (K >= 1 configs) of ``program`` for ``rounds`` rounds.

  K = 1 runs ``engine.run_rounds``; K > 1 one ``engine.run_sweep_rounds``
  program with states and hparams stacked on a leading axis (the data too,
  unless all members hold the same silos).

  Args:
    program: from ``build_program``.
    members: the configs; they must share the program's shapes.
    rounds: the round to stop after (total, counting resumed rounds).
    eval_every: rounds per compiled call; evaluation happens between calls.
    nonfinite: 'stop' raises ``NonFiniteError`` on any non-finite silo
      update, 'skip' only when a whole round or the server went non-finite
      (the engine dropped the rest; they are reported), 'record' never
      raises and reports every event.
    restore: K = 1 only: ``restore(state) -> (state, start_round)``, called
      on the initial state (a checkpoint hook).
    on_eval: ``on_eval(k, record, state_k)`` after every evaluation of
      config ``k``; ``record`` has 'round', 'train_loss' (group -> mean of the
      chunk's last round), 'elapsed_s', the evaluation ('clients', 'summary'
      and maybe 'coverage') and 'skipped' (non-finite events) when any.
    keep_metrics: also return every round's metrics (host arrays with a
      leading rounds axis) as ``RunResult.round_metrics``.
    labels: per config, a name that prefixes its error messages (default
      'config k' when K > 1).
    common_test: also score every silo on this one test set at every
      evaluation (``evaluate_common``): each record gains ``'common'``
      (per-silo and per-group metrics), and the result ``final_common`` and
      ``common_correct`` (see ``RunResult``).

  Returns:
    Per member, a ``RunResult``.

  Raises:
    NonFiniteError: a non-finite round the policy does not allow.
    ValueError: a bad policy, K > 1 with a restore hook or a 1-D mesh, or
      K not a multiple of a sweep mesh's config groups.
  """
  _check_run_args(program, len(members), nonfinite, restore)
  t_run = time.time()
  k_configs = len(members)
  placed = _place(program, members)
  states, start_round = placed.states, 0
  if restore is not None:
    states, start_round = restore(states)
  # Messages name the config when there are several, or when asked to.
  prefixes = ([f'{label}: ' for label in labels] if labels else
              [f'config {k}: ' if k_configs > 1 else '' for k in
               range(k_configs)])
  out = [_empty_result(program, m, rounds, start_round, k_configs)
         for m in members]
  # The one non-finite policy (guards), applied inside the chunk's call.
  guard = guards.Guard(
      nonfinite, labels=prefixes,
      silo_ids=([m.info['groups'] for m in members] if k_configs > 1
                else members[0].info['groups']))
  kept_metrics = []
  compile_s = steady_s = host_s = 0.0
  every = max(1, min(int(eval_every), int(rounds)))
  r = start_round
  while r < rounds:
    n = min(every, rounds - r)
    args = (states, placed.feds, placed.weights, placed.hparams)
    executable, compiled_s = _chunk_executable(program, n, k_configs,
                                               placed.shared, args)
    compile_s += compiled_s
    t0 = time.time()
    # The guard's fetch and events serve the records below too.
    states, metrics, found = executable.with_guard(guard).call_on_host(*args)
    steady_s += time.time() - t0
    t0 = time.time()
    if keep_metrics:
      kept_metrics.append(metrics)
    for k, m in enumerate(members):
      chunk = _Chunk(first_round=r, rounds=n,
                     metrics=_take(metrics, k) if k_configs > 1 else metrics,
                     state=_take(states, k) if k_configs > 1 else states)
      record = _read_chunk(program, out[k], m, chunk, found[k],
                           nonfinite=nonfinite, placed=placed,
                           common_test=common_test, t_run=t_run)
      if on_eval is not None:
        on_eval(k, record, chunk.state)
    host_s += time.time() - t0
    r += n

  timing = {'compile': compile_s, 'steady': steady_s,
            'host_between_chunks': host_s, 'wall': time.time() - t_run,
            'configs_in_program': k_configs}
  joined = (jax.tree.map(lambda *xs: np.concatenate(xs, 1 if k_configs > 1
                                                    else 0), *kept_metrics)
            if kept_metrics else None)
  for k, (m, res) in enumerate(zip(members, out)):
    res['state'] = _take(states, k) if k_configs > 1 else states
    if res['final'] is None:  # Nothing left to run: evaluate what is there.
      res['final'] = evaluate(program.predict_fn, res['state'], m.fed,
                              program.task, m.info,
                              placed.test_inputs if placed.shared else None)
    res['timing_s'] = timing
    if keep_metrics:
      res['round_metrics'] = (_take(joined, k) if k_configs > 1 and joined
                              is not None else joined)
  return [RunResult(**res) for res in out]


class RunResult(NamedTuple):
  """One config's outcome of ``run``.

  Attributes:
    seed: the training seed.
    metric: the primary metric's name ('accuracy' or 'dice').
    rounds: the round the run stopped after (resumed rounds counted).
    start_round: the round it started from (a restored checkpoint's).
    final: the last evaluation: 'clients' (per-silo metrics), 'summary'
      (group -> metric -> mean; 'all' too) and maybe 'coverage'/'common'.
    best: 'round' and 'value' of the primary metric over this call's
      evaluations.
    history: per evaluation, 'round', 'summary', 'train_loss' (and
      'common_summary' with a common test set).
    train_loss: group -> per-round mean over kept, drawn, real silos.
    events: the non-finite silo events (``guards.NonFiniteEvent`` as dicts).
    nonfinite: every non-finite event (the server's too) as a message.
    strategy: the client-parallel strategy, described.
    config_parallel: how K > 1 configs shared the program (None for one).
    timing_s: compile, steady, host between chunks and wall seconds (of the
      whole program), and configs in it.
    state: the final ``FederatedState`` (on device).
    round_metrics: with ``keep_metrics``, every round's ``RoundMetrics``.
    final_common: with a common test set, the last evaluation on it (with
      per-image correctness for classification).
    common_correct: with a common test set (classification), per
      evaluation ``{'round', 'correct'}``.
  """
  seed: int
  metric: str
  rounds: int
  start_round: int
  final: dict[str, Any]
  best: dict[str, Any]
  history: list[dict[str, Any]]
  train_loss: dict[str, list[float]]
  events: list[dict[str, Any]]
  nonfinite: list[str]
  strategy: str
  config_parallel: Optional[str]
  timing_s: dict[str, float]
  state: Any
  round_metrics: Any = None
  final_common: Optional[dict[str, Any]] = None
  common_correct: Optional[list[dict[str, Any]]] = None


def _check_run_args(program: Program, k_configs: int, nonfinite: str,
                    restore) -> None:
  """The ``ValueError``s of ``run``: policy, restore hook and mesh shape."""
  if nonfinite not in NONFINITE_POLICIES:
    raise ValueError(f'nonfinite={nonfinite!r}: expected one of '
                     f'{NONFINITE_POLICIES}.')
  mesh = program.mesh
  sweep_mesh = mesh is not None and 'configs' in mesh.axis_names
  if sweep_mesh and k_configs == 1:
    raise ValueError("run: one config runs on a 1-D 'clients' mesh "
                     "(engine.make_mesh), not a ('configs', 'clients') one.")
  if restore is not None and k_configs > 1:
    raise ValueError('run: a restore hook needs K = 1 members.')
  if mesh is not None and k_configs > 1 and not sweep_mesh:
    raise ValueError("run: K > 1 configs on a mesh need a ('configs', "
                     "'clients') mesh (engine.make_sweep_mesh); this one "
                     f'has axes {mesh.axis_names}.')
  if sweep_mesh and k_configs % int(mesh.shape['configs']):
    raise ValueError(
        f"run: {k_configs} configs do not divide over the mesh's "
        f"{mesh.shape['configs']} 'configs' device groups; use a multiple "
        'of it, or a mesh with fewer config groups.')


class _Placed(NamedTuple):
  """The program's inputs on their devices (stacked on a leading config
  axis when K > 1; the data only when members hold different silos)."""
  feds: Any
  weights: Any
  states: Any
  hparams: Any
  test_inputs: Any  # {group: {'test_x'}}, placed like the state.
  shared: bool  # Every member holds the same silos (one data copy).


def _place(program: Program, members: Sequence[Federation]) -> _Placed:
  """Initial states, stacked when K > 1, and every input on its devices."""
  k_configs, mesh = len(members), program.mesh
  shared = k_configs == 1 or same_data(members)
  if shared:
    feds, weights = members[0].fed, members[0].weights
  else:  # Stacked on the host: one device copy of the [K, ...] arrays.
    feds, weights = jax.tree.map(
        lambda *xs: np.stack(xs), *[(m.fed, m.weights) for m in members])
  states = [engine.init_state(program.alg, m.fed, int(m.seed))
            for m in members]
  if k_configs > 1:
    states = jax.tree.map(lambda *xs: jnp.stack(xs), *states)
    hparams = jax.tree.map(lambda *xs: jnp.stack(xs),
                           *[m.hparams for m in members])
  else:
    states, hparams = states[0], members[0].hparams
  # Host arrays go straight to their devices (with several processes each
  # contributes only the silos its devices hold).
  test_inputs = {g: {'test_x': d['test_x']} for g, d in members[0].fed.items()}
  if mesh is None:
    feds, weights = jax.device_put((feds, weights))
    # Committed where they already are, as a restored checkpoint's arrays
    # are: a program lowered for committed inputs carries their sharding,
    # so without this a resumed run would lower (and compile) anew.
    # (Host leaves, e.g. FedDF's public batch in its server state, go to
    # the default device, committed the same way.)
    default = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    states = jax.tree.map(
        lambda x: jax.device_put(
            x, x.sharding if isinstance(x, jax.Array) else default), states)
  elif 'configs' not in mesh.axis_names:
    feds = engine.shard_clients(feds, mesh)
    weights = engine.shard_clients(weights, mesh)
    states = engine.shard_state(states, mesh)
    test_inputs = engine.shard_clients(test_inputs, mesh)
  else:
    feds = engine.shard_sweep_inputs(feds, mesh, stacked=not shared)
    weights = engine.shard_sweep_inputs(weights, mesh, stacked=not shared)
    states = engine.shard_sweep_state(states, mesh)
    hparams = engine.shard_sweep_hparams(hparams, mesh)
    test_inputs = engine.shard_sweep_inputs(test_inputs, mesh, stacked=False)
  return _Placed(feds, weights, states, hparams, test_inputs, shared)


def _chunk_executable(program: Program, rounds: int, k_configs: int,
                      shared: bool, args) -> tuple[Any, float]:
  """The compiled ``rounds``-round chunk (cached on the program) and the
  seconds spent compiling it now (0 when cached)."""
  key = (rounds, k_configs, not shared)
  if key in program.executables:
    return program.executables[key], 0.0
  # The data was validated when the members were built (with the config).
  fn = (engine.run_sweep_rounds(program.round_fn, rounds,
                                stacked_data=not shared,
                                config_parallel=program.config_parallel.name)
        if k_configs > 1 else engine.run_rounds(program.round_fn, rounds)
        )._replace(check_data=False)
  t0 = time.time()
  program.executables[key] = fn.compile(*args)
  return program.executables[key], time.time() - t0


def _empty_result(program: Program, member: Federation, rounds: int,
                  start_round: int, k_configs: int) -> dict[str, Any]:
  return {'seed': int(member.seed), 'metric': program.metric,
          'rounds': int(rounds), 'start_round': start_round, 'final': None,
          'best': {}, 'history': [],
          'train_loss': {g: [] for g in program.groups},
          'events': [], 'nonfinite': [],
          'strategy': program.strategy.describe(),
          'config_parallel': (program.config_parallel.describe()
                              if k_configs > 1 else None)}


class _Chunk(NamedTuple):
  """One config's view of one compiled chunk."""
  first_round: int  # Rounds run before the chunk.
  rounds: int
  metrics: Any  # Host arrays with a leading rounds axis.
  state: Any  # On device, after the chunk.


def _read_chunk(program: Program, res: dict, member: Federation, chunk: _Chunk,
                found: Sequence[guards.NonFiniteEvent], *, nonfinite: str,
                placed: _Placed,
                common_test: Optional[CommonTest],
                t_run: float) -> dict[str, Any]:
  """Records one config's chunk (its non-finite events, which the policy
  allowed), evaluates it and adds it to ``res``; returns the ``on_eval``
  record."""
  r, n = chunk.first_round, chunk.rounds
  # ``found``: the chunk's events, which the policy allowed (the guard).
  events = [e._asdict() for e in found if e.group is not None]
  res['events'] += events
  res['nonfinite'] += [e.describe() for e in found]
  if nonfinite == 'skip':
    for e in found if jax.process_index() == 0 else ():  # Dropped.
      if e.group is not None:
        print(f'[fedhelp_jax] skipped: {e.describe()}')
  losses = round_losses(chunk.metrics, member.info, program.groups)
  for g in program.groups:
    res['train_loss'][g] += losses[g]
  ev = evaluate(program.predict_fn, chunk.state, member.fed, program.task,
                member.info, placed.test_inputs if placed.shared else None)
  if common_test is not None:
    full = evaluate_common(program.predict_common_fn, chunk.state,
                           member.fed, common_test, program.task, member.info)
    res['final_common'] = full
    if 'correct' in full:
      res.setdefault('common_correct', []).append(
          {'round': r + n, 'correct': full['correct']})
    ev = {**ev, 'common': {k: v for k, v in full.items() if k != 'correct'}}
  res['final'] = ev
  last_loss = {g: losses[g][-1] for g in program.groups}
  res['history'].append({'round': r + n, 'summary': ev['summary'],
                         'train_loss': last_loss})
  if 'common' in ev:
    res['history'][-1]['common_summary'] = ev['common']['summary']
  value = ev['summary']['all'][program.metric]
  if not res['best'] or value > res['best']['value']:
    res['best'] = {'round': r + n, 'value': value}
  record = {'round': r + n, 'train_loss': last_loss,
            'elapsed_s': time.time() - t_run, **ev}
  if events:
    record['skipped'] = events
  return record
