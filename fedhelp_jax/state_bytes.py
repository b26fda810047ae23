# Copyright 2026 The fedhelp_jax Authors. Licensed under the Apache License 2.0.
"""Persistent state per silo: what each algorithm keeps between rounds.

Client state is carried by the compiled rounds (donated), sharded over the
device mesh and written to every checkpoint, so every leaf of it costs
memory per silo for the whole run. An algorithm's silos should keep only
what the method needs between rounds (SCAFFOLD's control variate, Ditto's
personal model, FedHelp's private ``L_k``, BatchNorm statistics where the
model has them); FedAvg's keep nothing.

Everything here is measured with ``jax.eval_shape`` on ``alg.init``: no
array is allocated, so a 23-silo federation of a large model costs nothing
to measure. Data may be arrays or ``jax.ShapeDtypeStruct`` values.

Command (the table of ``docs/scale.md``, "Persistent state per silo")::

  python -m fedhelp_jax.state_bytes
"""

from typing import Any, Callable, Mapping, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from fedhelp_jax import algorithms
from fedhelp_jax import models
from fedhelp_jax import tasks
from fedhelp_jax import types
from fedhelp_jax.algorithms import common
from fedhelp_jax.algorithms import fm_prepare

# PneumoniaMNIST: 28x28 grey images; its official val split (524 images)
# is the public set of FedHelp and FedDF.
PNEUMONIA_INPUT = (28, 28, 1)
PNEUMONIA_PUBLIC = 524


def tree_bytes(tree: types.PyTree) -> int:
  """Bytes of every leaf of ``tree`` (arrays or shape structs)."""
  return int(sum(int(np.prod(x.shape)) * jnp.dtype(x.dtype).itemsize
                 for x in jax.tree.leaves(tree)))


def _abstract_init(alg: types.FederatedAlgorithm, data: types.FederatedData):
  key = jax.random.PRNGKey(0)
  return jax.eval_shape(alg.init, key, data)


def persistent_bytes_per_silo(alg: types.FederatedAlgorithm,
                              data: types.FederatedData) -> dict[str, int]:
  """Group -> bytes of client state each silo keeps between rounds.

  The bytes of the group's client-state leaves (from ``alg.init``, shapes
  only) divided by its silo count: the data and the server state are not
  counted.
  """
  _, clients = _abstract_init(alg, data)
  out = {}
  for g, tree in clients.items():
    num = int(data[g]['x'].shape[0])
    total = tree_bytes(tree)
    if total % num:
      raise ValueError(f'group {g!r}: {total} client-state bytes do not '
                       f'split over {num} silos (a leaf without a [C] axis?).')
    out[g] = total // num
  return out


def server_state_bytes(alg: types.FederatedAlgorithm,
                       data: types.FederatedData) -> int:
  """Bytes of the server state ``alg.init`` builds (shapes only)."""
  server, _ = _abstract_init(alg, data)
  return tree_bytes(server)


def param_bytes(module, sample_x) -> int:
  """Bytes of ``module``'s params for inputs like ``sample_x`` ``[1, ...]``.
  """
  params, _ = jax.eval_shape(
      lambda k, x: common.init_model(module, k, x), jax.random.PRNGKey(0),
      sample_x)
  return tree_bytes(params)


def abstract_federation(silos: Mapping[str, tuple[int, int]], *,
                        input_shape: Sequence[int], num_classes: int,
                        test_n: int, num_public: int = 0,
                        public_classes: Optional[int] = None
                        ) -> dict[str, dict[str, jax.ShapeDtypeStruct]]:
  """Shape-only classification data of a federation (``types`` layout).

  Args:
    silos: group -> (silo count ``C``, padded training size ``N``).
    input_shape: one input, e.g. ``(28, 28, 1)``.
    num_classes: label classes (the FM's public answers default to these).
    test_n: held-out examples per silo.
    num_public: with > 0, the public set the prepare hooks would place:
      FedHelp's ``public_x``/``public_q`` on the small silos and FedDF's
      ``server_public_x`` on the first group.
    public_classes: classes of ``public_q`` (default ``num_classes``).
  """
  def spec(shape, dtype):
    return jax.ShapeDtypeStruct(tuple(int(s) for s in shape), dtype)

  fed = {}
  for g, (c, n) in silos.items():
    fed[g] = {'x': spec((c, n, *input_shape), jnp.float32),
              'y': spec((c, n), jnp.int32), 'n': spec((c,), jnp.int32),
              'test_x': spec((c, test_n, *input_shape), jnp.float32),
              'test_y': spec((c, test_n), jnp.int32),
              'test_n': spec((c,), jnp.int32)}
  if num_public:
    pub = (num_public, *input_shape)
    if 'small' in fed:
      c = fed['small']['x'].shape[0]
      fed['small']['public_x'] = spec((c, *pub), jnp.float32)
      fed['small']['public_q'] = spec(
          (c, num_public, public_classes or num_classes), jnp.float32)
    first = next(iter(fed))
    c = fed[first]['x'].shape[0]
    fed[first]['server_public_x'] = spec((c, *pub), jnp.float32)
  return fed


