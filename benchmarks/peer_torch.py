# Copyright 2026 The fedhelp_jax Authors. Licensed under the Apache License 2.0.
r"""The compiled FedAvg round against a plain PyTorch per-client loop.

The peer is how the FedHelp authors' code, PFLlib and FL-bench run a round:
eager PyTorch, one silo after another, each loading the global weights,
training with a fresh SGD-momentum optimizer and handing its weights to a
sample-weighted average. Both sides do the same work as
``benchmarks/round_throughput.py``: FedAvg with the default CNN (2 conv
layers 32/64 without bias, GroupNorm, ReLU, 2x2 max-pool, dense 128, head),
``local_steps`` SGD-momentum steps of ``batch_size`` per silo (lr 0.05,
momentum 0.9), the optimizer state reset every round, and the same
initialisation scale (Flax's lecun_normal, a truncated normal with fan-in
variance, for every conv and dense kernel; zero biases; GroupNorm scale 1,
offset 0, epsilon 1e-6).

The torch side keeps every silo's data in one tensor on its device (no
``DataLoader``, no per-round model copies), which is the cheapest form of
that loop. On CPU it is timed once per ``--torch_threads`` entry (torch's
default, one thread per physical core, and 1 thread by default): on a CPU
shared with other jobs torch's default OpenMP threads can slow down many
times over, and a single thread shows what torch does without that. JAX
keeps its own default thread pool. On an accelerator the torch loop runs on
the same device when torch sees CUDA.

Each silo count times ``--strategies`` of the compiled round (``auto`` and
the library's own per-client ``loop`` by default) and the torch loop in
alternation (``--repeats``, median), in one process. JSON goes to
``benchmarks/results/peer-<backend>.json``.

Torch is a benchmark-only extra (``pip install -r
benchmarks/requirements-peer.txt``):

  python -m benchmarks.peer_torch                 # 8 and 32 silos
  python -m benchmarks.peer_torch --silos 8,32,128
  python -m benchmarks.peer_torch --smoke         # tiny shapes, seconds
"""

import argparse
import copy
import os
import sys
import time

import jax
import numpy as np

from benchmarks import common
from benchmarks import round_throughput
from fedhelp_jax.algorithms import fedavg
from fedhelp_jax.models import layers

PEER = 'torch-eager per-client loop'
INSTALL = 'pip install -r benchmarks/requirements-peer.txt'
# Flax's truncated normal: the standard deviation of a unit normal truncated
# to [-2, 2] (``jax.nn.initializers.variance_scaling``).
_TRUNC_STD = .87962566103423978
SMOKE_MODEL = {'features': (4,), 'dense': 8}
# torch's default intra-op thread count, read once before any round sets one.
_DEFAULT_THREADS = {}


class TorchUnavailable(ImportError):
  """PyTorch is not installed (the peer is an optional extra)."""


def import_torch():
  """Imports torch, or raises ``TorchUnavailable`` with the install line."""
  try:
    import torch  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise TorchUnavailable(
        f'PyTorch is not installed ({e}); the torch peer needs it: '
        f'{INSTALL}') from e
  return torch


def torch_device(torch):
  """CUDA when JAX runs on a GPU and torch sees one, else the CPU."""
  if jax.default_backend() == 'gpu' and torch.cuda.is_available():
    return torch.device('cuda:0')
  return torch.device('cpu')


def torch_info(torch, device) -> dict:
  info = {'version': torch.__version__, 'device': str(device),
          'default_threads': _DEFAULT_THREADS.setdefault(
              'torch', torch.get_num_threads()),
          'interop_threads': torch.get_num_interop_threads(),
          'cudnn_benchmark': bool(torch.backends.cudnn.benchmark)}
  if device.type == 'cuda':
    info['device_name'] = torch.cuda.get_device_name(device)
  return info


