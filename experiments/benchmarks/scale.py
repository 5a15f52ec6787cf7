"""Scale benchmark: per-graph against fixed cluster counts on one data set.

  python -m experiments.benchmarks.scale --dataset DD \
      --data-root ../shared/data/tu

For each cluster setting (default: the `paper` preset's per-graph counts,
fixed counts from the largest graph, as PyG and Errica et al. do, and from
the median graph, what earlier README rows used for D&D), in
a child process of its own so that its peak RSS is its own: the size
buckets, the first-level form and cluster slots of each bucket, XLA's
memory estimate of one member's training program (its largest step),
one member's train-epoch time (median after warm-up, on 90 % of the
graphs, batch 20, at --compile-effort: "auto" is what a 1-epoch run
picks), and peak RSS. A setting whose estimate exceeds
--max-gib is reported, not run; one that overruns --timeout is reported
with its estimate. Also prints the per-entry cost of the
edge-list form against the dense form measured here (the constant behind
`datasets.sparse_by_cost`). Figures go to --out as JSON.

Besides TU names, --dataset takes two generated stand-ins for the large
social sets of the fair comparison (no node features, so degree one-hot):
"social-sparse" (2,000 thread-like graphs, median 305 nodes, largest 3,782,
about 2.3 entries per node, as REDDIT-BINARY's published statistics) and
"social-dense" (5,000 ego networks, median 52 nodes, largest 492, most of
N^2 filled, as COLLAB's).
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from diffpool_jax.engine.compile_effort import EFFORTS
from experiments.benchmarks.harness import (GIB, emit, median_seconds,
                                            peak_rss_gib, run_child,
                                            write_report)

SETTINGS = {
    "per_graph": {},
    "fixed_max": {"cluster_reference": "max"},
    "fixed_p90": {"cluster_reference": "p90"},
    "fixed_median": {"cluster_reference": "median"},
}


def undirected(pairs: np.ndarray) -> np.ndarray:
  """[E, 2] sorted unique directed entries of undirected pairs, no loops."""
  pairs = pairs[pairs[:, 0] != pairs[:, 1]]
  both = np.concatenate([pairs, pairs[:, ::-1]])
  return np.unique(both, axis=0)


def graph_sizes(rng, count: int, median: float, spread: float, smallest: int,
                largest: int) -> np.ndarray:
  """Log-normal node counts, clipped, with the largest size present."""
  sizes = np.exp(rng.normal(np.log(median), spread, count)).round()
  sizes = np.clip(sizes, smallest, largest).astype(np.int64)
  sizes[np.argmax(sizes)] = largest
  return sizes


def thread_graph(rng, n: int) -> np.ndarray:
  """A discussion-thread-like tree (replies favour early posts), plus a few
  extra edges: about 2.3 entries per node."""
  child = np.arange(1, n)
  parent = np.floor(rng.random(n - 1) ** 2 * child).astype(np.int64)
  extra = rng.integers(0, n, size=(max(n // 10, 1), 2))
  return undirected(np.concatenate([np.stack([child, parent], 1), extra]))


def ego_graph(rng, n: int) -> np.ndarray:
  """A collaboration ego network: a few overlapping dense groups."""
  groups = rng.integers(0, rng.integers(1, 4), size=n)
  same = groups[:, None] == groups[None, :]
  linked = rng.random((n, n)) < np.where(same, 0.9, 0.05)
  return undirected(np.argwhere(np.triu(linked, 1)))


def stand_in(name: str, seed: int = 0):
  """A generated set with the size and density distribution of a large
  social TU set (see the module docstring)."""
  from diffpool_jax.datasets import GraphDataset
  rng = np.random.default_rng(seed)
  if name == "social-sparse":
    sizes = graph_sizes(rng, 2000, 305, 0.85, 6, 3782)
    edges = [thread_graph(rng, int(n)) for n in sizes]
  else:
    sizes = graph_sizes(rng, 5000, 52, 0.75, 32, 492)
    edges = [ego_graph(rng, int(n)) for n in sizes]
  labels = rng.integers(0, 2, len(sizes))
  dataset = GraphDataset(
      name=name, n_node=sizes, edges=edges, labels=labels,
      label_values=np.arange(2), feature_kind="none",
      features=[np.zeros((int(n), 1), np.float32) for n in sizes])
  return dataset.with_features("default")


STAND_INS = ("social-sparse", "social-dense")


def child(args) -> dict:
  import jax
  from diffpool_jax.engine import epoch_runner
  from diffpool_jax.run import Run, RunConfig
  from diffpool_jax.run.loop import run_description
  # Run() builds two members' states; only the first one is timed.

  overrides = dict(SETTINGS[args.setting])
  if args.max_clusters is not None:
    overrides["model"] = {"max_clusters": (None if args.max_clusters == 0
                                           else args.max_clusters)}
  if args.hidden_dim is not None:
    overrides["model"] = {**overrides.get("model", {}),
                          "hidden_dim": args.hidden_dim,
                          "embed_dim": args.hidden_dim}
  config = RunConfig(dataset=args.dataset, data_root=args.data_root,
                     preset=args.preset, protocol="paper", folds=2,
                     epochs=1, batch_size=args.batch_size,
                     compile_effort=args.compile_effort, **overrides)
  start = time.perf_counter()
  given = stand_in(args.dataset) if args.dataset in STAND_INS else None
  run = Run(config, "runs/scale_benchmark_unused", dataset=given)
  session = run.session
  # One member, trained on a random 90 % of the graphs.
  count = run.dataset.num_graphs
  train_graphs = np.sort(np.random.default_rng(0).permutation(count)[
      :int(0.9 * count)])
  epoch, compiled = epoch_runner(session, [train_graphs])
  setup_seconds = time.perf_counter() - start
  needed = compiled["program_bytes"]
  result = {
      "setting": args.setting, "dataset": args.dataset,
      "compile_effort": session.effort,
      "graphs": int(run.dataset.num_graphs),
      "train_graphs": int(len(train_graphs)),
      "buckets": session.buckets.tolist(),
      "graphs_per_bucket": np.bincount(
          session.data.which, minlength=len(session.buckets)).tolist(),
      "first_level": ["edges" if s else "dense" for s in session.sparse],
      "cluster_mode": run_description(run)["cluster_mode"],
      "cluster_slots": session.cluster_slots(),
      "parameters": int(sum(x.size for x in jax.tree_util.tree_leaves(
          session.states.params))) // len(run.members),
      "xla_gib": needed / GIB,
      "setup_seconds": setup_seconds,
  }
  # Printed now so that the parent has it even if the epoch overruns.
  emit(result)
  if needed > args.max_gib * GIB:
    result["ran"] = False
    result["why_not"] = (f"XLA estimates {needed / GIB:.1f} GiB for one "
                         f"member, more than --max-gib {args.max_gib}")
  else:
    result["ran"] = True
    result["epoch_seconds"] = median_seconds(epoch, args.repeats)
  result["peak_rss_gib"] = peak_rss_gib()
  return result


def entry_cost(repeats: int = 15) -> list:
  """Time of A @ X (forward and gradient) per adjacency entry, edge list
  over dense, for a batch of 20 random graphs, width 64."""
  import jax
  import jax.numpy as jnp
  from diffpool_jax.adjacency import EdgeList, matmul
  rng = np.random.default_rng(0)
  grad = jax.jit(jax.grad(lambda x, a: jnp.sum(jnp.tanh(matmul(a, x)))))
  rows = []
  for nodes in (64, 128, 256, 512):
    x = jnp.asarray(rng.normal(size=(20, nodes, 64)), jnp.float32)
    dense = jnp.asarray(rng.random((20, nodes, nodes)) < 0.1, jnp.float32)
    dense_seconds = median_seconds(
        lambda: grad(x, dense).block_until_ready(), repeats)
    for entries in (4 * nodes, 16 * nodes):
      index = lambda: jnp.asarray(rng.integers(0, nodes, (20, entries)),
                                  jnp.int32)
      edges = EdgeList(index(), index(), jnp.ones((20, entries)), nodes)
      sparse_seconds = median_seconds(
          lambda: grad(x, edges).block_until_ready(), repeats)
      rows.append({"nodes": nodes, "entries": entries,
                   "cost_per_entry": (sparse_seconds / entries)
                   / (dense_seconds / nodes**2)})
  return rows


def setting_figures(setting: str, args) -> dict:
  """One setting measured in its own child process (see child)."""
  flags = ["--setting", setting, "--dataset", args.dataset,
           "--preset", args.preset, "--batch-size", args.batch_size,
           "--compile-effort", args.compile_effort,
           "--repeats", args.repeats, "--max-gib", args.max_gib]
  if args.data_root is not None:
    flags += ["--data-root", args.data_root]
  if args.max_clusters is not None:
    flags += ["--max-clusters", args.max_clusters]
  if args.hidden_dim is not None:
    flags += ["--hidden-dim", args.hidden_dim]
  return {"setting": setting, **run_child("experiments.benchmarks.scale",
                                          flags, timeout=args.timeout)}


def print_report(results: list, costs: list) -> None:
  for r in results:
    print(f"\n{r['setting']}:", end=" ")
    if "buckets" not in r:
      print(f"failed: {r['why_not']}")
      continue
    print(f"{r['dataset']}, {r['train_graphs']} of {r['graphs']} graphs "
          f"trained per epoch, {r['parameters']:,} parameters "
          f"({r['cluster_mode']} clusters, {r['compile_effort']} compile "
          "effort)")
    print("  bucket  graphs  first level  cluster slots")
    for size, count, form, slots in zip(r["buckets"], r["graphs_per_bucket"],
                                        r["first_level"], r["cluster_slots"]):
      print(f"  {size:>6}  {count:>6}  {form:>11}  {slots}")
    line = f"  XLA estimate of one member's program: {r['xla_gib']:.2f} GiB"
    if r["ran"]:
      line += (f"; one member's train epoch {r['epoch_seconds']:.2f} s; "
               f"peak RSS {r['peak_rss_gib']:.2f} GiB")
    else:
      line += f"; not run: {r['why_not']}"
    print(line)
  if costs:
    print("\nedge-list cost per entry / dense cost per entry (A @ X with "
          "gradient, batch 20, width 64):")
    for row in costs:
      print(f"  N={row['nodes']:>4} entries/graph={row['entries']:>5}: "
            f"{row['cost_per_entry']:.1f}")


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--dataset", default="DD")
  parser.add_argument("--data-root", help="folder of TU sets (not needed "
                      f"for {' / '.join(STAND_INS)})")
  parser.add_argument("--preset", default="paper")
  parser.add_argument("--settings", nargs="+",
                      default=["per_graph", "fixed_max", "fixed_median"],
                      choices=sorted(SETTINGS))
  parser.add_argument("--max-clusters", type=int,
                      help="cap of per-graph counts (0: none; default: the "
                      "preset's)")
  parser.add_argument("--hidden-dim", type=int)
  parser.add_argument("--batch-size", type=int, default=20)
  parser.add_argument("--compile-effort", default="auto",
                      choices=EFFORTS,
                      help="auto: what a 1-epoch run picks")
  parser.add_argument("--repeats", type=int, default=3)
  parser.add_argument("--max-gib", type=float, default=16.0,
                      help="do not run a setting whose XLA estimate is "
                      "larger")
  parser.add_argument("--timeout", type=float, default=300,
                      help="seconds a setting may take (compile, warm-up "
                      "and timed epochs)")
  parser.add_argument("--no-entry-cost", action="store_true")
  parser.add_argument("--out", default="runs/scale_benchmark.json")
  parser.add_argument("--setting", help="(internal) run one setting here")
  args = parser.parse_args(argv)
  if args.setting:
    emit(child(args))
    return 0
  results = [setting_figures(setting, args) for setting in args.settings]
  costs = [] if args.no_entry_cost else entry_cost()
  print_report(results, costs)
  write_report(args.out, {"settings": results, "entry_cost": costs})
  return 0


if __name__ == "__main__":
  sys.exit(main())