def config_federation(config, *, input_shape: Sequence[int] = PNEUMONIA_INPUT,
                      num_public: int = PNEUMONIA_PUBLIC):
  """``abstract_federation`` of a classification config's partition
  (``num_large`` silos of ``large_size``, ``num_small`` of up to
  ``small_size``, ``test_size`` held out each)."""
  part = config.partition
  small = part.small_size
  small_n = max(small) if isinstance(small, (tuple, list)) else small
  silos = {'large': (part.num_large, part.large_size),
           'small': (part.num_small, small_n)}
  task = tasks.make_task(config.task, int(config.num_classes))
  public = fm_prepare.fm_num_classes(config, task)
  return abstract_federation(
      {g: s for g, s in silos.items() if s[0] > 0},
      input_shape=input_shape, num_classes=int(config.num_classes),
      test_n=int(part.test_size), num_public=num_public,
      public_classes=public)


def graph_info(data: types.FederatedData) -> dict[str, Any]:
  """The ``info`` pFedNet/FedPer's builder reads (what their prepare hook
  records), with a graph without edges: state sizes do not depend on it."""
  return {'pfednet': {'edges': [], 'num_silos_per_group': {
      g: int(d['x'].shape[0]) for g, d in data.items()}}}


def table(get_config: Callable[[str], Any], data=None,
          names: Optional[Sequence[str]] = None) -> list[dict[str, Any]]:
  """Persistent bytes per silo of every registered algorithm.

  Args:
    get_config: ``name -> experiment config`` (e.g. a config module's
      ``get_config``); each algorithm is built from its own config.
    data: the (shape-only) federation; default ``config_federation`` of
      the first config.
    names: algorithms to measure (default: every registered one).

  Returns:
    One row per algorithm: ``name``, ``per_silo`` (group -> bytes),
    ``server`` (server-state bytes) and ``params`` (bytes of
    ``config.model``'s params, for comparison).
  """
  names = list(names or algorithms.names())
  rows = []
  for name in names:
    config = get_config(name)
    fed = config_federation(config) if data is None else data
    task = tasks.make_task(config.task, int(config.num_classes))
    groups = types.group_names(fed)
    alg = algorithms.build(name, config, task, groups, info=graph_info(fed))
    module = models.from_config(config.model, task.num_classes)
    sample = jax.ShapeDtypeStruct((1, *fed[groups[0]]['x'].shape[2:]),
                                  jnp.float32)
    rows.append({'name': name,
                 'per_silo': persistent_bytes_per_silo(alg, fed),
                 'server': server_state_bytes(alg, fed),
                 'params': param_bytes(module, sample)})
  return rows


def _ratio(x: float) -> str:
  if x == 0:
    return '0'
  return f'{x:.2f}' if x >= 0.01 else f'{x:.1e}'


def _kib(num: int) -> str:
  return '0' if num == 0 else f'{num / 1024:,.1f} KiB'


def markdown(rows: Sequence[Mapping[str, Any]]) -> str:
  """A markdown table of ``table``'s rows (bytes per silo and per group,
  and the multiple of the model's params)."""
  groups = sorted({g for r in rows for g in r['per_silo']})
  head = ['algorithm'] + [f'{g} silo' for g in groups] + [
      'x model params', 'server state']
  lines = ['| ' + ' | '.join(head) + ' |',
           '|' + '|'.join(['---'] + ['---:'] * (len(head) - 1)) + '|']
  for r in rows:
    per = [r['per_silo'].get(g, 0) for g in groups]
    ratio = ' / '.join(_ratio(b / r['params']) for b in per)
    cells = ([r['name']] + [f'{b:,} B' for b in per]
             + [ratio, _kib(r['server'])])
    lines.append('| ' + ' | '.join(cells) + ' |')
  return '\n'.join(lines)


def main() -> None:
  # Lazy: the experiment configs are not part of the library package.
  # pylint: disable-next=g-import-not-at-top
  from experiments.configs import fedavg_cls
  rows = table(fedavg_cls.get_config)
  config = fedavg_cls.get_config()
  print(f"config.model of experiments/configs/fedavg_cls.py: "
        f"{dict(config.model)}, {rows[0]['params']:,} B of params "
        f"({rows[0]['params'] // 4:,} float32); "
        f"{config.partition.num_large} large + "
        f"{config.partition.num_small} small silos.")
  print()
  print(markdown(rows))


if __name__ == '__main__':
  main()