def _lecun_normal_(torch, weight):
  """In place: Flax's default kernel init (lecun_normal) for a torch weight.

  Torch weights are ``[out, in, kh, kw]`` or ``[out, in]``, so the fan-in is
  ``weight[0].numel()``, as for the Flax kernel.
  """
  std = (1.0 / weight[0].numel()) ** 0.5 / _TRUNC_STD
  torch.nn.init.trunc_normal_(weight, mean=0.0, std=std, a=-2 * std,
                              b=2 * std)


def torch_cnn(torch, *, num_classes=2, features=(32, 64), dense=128, hw=28,
              channels=1):
  """The library's default CNN (``models.CNN``, norm 'group') in torch."""
  nn = torch.nn
  mods, c = [], channels
  for f in features:
    mods += [nn.Conv2d(c, f, 3, padding=1, bias=False),
             nn.GroupNorm(layers.num_groups(f), f, eps=1e-6), nn.ReLU(),
             nn.MaxPool2d(2)]
    c = f
    hw //= 2
  mods += [nn.Flatten(), nn.Linear(c * hw * hw, dense), nn.ReLU(),
           nn.Linear(dense, num_classes)]
  model = nn.Sequential(*mods)
  with torch.no_grad():
    for m in model.modules():
      if isinstance(m, (nn.Conv2d, nn.Linear)):
        _lecun_normal_(torch, m.weight)
        if m.bias is not None:
          m.bias.zero_()
  return model


def prepare_torch_round(torch, data, weights, *, batch_size, local_steps,
                        lr, momentum, device, model_kwargs=None, seed=0,
                        threads=None):
  """The peer's FedAvg round; ``(call, info)`` after a warm-up round.

  Args:
    torch: the torch module.
    data: ``make_federation``'s host group (``x [C, N, H, W, Ch]``, ``y``).
    weights: aggregation weights ``[C]`` (by samples).
    batch_size: local batch size.
    local_steps: local steps per silo.
    lr: local SGD learning rate.
    momentum: local SGD momentum.
    device: torch device.
    model_kwargs: CNN fields (``features``, ``dense``).
    seed: init and data-order seed.
    threads: torch intra-op threads for this round (set before every call,
      so rounds with different thread counts can alternate); None keeps
      torch's default.

  Returns:
    ``call()`` runs one round and blocks; ``info`` has the parameter count
    and the mean train loss of the warm-up round.
  """
  torch.manual_seed(seed)
  x = np.ascontiguousarray(np.moveaxis(data['x'], -1, 2))  # NHWC -> NCHW.
  num_silos, n = x.shape[:2]
  x = torch.from_numpy(x).to(device)
  y = torch.from_numpy(data['y'].astype(np.int64)).to(device)
  w = [float(v) for v in weights]
  hw, channels = data['x'].shape[2], data['x'].shape[-1]
  global_model = torch_cnn(torch, hw=hw, channels=channels,
                           **(model_kwargs or {})).to(device)
  local_model = copy.deepcopy(global_model)
  global_params = list(global_model.parameters())
  local_params = list(local_model.parameters())
  gen = torch.Generator(device='cpu').manual_seed(seed)
  loss_fn = torch.nn.functional.cross_entropy
  flat = torch.arange(local_steps * batch_size) % n

  def one_round():
    total = [torch.zeros_like(p) for p in global_params]
    losses = []
    for c in range(num_silos):
      with torch.no_grad():
        for lp, gp in zip(local_params, global_params):
          lp.copy_(gp)
      # A fresh optimizer: the client state is reset every round.
      opt = torch.optim.SGD(local_params, lr=lr, momentum=momentum)
      order = torch.randperm(n, generator=gen)[flat].to(device)
      for step in range(local_steps):
        idx = order[step * batch_size:(step + 1) * batch_size]
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(local_model(x[c, idx]), y[c, idx])
        loss.backward()
        opt.step()
        losses.append(loss.detach())
      with torch.no_grad():
        for t, lp in zip(total, local_params):
          t.add_(lp, alpha=w[c])
    with torch.no_grad():
      for gp, t in zip(global_params, total):
        gp.copy_(t)
    if device.type == 'cuda':
      torch.cuda.synchronize(device)
    return losses

  def call():
    if threads:
      torch.set_num_threads(threads)
    return one_round()

  t0 = time.perf_counter()
  losses = call()  # Warm-up.
  first = time.perf_counter() - t0
  return call, {'rounds_per_call': 1, 'first_call_s': first,
                'threads': threads or torch.get_num_threads(),
                'params': sum(p.numel() for p in global_params),
                'warmup_train_loss': float(torch.stack(losses).mean())}


