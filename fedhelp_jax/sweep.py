# Copyright 2026 The fedhelp_jax Authors. Licensed under the Apache License 2.0.
"""vmap-parallel ablations: K experiment configs as one compiled program.

``run_sweep(configs)`` takes a list of experiment configs (or
``grid(base, {...})``) and returns one result per config. Configs that
differ ONLY in ``hparams`` values and ``seed`` run as one program: their
states and hyperparameters are stacked on a leading ``[K]`` axis and
``engine.run_sweep_rounds`` vmaps the compiled rounds over it. Everything
else must match, including every data shape:

  * the config fields other than ``seed``, ``hparams`` values and the
    reporting fields (``progress``, ``tensorboard``, ``workdir``,
    ``checkpoint_keep``): model, partition, local steps, rounds, eval_every,
    strategy, ...;
  * the set of hparams names (one pytree structure);
  * the shape and dtype of every array of the built federation. A seed
    changes WHICH examples a silo holds; with fixed silo sizes that keeps the
    shapes, and the differing data are stacked over K as well
    (``stacked_data``). With a size range (e.g. ``partition.small_size =
    (16, 24)``) the seed also draws the sizes, the padded shapes differ and
    the configs cannot share a program;
  * what the algorithm's ``prepare`` hook derived from the data for the
    program itself (e.g. pFedNet's similarity graph in ``info['pfednet']``).

Configs that differ in any of these start a program of their own; programs
run one after another, and a program of one config is a plain sequential
run (``engine.run_rounds``, as in ``run_experiment``). A printed line names
the field that caused each split.

How the K configs of a program share it is picked per backend
(``engine.resolve_config_parallel``, printed with its reason): a map over
configs inside one program on CPU, one vmapped program on GPUs/TPUs, or
with ``mesh=engine.make_sweep_mesh(kc, cc)`` the configs vmapped and
sharded over ``kc`` device groups, each config's silos over ``cc`` devices.
``config.config_parallel`` ('vmap' or 'map') overrides the choice.

Each program runs through ``runner.run``, the host loop ``run_experiment``
uses too: ``eval_every`` rounds per compiled call, every config evaluated
between calls. Sweeps keep no checkpoints; without a mesh they run on one
device (``num_devices`` must be 1).
"""

import difflib
import itertools
import json
import os
import time
from typing import Any, Mapping, NamedTuple, Optional, Sequence

import jax
import ml_collections
import numpy as np

from fedhelp_jax import engine
from fedhelp_jax import experiment
from fedhelp_jax import privacy
from fedhelp_jax import reporting
from fedhelp_jax import runner
from fedhelp_jax import validate

# May differ inside one program (values only).
VARYING = ('seed', 'hparams')
# Never affect the numbers; ignored when comparing configs.
REPORTING = ('progress', 'tensorboard', 'workdir', 'checkpoint_keep')
# ``info`` entries that only describe the data for reports (per-silo sizes,
# label counts, the FM query report); every other entry (e.g. a graph built
# by a prepare hook) can change the program and must match.
_INFO_REPORTING = ('train_sizes', 'label_counts', 'fm')


def grid(base: ml_collections.ConfigDict,
         axes: Mapping[str, Sequence[Any]]) -> list[ml_collections.ConfigDict]:
  """The Cartesian product of ``axes`` applied to copies of ``base``.

  Example::

    configs = grid(base, {'hparams.lr': [0.1, 0.03], 'seed': [0, 1, 2]})
    # 6 configs: (0.1, 0), (0.1, 1), (0.1, 2), (0.03, 0), ... (last fastest)

  Args:
    base: an experiment config (left unchanged).
    axes: dotted field path -> values. Paths must exist in ``base``, except
      new names under ``hparams`` (hparams are overrides of the algorithm's
      defaults, see ``experiment.hparams_from_config``).

  Returns:
    ``prod(len(v))`` configs in ``itertools.product`` order.

  Raises:
    KeyError: a path that ``base`` does not have (with a suggestion).
  """
  keys = list(axes)
  for key in keys:  # Fail before building anything.
    set_field(base.copy_and_resolve_references(), key, None, check_only=True)
  out = []
  for values in itertools.product(*(list(axes[k]) for k in keys)):
    config = base.copy_and_resolve_references()
    for key, value in zip(keys, values):
      set_field(config, key, value)
    out.append(config)
  return out


