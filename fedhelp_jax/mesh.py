# Copyright 2026 The fedhelp_jax Authors. Licensed under the Apache License 2.0.
"""Host-side placement: meshes, putting silos and states on devices, reading
them back, and padding a federation to a mesh.

Nothing here is traced or jitted (``engine`` holds the compiled round); it
runs before and after the compiled calls, on every process of a multi-host
run alike. ``engine`` re-exports every public name.
"""

from typing import Optional

import jax
from jax import lax
import jax.numpy as jnp
import numpy as np

from fedhelp_jax import types

FederatedState = types.FederatedState


def make_mesh(num_devices: Optional[int] = None):
  """A 1-D mesh with axis 'clients' over the first ``num_devices`` devices."""
  devices = jax.devices()
  num_devices = num_devices or len(devices)
  if num_devices > len(devices):
    raise ValueError(
        f'num_devices={num_devices} but only {len(devices)} devices are '
        'visible (on CPU, set XLA_FLAGS=--xla_force_host_platform_device_'
        'count=N before importing jax).')
  return jax.sharding.Mesh(np.array(devices[:num_devices]), ('clients',))


def make_sweep_mesh(config_devices: int, client_devices: int = 1):
  """A 2-D mesh ``('configs', 'clients')`` for sweeps.

  ``config_devices`` groups of ``client_devices`` devices each: config k
  runs on group ``k % config_devices`` (the K configs are a multiple of
  ``config_devices``), and its silos are split over the group's devices.
  Over several processes ``jax.devices()`` is ordered by process, so a
  process holds whole config groups when ``client_devices`` divides its
  local device count.
  """
  devices = jax.devices()
  wanted = int(config_devices) * int(client_devices)
  if config_devices < 1 or client_devices < 1 or wanted > len(devices):
    raise ValueError(
        f'make_sweep_mesh({config_devices}, {client_devices}) needs '
        f'{wanted} devices; {len(devices)} are visible (on CPU, set '
        'XLA_FLAGS=--xla_force_host_platform_device_count=N before '
        'importing jax).')
  grid = np.array(devices[:wanted]).reshape(config_devices, client_devices)
  return jax.sharding.Mesh(grid, ('configs', 'clients'))


def shard_sweep_state(states: FederatedState, mesh) -> FederatedState:
  """Stacked ``[K, ...]`` states on a ``('configs', 'clients')`` mesh:
  configs over 'configs', each config's silos over 'clients'."""
  spec = jax.sharding.PartitionSpec
  configs = jax.sharding.NamedSharding(mesh, spec('configs'))
  silos = jax.sharding.NamedSharding(mesh, spec('configs', 'clients'))
  return FederatedState(server=place(states.server, configs),
                        clients=place(dict(states.clients), silos),
                        rng=place(states.rng, configs),
                        round=place(states.round, configs))


def shard_sweep_inputs(tree: types.PyTree, mesh, *,
                       stacked: bool) -> types.PyTree:
  """Data or weights of a sweep on a ``('configs', 'clients')`` mesh:
  ``[C, ...]`` leaves shared by the configs (silos over 'clients'), or
  ``[K, C, ...]`` leaves when ``stacked``."""
  spec = (jax.sharding.PartitionSpec('configs', 'clients') if stacked else
          jax.sharding.PartitionSpec('clients'))
  return place(tree, jax.sharding.NamedSharding(mesh, spec))


def shard_sweep_hparams(hparams, mesh):
  """``[K]`` hparams over the mesh's 'configs' axis."""
  return place(hparams, jax.sharding.NamedSharding(
      mesh, jax.sharding.PartitionSpec('configs')))


