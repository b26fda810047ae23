# Copyright 2026 The fedhelp_jax Authors. Licensed under the Apache License 2.0.
"""One process of a multi-process JAX program, for test_launch_multiprocess.

  python -m experiments.launch_local --num_processes=2 \
      --module=tests.multiprocess_worker -- [--fail_process=1 ...]

Joins the others with ``fedhelp_jax.distributed.initialize`` from the
launcher's flags, then computes across processes: an all-gather of the
process indices and a sum over a mesh of every process's devices, and
prints ``process I of N: allgather=[...] sum=S devices=D``. Flags make one
process fail (exit or raise) or every process hang, to test how the
launcher stops them, or keep only process 0's stdout.
"""

import argparse
import os
import sys
import time

from fedhelp_jax import distributed
from fedhelp_jax import host_devices

# One host device per process unless the test asks for more (before jax).
os.environ.setdefault(host_devices.ENV, '1')
host_devices.configure()


def _parse(argv):
  parser = argparse.ArgumentParser()
  parser.add_argument('--coordinator_address')
  parser.add_argument('--num_processes', type=int)
  parser.add_argument('--process_id', type=int)
  parser.add_argument('--fail_process', type=int, default=None,
                      help='this process fails, as --fail says')
  parser.add_argument('--fail', default='start',
                      choices=('start', 'init', 'raise'),
                      help='exit with --fail_status before joining the '
                      'others (start) or after (init), or raise after')
  parser.add_argument('--fail_status', type=int, default=3)
  parser.add_argument('--quiet', action='store_true',
                      help='distributed.quiet_non_primary() after joining')
  parser.add_argument('--hang_s', type=float, default=0.0,
                      help='every process sleeps this long first')
  parser.add_argument('--pid_dir', default=None,
                      help='each process writes its pid to pid_dir/I, and '
                      'pid_dir/I.joining before it joins the others')
  return parser.parse_args(argv)


def _fail_if_asked(args, stage: str) -> None:
  """Fails here if asked to, at ``stage`` ('start' or 'init')."""
  when = 'start' if args.fail == 'start' else 'init'
  if args.fail_process != args.process_id or stage != when:
    return
  if args.pid_dir:  # Fail only once every other process waits for this one.
    others = {f'{i}.joining' for i in range(args.num_processes)} - {
        f'{args.process_id}.joining'}
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not others <= set(
        os.listdir(args.pid_dir)):
      time.sleep(0.05)
    time.sleep(0.2)  # Into jax.distributed.initialize.
  if args.fail == 'raise':  # An uncaught error in a connected process.
    raise RuntimeError(f'process {args.process_id} raising on purpose')
  print(f'process {args.process_id} failing on purpose ({stage})',
        file=sys.stderr, flush=True)
  # At once: a plain exit after initialize() would wait in JAX's shutdown
  # barrier for the others, who wait in a collective for this one.
  distributed.exit_now(args.fail_status)


def main(argv) -> int:
  args = _parse(argv)
  if args.pid_dir:  # Whole or not at all (written, then renamed).
    path = os.path.join(args.pid_dir, str(args.process_id))
    with open(path + '.tmp', 'w') as f:
      f.write(str(os.getpid()))
    os.replace(path + '.tmp', path)
  time.sleep(args.hang_s)
  _fail_if_asked(args, 'start')
  import jax  # pylint: disable=g-import-not-at-top,unused-import
  if args.pid_dir:
    open(os.path.join(args.pid_dir, f'{args.process_id}.joining'), 'w').close()
  print(distributed.initialize(args.coordinator_address, args.num_processes,
                               args.process_id, initialization_timeout=60),
        flush=True)
  _fail_if_asked(args, 'init')
  if args.quiet:
    distributed.quiet_non_primary()
    print(f'process {args.process_id}: stderr is kept', file=sys.stderr,
          flush=True)
  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp
  from jax.experimental import multihost_utils
  import numpy as np
  # pylint: enable=g-import-not-at-top
  index = jax.process_index()
  gathered = multihost_utils.process_allgather(np.int32(index))
  # A sum over one mesh axis spanning every process's devices: each device
  # holds its process index + 1.
  mesh = jax.make_mesh((jax.device_count(),), ('d',))
  local = np.full((jax.local_device_count(),), index + 1, np.float32)
  x = jax.make_array_from_process_local_data(
      jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec('d')),
      local)
  total = jax.jit(jnp.sum, out_shardings=jax.sharding.NamedSharding(
      mesh, jax.sharding.PartitionSpec()))(x)
  print(f'process {index} of {jax.process_count()}: '
        f'allgather={np.asarray(gathered).tolist()} '
        f'sum={float(total.addressable_data(0)):g} '
        f'devices={jax.device_count()}', flush=True)
  return 0


if __name__ == '__main__':
  sys.exit(main(sys.argv[1:]))