def set_field(config, path: str, value, *, check_only: bool = False):
  """Sets the dotted ``path`` of ``config`` (e.g. 'hparams.lr') to ``value``.

  The path must exist, except new names under ``hparams``; otherwise a
  ``KeyError`` names the missing field and suggests a close one. With
  ``check_only`` nothing is set.
  """
  *parents, leaf = path.split('.')
  node = config
  for i, part in enumerate(parents):
    if part not in node or not isinstance(node[part],
                                          ml_collections.ConfigDict):
      raise KeyError(_unknown(path, '.'.join(parents[:i + 1]), node, part))
    node = node[part]
  if leaf not in node and parents != ['hparams']:
    raise KeyError(_unknown(path, path, node, leaf))
  if check_only:
    return
  with node.unlocked():
    node[leaf] = value


def _unknown(path, prefix, node, part) -> str:
  close = difflib.get_close_matches(part, list(node.keys()), n=1)
  hint = f' Did you mean {close[0]!r}?' if close else ''
  return (f'{path!r}: the config has no field {prefix!r}.{hint} '
          f'Fields here: {sorted(node.keys())}.')


# ---------------------------------------------------------------------------
# Host setup of one config (the first half of run_experiment).
# ---------------------------------------------------------------------------


class _Setup(NamedTuple):
  """One config of the sweep: the config, its federation and DP record."""
  config: Any
  federation: runner.Federation
  privacy: Optional[dict[str, Any]] = None  # The DP plan's record.


def _setup(config, raw_cache: dict[str, Any]) -> _Setup:
  """Validates ``config`` and builds its federation, as run_experiment does.

  Both use ``experiment.prepare_federation``; the dataset is loaded once per
  distinct (dataset, partition, seed).
  """
  if int(config.get('num_devices', 1) or 1) != 1:  # 0 (auto): one here.
    raise ValueError(
        f'config.num_devices={config.num_devices}: run_sweep runs the config '
        'axis on one device. Set num_devices=1, or run sharded configs one '
        'by one with experiment.run_experiment.')
  if config.get('strategy', 'auto') == 'loop':
    raise ValueError("config.strategy='loop' is a per-silo Python loop; "
                     "run_sweep needs a compiled strategy ('auto', 'vmap' "
                     "or 'chunked').")
  validate.validate_config(config)
  # load_raw reads the dataset, partition and seed fields only.
  key = json.dumps([config.dataset.to_dict(),
                    config.get('partition', ml_collections.ConfigDict())
                    .to_dict(), int(config.seed)], sort_keys=True, default=str)
  if key not in raw_cache:
    raw_cache[key] = experiment.load_raw(config)
  f = experiment.prepare_federation(config, raw_cache[key])
  hparams, record = f.hparams, None
  plan = experiment.privacy_plan(config, f.fed, f.hparams, lambda *a: None)
  if plan is not None:
    if plan.rounds != int(config.rounds):
      raise ValueError(
          "config.dp.on_budget='stop' would end this config at round "
          f'{plan.rounds} of {config.rounds}; configs of a sweep share '
          "their rounds: use 'refuse' or 'calibrate'.")
    # Each config's own (maybe calibrated) sigma; epsilon in its result.
    hparams = privacy.with_plan_noise(hparams, plan)
    record = plan.record
  return _Setup(config, f._replace(hparams=hparams), record)


# ---------------------------------------------------------------------------
# Planning: which configs share a program, and why the others cannot.
# ---------------------------------------------------------------------------


def _structure(config) -> dict[str, Any]:
  return {k: v for k, v in config.to_dict().items()
          if k not in VARYING + REPORTING}


