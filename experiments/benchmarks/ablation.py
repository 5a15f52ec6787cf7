"""Measures the speed optimisations recorded in PERFORMANCE.md (beside it).

  python -m experiments.benchmarks.ablation --data-root ../shared/data/tu

All timings are medians after a warm-up call, one member, batch 20, the
`pyg` preset, float32:
  1. a training epoch of ENZYMES (fold 0) padded to the largest graph vs
     padded to size buckets;
  2. the pooling op (forward + backward) with the link loss through the
     trace identity vs through the explicit N x N product S S^T;
  3. a training epoch of PROTEINS with its first level dense in every
     bucket, with the default rule (per bucket by cost, `sparse_by_cost`),
     and with edge lists in every bucket.
Writes the figures to JSON (--out).
"""

from __future__ import annotations

import argparse
import sys

import jax
import jax.numpy as jnp
import numpy as np

import diffpool_jax as dp
from diffpool_jax.datasets import (bucket_entry_slots, choose_buckets, load_tu,
                                   sparse_by_cost, stratified_folds)
from diffpool_jax.engine import pipeline, trainer
from experiments.benchmarks.harness import median_seconds, write_report
from experiments.benchmarks.pyg import BATCH


def epoch_seconds(dataset, buckets, sparse, repeats: int) -> float:
  """Median seconds of one training epoch on fold 0's training graphs."""
  model = dp.DiffPool(dp.preset("pyg"), dataset.num_classes,
                      dataset.max_nodes)
  data = pipeline.device_data(dataset, buckets, sparse)
  sample = trainer.gather_batch(data.buckets[0], jnp.arange(BATCH))
  states = trainer.init_members(
      model, sample, [0], trainer.default_hyper(model.config, 1,
                                                aux_weight=0.0))
  train, _ = trainer.compile_epochs(model)
  fold = stratified_folds(dataset.labels, 10, seed=0,
                          validation_fraction=0.0)[0]
  schedule = pipeline.make_schedule([fold.train], data, BATCH,
                                    np.random.default_rng(0))

  def run():
    nonlocal states
    states, totals = train(states, data.buckets, schedule.bucket_ids,
                           schedule.indices, np.int32(0))
    jax.block_until_ready(totals)

  return median_seconds(run, repeats)


def explicit_link_loss(adj, s, n_node):
  """Reference form: ||A - S S^T||_F / n^2 with the N x N product formed."""
  residual = adj - jnp.einsum("bnk,bmk->bnm", s, s)
  norms = jnp.sqrt(jnp.sum(residual * residual, axis=(1, 2)))
  return jnp.mean(norms / n_node.astype(norms.dtype) ** 2)


def link_loss_seconds(nodes: int, clusters: int, repeats: int) -> dict:
  """Pooling forward + backward, trace identity vs explicit S S^T."""
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.normal(size=(BATCH, nodes, 64)), jnp.float32)
  adj = jnp.asarray(rng.random((BATCH, nodes, nodes)) < 0.05, jnp.float32)
  adj = jnp.maximum(adj, jnp.swapaxes(adj, 1, 2))
  logits = jnp.asarray(rng.normal(size=(BATCH, nodes, clusters)),
                       jnp.float32)
  mask = jnp.ones((BATCH, nodes), bool)
  n_node = jnp.full((BATCH,), nodes)

  def trace_form(s_logits):
    out = dp.dense_diff_pool(x, adj, s_logits, mask)
    return jnp.sum(out.x) + jnp.sum(out.adj) + out.link_loss

  def explicit_form(s_logits):
    out = dp.dense_diff_pool(x, adj, s_logits, mask)
    s = jax.nn.softmax(s_logits, axis=-1)
    return (jnp.sum(out.x) + jnp.sum(out.adj)
            + explicit_link_loss(adj, s, n_node))

  timings = {}
  for name, loss in (("trace", trace_form), ("explicit", explicit_form)):
    grad = jax.jit(jax.grad(loss))
    timings[name] = median_seconds(
        lambda: grad(logits).block_until_ready(), repeats)
  return timings


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--data-root", required=True)
  parser.add_argument("--repeats", type=int, default=3)
  parser.add_argument("--buckets", type=int, default=5,
                      help="size buckets of the bucketed epochs")
  parser.add_argument("--out", default="runs/ablation.json")
  args = parser.parse_args(argv)
  report = {"device": str(jax.devices()[0]), "batch": BATCH}

  enzymes = load_tu("ENZYMES", root=args.data_root)
  one = np.array([enzymes.max_nodes])
  five = choose_buckets(enzymes.n_node, args.buckets)
  report["enzymes_epoch_seconds"] = {
      "pad_to_max": epoch_seconds(enzymes, one, False, args.repeats),
      "buckets": epoch_seconds(enzymes, five, False, args.repeats),
      "bucket_sizes": five.tolist()}
  print("ENZYMES epoch:", report["enzymes_epoch_seconds"], flush=True)

  largest = int(five[-1])
  report["link_loss_seconds"] = {
      "nodes": largest, "clusters": int(np.ceil(0.25 * largest)),
      **link_loss_seconds(largest, int(np.ceil(0.25 * largest)),
                          args.repeats)}
  print("link loss:", report["link_loss_seconds"], flush=True)

  proteins = load_tu("PROTEINS", root=args.data_root)
  buckets = choose_buckets(proteins.n_node, args.buckets)
  rule = sparse_by_cost(buckets, bucket_entry_slots(
      proteins.edges, proteins.n_node, buckets))
  report["proteins_epoch_seconds"] = {
      "bucket_sizes": buckets.tolist(),
      "all_dense": epoch_seconds(proteins, buckets, False, args.repeats),
      "default_rule": epoch_seconds(proteins, buckets, rule, args.repeats),
      "all_sparse": epoch_seconds(proteins, buckets, True, args.repeats)}
  print("PROTEINS epoch:", report["proteins_epoch_seconds"], flush=True)

  write_report(args.out, report)
  return 0


if __name__ == "__main__":
  sys.exit(main())