def _put(x, sharding):
  """``x`` placed with ``sharding``, also when the mesh spans processes.

  With one process this is ``jax.device_put``. With several, every process
  holds the same host value (a numpy array, or a fully addressable array
  computed identically everywhere, e.g. ``init_state``'s) and contributes
  only the rows its own devices hold (``jax.make_array_from_callback`` reads
  just those slices): silos are assigned to processes by the mesh layout.
  """
  if isinstance(x, jax.Array) and not x.is_fully_addressable:
    return jax.device_put(x, sharding)  # Already global: a reshard.
  if jax.process_count() == 1 or sharding.is_fully_addressable:
    return jax.device_put(x, sharding)
  host = np.asarray(x)
  return jax.make_array_from_callback(host.shape, sharding,
                                      lambda index: host[index])


def place(tree: types.PyTree, sharding) -> types.PyTree:
  """Every leaf of ``tree`` placed with ``sharding`` (see ``_put``)."""
  return jax.tree.map(lambda x: _put(x, sharding), tree)


def shard_clients(tree: types.PyTree, mesh) -> types.PyTree:
  """Places the leading (client) axis of every leaf on the 'clients' axis."""
  return place(tree, jax.sharding.NamedSharding(
      mesh, jax.sharding.PartitionSpec('clients')))


def process_silo_rows(mesh, num_clients: int) -> slice:
  """The rows (silos) of a ``[num_clients]`` client axis that THIS
  process's devices hold on ``mesh``: the silos it must load.

  ``jax.devices()`` is ordered by process and the client axis is split in
  that order, so each process holds one contiguous block.
  """
  sharding = jax.sharding.NamedSharding(
      mesh, jax.sharding.PartitionSpec('clients'))
  rows = sorted({(i[0].start or 0, num_clients if i[0].stop is None
                  else i[0].stop)
                 for i in sharding.addressable_devices_indices_map(
                     (num_clients,)).values()})
  start, stop = rows[0][0], rows[-1][1]
  if sum(b - a for a, b in rows) != stop - start:
    raise ValueError(f"this process's silos on the mesh are not one block: "
                     f'{rows}.')
  return slice(start, stop)


def shard_process_local_clients(tree: types.PyTree, mesh,
                                num_clients: int) -> types.PyTree:
  """Global client-sharded arrays from THIS process's silos only.

  ``tree``'s leaves hold the rows ``process_silo_rows(mesh, num_clients)``
  (e.g. each process loads and packs only its own silos); the global
  arrays have ``num_clients`` rows (``jax.make_array_from_process_local_
  data``). With one process it equals ``shard_clients`` of the full tree.
  """
  sharding = jax.sharding.NamedSharding(
      mesh, jax.sharding.PartitionSpec('clients'))
  return jax.tree.map(
      lambda x: jax.make_array_from_process_local_data(
          sharding, np.asarray(x), (num_clients,) + np.shape(x)[1:]), tree)


def replicate(tree: types.PyTree, mesh) -> types.PyTree:
  """Replicates every leaf over the mesh."""
  return place(tree, jax.sharding.NamedSharding(
      mesh, jax.sharding.PartitionSpec()))


def _fetch_leaf(x):
  if not isinstance(x, jax.Array):
    return np.asarray(x)
  if x.is_fully_addressable:
    return np.asarray(jax.device_get(x))
  if x.is_fully_replicated:  # Every process holds the whole value.
    return np.asarray(x.addressable_data(0))
  # A collective: every process must fetch the same leaves in the same order
  # (the host loops do, as they run the same code on the same metrics).
  from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
  return np.asarray(multihost_utils.process_allgather(x, tiled=True))


def fetch(tree: types.PyTree) -> types.PyTree:
  """Host (numpy) copies of every leaf, gathered across processes.

  ``jax.device_get`` cannot read an array that spans devices of other
  processes; this gathers such arrays (``process_allgather``), so every
  process gets the global value. Call it from every process.
  """
  return jax.tree.map(_fetch_leaf, tree)