def _flatten(tree, prefix='') -> dict[str, Any]:
  if isinstance(tree, Mapping):
    out = {}
    for k, v in tree.items():
      out.update(_flatten(v, f'{prefix}{k}.'))
    return out
  return {prefix[:-1]: tree}


def _shapes(s: _Setup) -> dict[str, Any]:
  def describe(x):
    return f'{tuple(np.shape(x))} {np.asarray(x).dtype}'
  f = s.federation
  out = {f'{g}/{k}': describe(v) for g, d in f.fed.items()
         for k, v in d.items()}
  out.update({f'weights/{g}': describe(w) for g, w in f.weights.items()})
  out.update({f'hparams.{k}': describe(v) for k, v in f.hparams.items()})
  return out


def _static_info(s: _Setup) -> dict[str, Any]:
  return json.loads(json.dumps(
      {k: v for k, v in s.federation.info.items()
       if k not in _INFO_REPORTING},
      sort_keys=True, default=str))


def _incompatibility(a: _Setup, b: _Setup) -> Optional[str]:
  """Why ``b`` cannot join ``a``'s program, or None if it can."""
  fa, fb = _flatten(_structure(a.config)), _flatten(_structure(b.config))
  for key in sorted(set(fa) | set(fb)):
    if fa.get(key, '<unset>') != fb.get(key, '<unset>'):
      return (f"field '{key}' differs ({fa.get(key, '<unset>')!r} vs "
              f"{fb.get(key, '<unset>')!r})")
  ha, hb = set(a.federation.hparams), set(b.federation.hparams)
  if ha != hb:
    only = sorted(ha ^ hb)
    return f'the hparams names differ ({only} set in only one)'
  sa, sb = _shapes(a), _shapes(b)
  for key in sorted(set(sa) | set(sb)):
    if sa.get(key) != sb.get(key):
      why = ''
      if a.config.seed != b.config.seed:
        why = (f'; seed {a.config.seed} vs {b.config.seed} changes the '
               'partition, and with it the padded silo sizes (e.g. a '
               'partition.small_size range is drawn per seed: use one size '
               'to sweep seeds in one program)')
      return (f"the data shape '{key}' differs ({sa.get(key)} vs "
              f'{sb.get(key)}){why}')
  ia, ib = _static_info(a), _static_info(b)
  for key in sorted(set(ia) | set(ib)):
    if ia.get(key) != ib.get(key):
      return (f"info['{key}'] (derived from the data by the "
              f"{a.config.algorithm} prepare hook) differs")
  return None


class _Program(NamedTuple):
  """Configs (indices into the sweep) that run as one compiled program."""
  members: list[int]
  reason: str  # Why it is not part of the first program ('' for that one).


def _plan(setups: Sequence[_Setup], *, vmap: bool = True) -> list[_Program]:
  """Groups configs into programs: each joins the first compatible one."""
  programs: list[_Program] = []
  for i, s in enumerate(setups):
    if not vmap:
      programs.append(_Program([i], 'run_sweep(vmap=False)' if i else ''))
      continue
    reasons = []
    for p in programs:
      why = _incompatibility(setups[p.members[0]], s)
      if why is None:
        p.members.append(i)
        break
      reasons.append((p.members[0], why))
    else:
      reason = ('' if not reasons else
                f'config {i} differs from config {reasons[0][0]}: '
                f'{reasons[0][1]}')
      programs.append(_Program([i], reason))
  return programs


def _describe_plan(programs: Sequence[_Program], num_configs: int) -> str:
  lines = [f'[fedhelp_jax.sweep] {num_configs} configs -> {len(programs)} '
           'program(s):']
  for p in programs:
    k = len(p.members)
    mode = (f'one vmapped program (K={k})' if k > 1 else
            'a sequential run (K=1)')
    lines.append(f'  configs {p.members}: {mode}')
    if p.reason:
      lines.append(f'    falls back to its own program: {p.reason}')
  return '\n'.join(lines)


# ---------------------------------------------------------------------------
# Running.
# ---------------------------------------------------------------------------


