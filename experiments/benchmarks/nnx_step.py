"""The NNX classifier's training step, and the linen one's on the same
batch, timed in one process: median seconds per jitted step after
warm-up. Compare two checkouts (0.1's hand-written NNX modules against
the NNX face derived from the linen definition) by running it with each
on PYTHONPATH, alternately, on an idle machine:

  PYTHONPATH=OLD_CHECKOUT python experiments/benchmarks/nnx_step.py
  python experiments/benchmarks/nnx_step.py

It uses only what both expose: nnx.DiffPool, dp.preset, dp.batches.
"""

from __future__ import annotations

import argparse
import json
import time

import jax
import numpy as np
import optax
from flax import nnx as fnnx

import diffpool_jax as dp
from diffpool_jax import nnx
from diffpool_jax.datasets import synthetic_hierarchical


def median_step_seconds(step, repeats: int) -> float:
  """Median wall time of `step()` (blocking) over `repeats`, after two
  warm-up calls (the compile, then one more)."""
  step(), step()
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    step()
    times.append(time.perf_counter() - start)
  return float(np.median(times))


def main(argv=None) -> dict:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--preset", default="paper")
  parser.add_argument("--batch", type=int, default=20)
  parser.add_argument("--width", type=int, default=64)
  parser.add_argument("--repeats", type=int, default=50)
  args = parser.parse_args(argv)
  data = synthetic_hierarchical(num_graphs=args.batch, seed=0)
  batch = jax.device_put(next(dp.batches(data, np.arange(args.batch),
                                         args.batch)))
  config = dp.preset(args.preset, hidden_dim=args.width,
                     embed_dim=args.width)

  model = nnx.DiffPool(config, data.num_node_features, data.num_classes,
                       max_nodes=data.max_nodes, rngs=fnnx.Rngs(0))
  optimizer = fnnx.Optimizer(model, optax.adam(1e-3), wrt=fnnx.Param)

  def nnx_loss(model):
    logits, levels = model(batch.x, batch.adj, batch.node_mask, train=True)
    return optax.softmax_cross_entropy_with_integer_labels(
        logits, batch.labels).mean() + dp.auxiliary_loss(levels,
                                                         config.weights)

  @fnnx.jit
  def nnx_step(model, optimizer):
    loss, grads = fnnx.value_and_grad(nnx_loss)(model)
    optimizer.update(model, grads)
    return loss

  linen = dp.DiffPool(config, data.num_classes, data.max_nodes)
  variables = linen.init(jax.random.key(0), batch.x, batch.adj,
                         batch.node_mask)
  transform = optax.adam(1e-3)
  linen_state = [variables, transform.init(variables["params"])]

  def linen_loss(params, stats):
    (logits, levels), updates = linen.apply(
        {"params": params, "batch_stats": stats}, batch.x, batch.adj,
        batch.node_mask, train=True, mutable=["batch_stats"])
    loss = optax.softmax_cross_entropy_with_integer_labels(
        logits, batch.labels).mean() + dp.auxiliary_loss(levels,
                                                         config.weights)
    return loss, updates["batch_stats"]

  @jax.jit
  def linen_step(variables, opt_state):
    (loss, stats), grads = jax.value_and_grad(linen_loss, has_aux=True)(
        variables["params"], variables["batch_stats"])
    updates, opt_state = transform.update(grads, opt_state)
    params = optax.apply_updates(variables["params"], updates)
    return {"params": params, "batch_stats": stats}, opt_state, loss

  def run_linen():
    *linen_state[:], loss = linen_step(*linen_state)
    jax.block_until_ready(loss)

  figures = {
      "nnx_step_s": median_step_seconds(
          lambda: jax.block_until_ready(nnx_step(model, optimizer)),
          args.repeats),
      "linen_step_s": median_step_seconds(run_linen, args.repeats),
      "nnx_module": type(model).__mro__[1].__module__ + "."
                    + type(model).__mro__[1].__name__,
      "batch": args.batch, "max_nodes": data.max_nodes,
      "preset": args.preset, "width": args.width}
  figures["nnx_over_linen"] = figures["nnx_step_s"] / figures["linen_step_s"]
  print(json.dumps(figures))
  return figures


if __name__ == "__main__":
  main()
