# Copyright 2026 The fedhelp_jax Authors. Licensed under the Apache License 2.0.
r"""Why the CNN's dense units die, and the recipe the clustered table uses.

  python -m experiments.pfednet_collapse \
      --out=experiments/results/pfednet_clustered/recipe.json

For pfednet_cls (PneumoniaMNIST) and the clustered benchmark (BloodMNIST,
``labels`` arm), data seed 0, this measures the fraction of the hidden
dense layer's ReLU units with no positive pre-activation on any of a silo's
training images (``diagnostics.dead_units``), and the final training loss:

1. at initialisation (learning rate 0, one round), training seeds 0-2;
2. after the pfednet_cls recipe's 15 rounds x 5 steps, for SGD learning
   rate x momentum in ``GRID`` (the recipe's 0.05 x 0.9 first);
3. after the clustered table's recipe (``pfednet_clustered.get_config``).

The recipe is chosen on (1)-(3)'s training-set numbers only; test accuracy
is recorded beside them, for the reader, and was not a criterion.
"""

import json
import os

from absl import app
from absl import flags
import numpy as np

from experiments import pfednet_clustered_table
from experiments.configs import pfednet_cls
from fedhelp_jax import diagnostics
from fedhelp_jax import experiment
from fedhelp_jax import reporting
from fedhelp_jax import runner

_OUT = flags.DEFINE_string(
    'out', 'experiments/results/pfednet_clustered/recipe.json', 'Output.')
_SETUP = flags.DEFINE_enum('setup', None, ['pfednet_cls', 'clustered_labels'],
                           'With --markdown_only: the rows of one setup.')
_MARKDOWN_ONLY = flags.DEFINE_boolean(
    'markdown_only', False, 'Print the table of an existing --out, no runs.')

# (learning rate, momentum): the pfednet_cls recipe's first.
GRID = ((0.05, 0.9), (0.05, 0.0), (0.02, 0.0), (0.005, 0.9))
SETUPS = {'pfednet_cls': ('fedavg', 'pfednet'),
          'clustered_labels': ('fedavg', 'local', 'pfednet')}


def base_config(setup: str, method: str):
  if setup == 'pfednet_cls':
    config = pfednet_cls.get_config(method)
    config.seed = 0
    return config
  return pfednet_clustered_table.method_config(method, 'labels', 0, None)


def measure(config, seed: int = 0) -> dict:
  """Trains ``config`` once; its dead units, training loss, accuracy."""
  raw = experiment.load_raw(config)
  fed = experiment.prepare_federation(config, raw)._replace(seed=seed)
  program = runner.build_program(config, fed.task, fed.groups, fed.info)
  (result,) = runner.run(program, [fed], rounds=int(config.rounds),
                         eval_every=int(config.eval_every), nonfinite='stop')
  dead = diagnostics.dead_units(
      program.alg, fed.groups, result.state,
      {g: {'x': d['x'], 'n': d['n']} for g, d in fed.fed.items()},
      strategy=program.strategy.name, chunk_size=program.strategy.chunk_size,
      num_real=fed.info.get('num_real_clients'))
  return {'dead_units': {g: v['mean'] for g, v in dead.items()},
          'train_loss': {g: float(v[-1]) for g, v in
                         result.train_loss.items()},
          'test_accuracy': result.final['summary']['all']['accuracy']}


def markdown(record: dict, setup: str | None = None) -> str:
  """The table of a ``recipe.json``: one row per measurement (of
  ``setup`` only, when given)."""
  lines = ['| setup | stage | method | lr | momentum | dead units (per group) '
           '| training loss (per group) | test accuracy |',
           '|---|---|---|---|---|---|---|---|']
  for r in record['rows']:
    if setup and r['setup'] != setup:
      continue
    stage = r['stage'] + (f" (training seed {r['train_seed']})"
                          if 'train_seed' in r else '')
    dead = ', '.join(f'{g} {v:.2f}' for g, v in r['dead_units'].items())
    loss = ', '.join(f'{g} {v:.3f}' for g, v in r['train_loss'].items())
    lr = r.get('lr', 0.0)
    momentum = r.get('momentum', '')
    lines.append(f"| {r['setup']} | {stage} | {r['method']} | {lr:g} | "
                 f"{momentum} | {dead} | {loss} | {r['test_accuracy']:.4f} |")
  return '\n'.join(lines)


def main(argv):
  del argv
  if _MARKDOWN_ONLY.value:
    with open(_OUT.value) as f:
      print(markdown(json.load(f), _SETUP.value))
    return
  rows = []

  def record(row):
    rows.append(row)
    print(row, flush=True)

  for setup, methods in SETUPS.items():
    config = base_config(setup, methods[0])
    config.hparams.lr, config.rounds, config.eval_every = 0.0, 1, 1
    for seed in range(3):
      record({'setup': setup, 'stage': 'init', 'method': methods[0],
              'train_seed': seed, **measure(config, seed)})
    for method in methods:
      for lr, momentum in GRID:
        config = base_config(setup, method)
        if setup != 'pfednet_cls':
          # The clustered data at pfednet_cls's length (15 x 5 steps).
          config.rounds, config.eval_every = 15, 5
          config.local.local_steps = 5
        config.hparams.lr, config.hparams.momentum = lr, momentum
        record({'setup': setup, 'stage': 'pfednet_cls length',
                'method': method, 'lr': lr, 'momentum': momentum,
                **measure(config)})
      if setup == 'clustered_labels':
        config = base_config(setup, method)
        record({'setup': setup, 'stage': 'clustered recipe',
                'method': method, 'lr': float(config.hparams.lr),
                'momentum': float(config.hparams.momentum),
                'rounds': int(config.rounds),
                'local_steps': int(config.local.local_steps),
                **measure(config)})
  init = [np.mean(list(r['dead_units'].values())) for r in rows
          if r['stage'] == 'init']
  os.makedirs(os.path.dirname(_OUT.value), exist_ok=True)
  reporting.write_json(_OUT.value, {
      'data_seed': 0, 'grid': GRID, 'rows': rows,
      'dead_at_init_range': [float(min(init)), float(max(init))]})


if __name__ == '__main__':
  app.run(main)