def _local_rows_leaf(x):
  if not isinstance(x, jax.Array) or x.is_fully_addressable:
    return x
  if x.is_fully_replicated:
    return np.asarray(x.addressable_data(0))
  # This process's rows of a leading-axis-sharded array, in global order
  # (replicas on several local devices counted once).
  shards = {}
  for shard in x.addressable_shards:
    start = (shard.index[0].start or 0) if shard.index else 0
    shards.setdefault(start, shard.data)
  return np.concatenate([np.asarray(shards[k]) for k in sorted(shards)])


def local_rows(tree: types.PyTree) -> types.PyTree:
  """The part of ``tree`` this process holds, as host-readable leaves.

  Fully addressable leaves pass through; a leaf sharded over several
  processes becomes this process's rows (its silos), so host-side checks
  run on every process without gathering the federation.
  """
  return jax.tree.map(_local_rows_leaf, tree)


def shard_state(state: FederatedState, mesh) -> FederatedState:
  """Shards client states over the mesh and replicates the rest."""
  return FederatedState(server=replicate(state.server, mesh),
                        clients=shard_clients(dict(state.clients), mesh),
                        rng=replicate(state.rng, mesh),
                        round=replicate(state.round, mesh))


def pad_group_clients(group_data: types.GroupData, weights, multiple: int):
  """Appends dummy silos so a group's client count is a multiple.

  Dummy silos have ``n = 0``, ``test_n = 0``, all-zero data and weight 0, so
  they move nothing on the server; their rows of per-silo outputs must be
  dropped from reports (``unpad_clients``). For numpy or jax arrays and without
  importing the data stack.

  Args:
    group_data: one group's data; every array whose leading axis has length
      ``C = len(group_data['n'])`` is padded, other entries pass through.
    weights: the group's aggregation weights ``[C]``.
    multiple: round ``C`` up to a multiple of this (e.g. the device count).

  Returns:
    ``(group_data, weights)`` with ``C' = ceil(C / multiple) * multiple``
    silos.
  """
  if int(multiple) < 1:
    raise ValueError(f'multiple must be >= 1, got {multiple}.')
  num = int(np.shape(group_data['n'])[0])
  extra = -num % int(multiple)

  def pad(x):
    if (not hasattr(x, 'shape') or not np.ndim(x)
        or np.shape(x)[0] != num or not extra):
      return x
    xp = jnp if isinstance(x, jax.Array) else np
    return xp.concatenate([x, xp.zeros((extra,) + x.shape[1:], x.dtype)])

  return {k: pad(v) for k, v in group_data.items()}, pad(weights)


def pad_federation_for_mesh(data: types.FederatedData, weights, info, mesh,
                            axis: Optional[str] = None):
  """Pads every group's client axis to a multiple of the mesh size.

  Args:
    data: group name -> group data.
    weights: group name -> ``[C_g]`` weights.
    info: optional dict of run information (or None); a copy is returned with
      ``'num_real_clients'``: group -> the unpadded ``C_g``.
    mesh: the device mesh (its size is the multiple).
    axis: pad to the size of this mesh axis only (e.g. 'clients' of a
      ``make_sweep_mesh`` mesh) instead of the whole mesh.

  Returns:
    ``(data, weights, info)`` with padded groups.
  """
  multiple = int(mesh.devices.size if axis is None else mesh.shape[axis])
  info = dict(info or {})
  info['num_real_clients'] = {g: int(np.shape(d['n'])[0])
                              for g, d in data.items()}
  out_data, out_weights = {}, {}
  for g in data:
    out_data[g], out_weights[g] = pad_group_clients(data[g], weights[g],
                                                    multiple)
  return out_data, out_weights, info


def unpad_clients(tree: types.PyTree, num_real: int,
                  axis: int = 0) -> types.PyTree:
  """Drops dummy silos: keeps the first ``num_real`` entries along ``axis``.

  E.g. ``unpad_clients(metrics.silos['small'], C, axis=1)`` on ``run_rounds``
  metrics ``[R, C']``.
  """
  return jax.tree.map(
      lambda x: lax.slice_in_dim(x, 0, num_real, axis=axis), tree)


