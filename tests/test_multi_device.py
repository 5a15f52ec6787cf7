"""Data parallel over a mesh of 4 CPU devices gives the single-device
losses (run in a subprocess: the device count is fixed at start-up)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]

SCRIPT = r"""
import json, jax, jax.numpy as jnp, numpy as np
import diffpool_jax as dp
from diffpool_jax.datasets import choose_buckets, synthetic_hierarchical
from diffpool_jax.engine import pipeline, trainer
assert jax.device_count() == 4
dataset = synthetic_hierarchical(num_graphs=32, communities=(2, 3),
                                 community_size=(3, 5), seed=0)
data = pipeline.device_data(dataset, choose_buckets(dataset.n_node, 2))
model = dp.DiffPool(dp.preset("paper", hidden_dim=8, embed_dim=8,
                              num_layers=2, pool_ratios=(0.5,)),
                    dataset.num_classes, dataset.max_nodes)
sample = trainer.gather_batch(data.buckets[0], jnp.arange(4))
graphs = [np.arange(0, 24), np.arange(8, 32)]
out = {}
for name, mesh in (("one", None), ("mesh", trainer.make_mesh(2, 4))):
  states = trainer.init_members(
      model, sample, [1, 2], trainer.default_hyper(model.config, 2, lr=1e-2,
                                                   aux_weight=1.0))
  states = trainer.shard_members(mesh, states)
  buckets = trainer.replicate(mesh, data.buckets)
  train, evaluate = trainer.compile_epochs(model, mesh)
  losses = []
  for epoch in range(2):
    schedule = pipeline.make_schedule(graphs, data, 4,
                                      np.random.default_rng(epoch))
    states, totals = train(states, buckets, schedule.bucket_ids,
                           schedule.indices, jnp.int32(0))
    losses.append(trainer.metrics_to_numpy(totals)["loss"].tolist())
  out[name] = losses
  if mesh is not None:
    out["mesh_shape"] = dict(mesh.shape)
    kernel = states.params["mlp1"]["kernel"]
    out["shard_members"] = kernel.sharding.shard_shape(kernel.shape)[0]
print(json.dumps(out))
"""


def test_four_devices_match_one():
  env = dict(os.environ,
             XLA_FLAGS="--xla_force_host_platform_device_count=4 "
             + os.environ.get("XLA_FLAGS", ""))
  done = subprocess.run([sys.executable, "-c", SCRIPT], cwd=REPO, env=env,
                        capture_output=True, text=True, timeout=600)
  assert done.returncode == 0, done.stderr[-3000:]
  out = json.loads(done.stdout.strip().splitlines()[-1])
  assert out["mesh_shape"] == {"members": 2, "batch": 2}
  assert out["shard_members"] == 1        # each device holds one member
  np.testing.assert_allclose(out["mesh"], out["one"], rtol=1e-5)