def _jax_params(alg, data):
  server, _ = jax.eval_shape(alg.init, jax.random.PRNGKey(0), data)
  return sum(int(np.prod(v.shape)) for v in jax.tree.leaves(server.params))


def torch_threads(torch, spec) -> list[int]:
  """Thread counts from ``spec`` ('default,1'): 'default' is torch's own
  choice at import (its physical-core count), read once and made explicit so
  that rounds with different counts can alternate."""
  default = _DEFAULT_THREADS.setdefault('torch', torch.get_num_threads())
  out = []
  for v in (spec.split(',') if isinstance(spec, str) else spec):
    n = default if v in ('default', None, 0, '0') else int(v)
    if n not in out:
      out.append(n)
  return out


def measure(silos, *, strategies=('auto', 'loop'), threads='default',
            batch_size=32, local_steps=4, rounds_per_call=2, repeats=5,
            hw=28, model_kwargs=None, dtype='float32', torch=None,
            verbose=True):
  """Rows for one silo count: each strategy against each torch peer.

  Every repeat times each compiled strategy, the library's Python loop
  (when in ``strategies``) and the torch round (once per thread count in
  ``threads``) once, in turn.

  Returns:
    ``(rows, extra)``: one row per (strategy, torch thread count), and the
    facts shared by the rows (parameter counts of both models, warm-up
    train loss of the torch round).
  """
  torch = torch or import_torch()
  device = torch_device(torch)
  alg, hparams = common.fedavg_workload(
      'cnn', batch_size=batch_size, local_steps=local_steps, dtype=dtype,
      model_kwargs=model_kwargs)
  host_data, host_weights = common.make_federation(
      silos, batch_size * local_steps, hw=hw)
  data, weights = jax.device_put((host_data, host_weights))
  calls = {}
  for s in strategies:
    if s == 'loop':
      calls[s] = round_throughput.prepare_loop(alg, hparams, data, weights)
    elif s == 'sharded':
      calls[s] = round_throughput.prepare_sharded(
          alg, hparams, data, weights, rounds_per_call=rounds_per_call)
    else:
      calls[s] = round_throughput.prepare_compiled(
          alg, hparams, data, weights, strategy=s, chunk_size=None,
          rounds_per_call=rounds_per_call)
  hp = fedavg.default_hparams('fedavg')
  peers = []
  for n in (torch_threads(torch, threads) if device.type == 'cpu' else [None]):
    peers.append(('peer', n))
    calls[('peer', n)] = prepare_torch_round(
        torch, host_data['silos'], host_weights['silos'],
        batch_size=batch_size, local_steps=local_steps, lr=hp['lr'],
        momentum=hp['momentum'], device=device, model_kwargs=model_kwargs,
        threads=n)
  round_s = round_throughput.interleaved_round_times(calls, repeats)
  images = silos * local_steps * batch_size
  first_peer = calls[peers[0]][1]
  extra = {'jax_params': _jax_params(alg, data),
           'torch_params': first_peer['params'],
           'torch_warmup_train_loss': first_peer['warmup_train_loss']}
  rows = []
  for s in strategies:
    info = calls[s][1]
    for peer in peers:
      peer_info, peer_s = calls[peer][1], round_s[peer]
      row = {'silos': silos, 'strategy': s,
             'resolved': info.get('resolved', 'loop'),
             'chunk_size': info.get('chunk_size'),
             'compile_s': info.get('compile_s'),
             'rounds_per_call': info['rounds_per_call'],
             'images_per_round': images, 'round_s': round_s[s],
             'images_per_s': images / round_s[s], 'peer': PEER,
             'peer_device': str(device), 'peer_threads': peer_info['threads'],
             'peer_first_call_s': peer_info['first_call_s'],
             'peer_round_s': peer_s, 'peer_images_per_s': images / peer_s,
             'speedup_vs_peer': peer_s / round_s[s]}
      rows.append(row)
      if verbose:
        name = s if s != 'auto' else f"auto={row['resolved']}"
        print(f"{silos:>6} {name:>14} {row['images_per_s']:10.0f} "
              f"{row['peer_threads'] or '-':>8} "
              f"{row['peer_images_per_s']:12.0f} "
              f"{row['speedup_vs_peer']:8.2f}x", flush=True)
  return rows, extra


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--silos', default='8,32')
  parser.add_argument('--strategies', default='auto,loop',
                      help="compiled strategies ('vmap', 'chunked', 'auto', "
                      "'sharded': auto over every visible device) "
                      "and/or the library's Python 'loop'")
  parser.add_argument('--torch_threads', default='default,1',
                      help="torch intra-op thread counts to time on CPU "
                      "('default' is torch's own choice); each is a peer row")
  parser.add_argument('--dtype', default='float32')
  parser.add_argument('--batch_size', type=int, default=32)
  parser.add_argument('--local_steps', type=int, default=4)
  parser.add_argument('--rounds_per_call', type=int, default=2)
  parser.add_argument('--repeats', type=int, default=5)
  parser.add_argument('--smoke', action='store_true',
                      help='tiny shapes (2 silos, 8x8 images, a one-layer '
                      '4-channel CNN), 1 repeat: checks the script')
  parser.add_argument('--out', default=common.RESULTS_DIR)
  args = parser.parse_args(argv)
  try:
    torch = import_torch()
  except TorchUnavailable as e:
    sys.exit(f'peer_torch: {e}')
  hw, model_kwargs = 28, None
  if args.smoke:
    args.silos, args.repeats, args.rounds_per_call = '2', 1, 1
    hw, model_kwargs = 8, SMOKE_MODEL
  record = {'benchmark': 'peer_torch', **common.device_record(),
            'torch': torch_info(torch, torch_device(torch)),
            'workload': {'algorithm': 'fedavg', 'model': 'cnn',
                         'model_kwargs': model_kwargs, 'dtype': args.dtype,
                         'torch_threads': args.torch_threads,
                         'image': [hw, hw, 1], 'batch_size': args.batch_size,
                         'local_steps': args.local_steps,
                         'rounds_per_call': args.rounds_per_call,
                         'repeats': args.repeats, 'smoke': args.smoke,
                         'data': 'synthetic, shapes of PneumoniaMNIST'},
            'peer': PEER, 'rows': []}
  tinfo = record['torch']
  print(f"device: {record['device']} ({record['backend']}), jax "
        f"{record['jax']}; torch {tinfo['version']} on {tinfo['device']} "
        f"(default {tinfo['default_threads']} threads)", flush=True)
  print(f"{'silos':>6} {'strategy':>14} {'img/s':>10} {'threads':>8} "
        f"{'torch img/s':>12} {'vs torch':>9}", flush=True)
  for silos in round_throughput.parse_ints(args.silos):
    rows, extra = measure(
        silos, strategies=args.strategies.split(','),
        threads=args.torch_threads, batch_size=args.batch_size,
        local_steps=args.local_steps,
        rounds_per_call=args.rounds_per_call, repeats=args.repeats, hw=hw,
        model_kwargs=model_kwargs, dtype=args.dtype, torch=torch)
    record['rows'] += rows
    record.setdefault('models', extra)
  if hasattr(os, 'getloadavg'):
    record['load_avg_1m_at_end'] = round(os.getloadavg()[0], 2)
  record['host_maxrss_mb'] = common.host_maxrss_mb()
  path = common.write_result('peer', record, args.out)
  print(f'wrote {path}')


if __name__ == '__main__':
  sys.exit(main())