def _program_mesh(setups, mesh, verbose):
  """``mesh`` if this program's configs can use it, else None (said why)."""
  if mesh is None:
    return None
  k, groups = len(setups), int(mesh.shape['configs'])
  if k > 1 and k % groups == 0:
    return mesh
  if verbose:
    print(f'[fedhelp_jax.sweep] a program of {k} config(s) does not divide '
          f"over the mesh's {groups} config groups: it runs on one device")
  return None


def _run_program(setups: Sequence[_Setup], *, verbose: bool,
                 return_states: bool, mesh=None) -> list[dict[str, Any]]:
  """Runs configs that share one program; one result dict per config."""
  first = setups[0]
  config = first.config
  info = first.federation.info
  mesh = _program_mesh(setups, mesh, verbose)
  members = [s.federation for s in setups]
  if mesh is not None:  # Each config's silos padded for its 'clients' devices.
    padded = []
    for m in members:
      fed, weights, info = engine.pad_federation_for_mesh(
          m.fed, m.weights, m.info, mesh, axis='clients')
      padded.append(m._replace(fed=fed, weights=weights, info=info))
    members = padded
  program = runner.build_program(config, first.federation.task,
                                 first.federation.groups, info, mesh=mesh)
  if verbose and len(setups) > 1:
    data = ('one copy of the data' if runner.same_data(members) else
            'shapes, not data: data and weights stacked over K')
    print(f'[fedhelp_jax.sweep] the {len(setups)} configs share {data}; '
          f'strategy {program.strategy.describe()}; configs side by side: '
          f'{program.config_parallel.describe()}')
  # A config that goes non-finite must not stop the others: 'record'.
  runs = runner.run(program, members, rounds=int(config.rounds),
                    eval_every=int(config.eval_every), nonfinite='record')
  results = []
  for s, res in zip(setups, runs):
    out = {'algorithm': s.config.algorithm,
           'hparams': {h: np.asarray(v).tolist()
                       for h, v in s.federation.hparams.items()}}
    out.update({k: getattr(res, k) for k in (
        'seed', 'metric', 'rounds', 'final', 'best', 'history', 'train_loss',
        'nonfinite', 'strategy', 'timing_s')})
    if s.privacy is not None:
      out['privacy'] = s.privacy
    if return_states:
      out['state'] = res.state
    results.append(out)
  return results


