# Copyright 2026 The fedhelp_jax Authors. Licensed under the Apache License 2.0.
"""Every silo scored on one common test set (``runner.evaluate_common``,
``config.common_test``) equals a direct evaluation of the trained models."""

import jax
import numpy as np

from fedhelp_jax import experiment
from fedhelp_jax import metrics as metrics_lib
from fedhelp_jax import models
from fedhelp_jax import runner
from fedhelp_jax import types
from tests import test_sweep


def test_common_test_scoring_equals_direct_evaluation():
  config = test_sweep._tiny(algorithm='fedavg', rounds=2)  # pylint: disable=protected-access
  raw = experiment.load_raw(config)
  fed = experiment.prepare_federation(config, raw)
  common = runner.CommonTest(raw['test_x'][:150], raw['test_y'][:150])
  program = runner.build_program(config, fed.task, fed.groups, fed.info)
  (res,) = runner.run(program, [fed._replace(seed=0)],
                      rounds=2, eval_every=1, common_test=common)
  state = res.state
  got = res.final_common
  assert got['n_test_images'] == 150
  assert [c['round'] for c in res.common_correct] == [1, 2]
  accuracy = []
  for g in fed.groups:
    module = program.alg.eval_model(g)
    for c in range(len(fed.info['groups'][g])):
      client = jax.tree.map(lambda x, c=c: x[c], state.clients[g])
      variables = program.alg.eval_variables(types.SiloInput(
          g, client, program.alg.download(state.server).broadcast))
      out, _ = models.apply_model(module, variables, common.x, train=False)
      probs = np.asarray(fed.task.predict(out))
      direct = metrics_lib.classification_metrics(probs, common.y)
      correct = (np.argmax(probs, -1) == common.y).astype(np.uint8)
      np.testing.assert_array_equal(got['correct'][g][c], correct)
      accuracy.append(direct['accuracy'])
  np.testing.assert_allclose(got['clients']['accuracy'], accuracy, atol=1e-9)
  # FedAvg evaluates every silo with the global model: the same images
  # give the same accuracy everywhere, unlike the silos' own test draws.
  assert np.ptp(got['clients']['accuracy']) == 0.0
  assert got['summary']['small']['accuracy'] == accuracy[-1]
