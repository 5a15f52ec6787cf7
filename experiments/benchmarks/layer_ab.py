"""Times the `pyg` preset's train step with two git revisions of
diffpool_jax/models/layers.py, alternating them in one process (this VM's speed
drifts between runs, so separate runs cannot resolve a few per cent).

  python -m experiments.benchmarks.layer_ab --data-root ../shared/data/tu \
      --dataset ENZYMES cdc1321 HEAD

Per size bucket: each revision's compiled train step on 20 graphs, the
minimum over rounds of 3 steps; the epoch estimate weights each bucket by
the steps the first of 10 folds' training graphs take there
(experiments/benchmarks/PERFORMANCE.md, rows 7-9).
"""

from __future__ import annotations

import argparse
import functools
import importlib.util
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

import diffpool_jax as dp
import diffpool_jax.models.classifier as model_module
from diffpool_jax.datasets import choose_buckets, load_tu, stratified_folds
from diffpool_jax.engine import pipeline, trainer

BATCH = 20


def layers_at(revision: str, folder: Path):
  """The layers module as it is at a git revision (diffpool_jax/layers.py
before the models/ room, 0.1)."""
  for where in ("diffpool_jax/models/layers.py", "diffpool_jax/layers.py"):
    shown = subprocess.run(["git", "show", f"{revision}:{where}"],
                           capture_output=True, text=True)
    if shown.returncode == 0:
      break
  else:
    raise FileNotFoundError(f"no layers module at revision {revision}")
  source = shown.stdout
  path = folder / f"layers_{len(list(folder.iterdir()))}.py"
  path.write_text(source)
  spec = importlib.util.spec_from_file_location(path.stem, path)
  module = importlib.util.module_from_spec(spec)
  sys.modules[spec.name] = module
  spec.loader.exec_module(module)
  return module


def compiled_steps(stack_class, dataset, data, max_nodes: int):
  """Per bucket: (compiled train step, state, batch) with that GNN stack
  (swapped into diffpool_jax.models.classifier while tracing, then put back)."""
  original = model_module.GNNStack
  model_module.GNNStack = stack_class
  try:
    return _compiled_steps(dataset, data, max_nodes)
  finally:
    model_module.GNNStack = original


def _compiled_steps(dataset, data, max_nodes: int):
  model = dp.DiffPool(dp.preset("pyg"), dataset.num_classes, max_nodes)
  step = jax.jit(functools.partial(trainer.train_step, model))
  steps = []
  for bucket in data.buckets:
    batch = trainer.gather_batch(bucket,
                                  jnp.arange(BATCH) % bucket.x.shape[0])
    states = trainer.init_members(
        model, batch, [0], trainer.default_hyper(model.config, 1,
                                                 aux_weight=0.0))
    state = jax.tree_util.tree_map(lambda v: v[0], states)
    compiled = step.lower(state, batch, jnp.int32(0)).compile()
    jax.block_until_ready(compiled(state, batch, jnp.int32(0)))
    steps.append((compiled, state, batch))
  return steps


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("revisions", nargs="+", help="git revisions to compare")
  parser.add_argument("--data-root", required=True)
  parser.add_argument("--dataset", default="ENZYMES")
  parser.add_argument("--max-nodes", type=int, default=150,
                      help="the model's reference size (PyG's usual 150)")
  parser.add_argument("--rounds", type=int, default=15)
  args = parser.parse_args(argv)

  dataset = load_tu(args.dataset, root=args.data_root)
  buckets = choose_buckets(dataset.n_node, 5)
  data = pipeline.device_data(dataset, buckets)
  train_graphs = stratified_folds(dataset.labels, 10, seed=0)[0].train
  steps_per_epoch = pipeline.steps_per_bucket([train_graphs], data.which,
                                              len(buckets), BATCH)
  with tempfile.TemporaryDirectory() as folder:
    steps = {rev: compiled_steps(layers_at(rev, Path(folder)).GNNStack,
                                 dataset, data, args.max_nodes)
             for rev in args.revisions}
  times = {rev: [[] for _ in buckets] for rev in args.revisions}
  for _ in range(args.rounds):
    for b in range(len(buckets)):
      for rev in args.revisions:
        compiled, state, batch = steps[rev][b]
        start = time.perf_counter()
        for _ in range(3):
          out = compiled(state, batch, jnp.int32(0))
        jax.block_until_ready(out)
        times[rev][b].append((time.perf_counter() - start) / 3)
  print(f"{args.dataset}, buckets {buckets.tolist()}, batch {BATCH}")
  for rev in args.revisions:
    best = [min(t) for t in times[rev]]
    epoch = float(np.dot(best, steps_per_epoch))
    print(f"{rev}: epoch estimate {epoch:.3f} s; step ms per bucket "
          + " ".join(f"{t * 1e3:.1f}" for t in best))
  return 0


if __name__ == "__main__":
  sys.exit(main())