def run_sweep(configs: Sequence[ml_collections.ConfigDict],
              workdir: Optional[str] = None, *, vmap: bool = True,
              return_states: bool = False, verbose: bool = True,
              mesh=None) -> list[dict[str, Any]]:
  """Runs experiment configs, as few compiled programs as their shapes allow.

  Example::

    from experiments.configs import fedavg_cls
    from fedhelp_jax import sweep
    base = fedavg_cls.get_config()
    base.partition.small_size = 50  # Fixed sizes: seeds keep the shapes.
    configs = sweep.grid(base, {'hparams.lr': [0.1, 0.03],
                                'seed': [0, 1, 2]})
    results = sweep.run_sweep(configs)  # One program, K = 6.
    for r in results:
      print(r['label'], r['final']['summary']['all']['accuracy'])

  Args:
    configs: experiment ``ConfigDict``s (e.g. from ``grid``).
    workdir: if given, ``workdir/sweep.json`` receives the results (without
      states).
    vmap: False runs every config as its own sequential program (the
      reference, and the baseline for benchmarks).
    return_states: add each config's final ``FederatedState`` (unstacked,
      on device) as ``'state'``.
    verbose: print the plan (which configs share a program, and which field
      split the others) and one line per config.
    mesh: optional ``engine.make_sweep_mesh(kc, cc)``: a program's K
      configs (a multiple of ``kc``) are sharded over ``kc`` device groups
      and each config's silos over that group's ``cc`` devices (padded with
      weight-0 dummies). Same results as the configs run one by one, to
      float32 reduction order.

  Returns:
    One dict per config, in input order: ``index``, ``label`` (the fields
    that vary across the sweep -> this config's values), ``program`` and
    ``mode`` ('vmap' or 'sequential'), ``algorithm``, ``seed``, ``hparams``
    (floats), ``metric`` (the primary metric), ``final`` (per-silo
    ``clients`` and per-group ``summary`` metrics, as
    ``experiment.evaluate``), ``best`` (round and value of the primary
    metric over evaluations), ``history`` (the summary at every
    evaluation), ``train_loss`` (group -> per-round mean over real silos),
    ``nonfinite`` (messages; empty when all was finite), ``strategy`` and
    ``timing_s`` (of its program: compile, steady, host between chunks).
    A config that goes non-finite does not stop the sweep: it is reported
    in ``nonfinite`` (``config.nonfinite='skip'`` still drops the bad
    updates, as in ``run_experiment``).

  Raises:
    ValueError: an invalid config (``validate.ConfigError``), one with
      ``num_devices > 1`` or the 'loop' strategy.
  """
  configs = list(configs)
  if not configs:
    return []
  raw_cache: dict[str, Any] = {}
  setups = [_setup(c, raw_cache) for c in configs]
  programs = _plan(setups, vmap=vmap)
  if verbose:
    print(_describe_plan(programs, len(configs)))
    hint = _cpu_conv_hint(configs, programs)
    if hint:
      print(hint)
  labels = _labels(configs)
  results: list[Optional[dict[str, Any]]] = [None] * len(configs)
  t_sweep = time.time()
  for p_index, p in enumerate(programs):
    out = _run_program([setups[i] for i in p.members], verbose=verbose,
                       return_states=return_states, mesh=mesh)
    for i, res in zip(p.members, out):
      res.update(index=i, label=labels[i], program=p_index,
                 mode='vmap' if len(p.members) > 1 else 'sequential')
      results[i] = res
      if verbose:
        summ = res['final']['summary']
        metric = res['metric']
        per_group = ' '.join(f'{g}={summ[g][metric]:.4f}' for g in summ
                             if g != 'gap')
        print(f'[fedhelp_jax.sweep] config {i} {labels[i]}: {metric} '
              f'{per_group}' + (' NON-FINITE' if res['nonfinite'] else ''))
  if verbose:
    print(f'[fedhelp_jax.sweep] done in {time.time() - t_sweep:.1f}s')
  if workdir:
    os.makedirs(workdir, exist_ok=True)
    reporting.write_json(
        os.path.join(workdir, 'sweep.json'),
        [{k: v for k, v in r.items() if k != 'state'} for r in results])
  return results


def _cpu_conv_hint(configs, programs) -> Optional[str]:
  """Advice when a vmapped program of conv models runs on CPU.

  Measured in benchmarks/sweep.py (2-core CPU, 8 configs of the CNN): the
  vmapped sweep ran at 0.34x the speed of sequential runs with XLA's
  convolutions (they become grouped convolutions) and 0.89x with
  ``model.conv='im2col'``. Only said when ``config_parallel='vmap'`` is
  forced: 'auto' maps over configs on CPU.
  """
  if jax.default_backend() != 'cpu':
    return None
  for p in programs:
    config = configs[p.members[0]]
    if config.get('config_parallel', 'auto') != 'vmap':
      continue  # 'auto' maps over configs on CPU.
    if (len(p.members) > 1 and config.model.name != 'logreg'
        and config.model.get('conv', 'xla') == 'xla'):
      return ('[fedhelp_jax.sweep] note: on CPU, vmapped configs of a conv '
              "model run as grouped convolutions (slow here); set "
              "model.conv='im2col', or pass vmap=False to run them one by "
              'one (see benchmarks/results/sweep-cpu.json).')
  return None


def _labels(configs) -> list[dict[str, Any]]:
  """Per config: the flattened fields whose values vary across the sweep."""
  flat = [_flatten(c.to_dict()) for c in configs]
  keys = sorted(set().union(*flat))
  varying = [k for k in keys
             if any(f.get(k, '<unset>') != flat[0].get(k, '<unset>')
                    for f in flat)]
  return [{k: f.get(k) for k in varying} for f in flat]
