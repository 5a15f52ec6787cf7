"""Peak memory and time of one training step, dense vs sparse first level,
on a batch of the largest graphs of a data set (default: D&D).

  python -m experiments.benchmarks.memory --data-root ../shared/data/tu

Each form runs in its own child process so that its peak RSS is its own.
XLA's compiled memory analysis (arguments + temporaries) is printed too; a
form that does not fit is reported as such instead of being run (see
--max-gib).
"""

from __future__ import annotations

import argparse
import sys
import time

from experiments.benchmarks.harness import (GIB, emit, median_seconds,
                                            peak_rss_gib, run_child,
                                            write_report)


def child(args) -> dict:
  import functools
  import jax
  import jax.numpy as jnp
  import numpy as np
  import diffpool_jax as dp
  from diffpool_jax.datasets import load_tu
  from diffpool_jax.engine import trainer
  from diffpool_jax.run import RunConfig

  dataset = load_tu(args.dataset, root=args.data_root)
  largest = np.argsort(dataset.n_node)[-args.batch_size:]
  num_nodes = int(dataset.n_node.max())
  build = dp.sparse_batch if args.form == "sparse" else dp.dense_batch
  batch = build([dataset.edges[g] for g in largest],
                [dataset.features[g] for g in largest],
                dataset.labels[largest], num_nodes)
  reference = None if args.reference == "per_graph" else args.reference
  config = RunConfig(dataset=args.dataset, preset=args.preset,
                     cluster_reference=reference)
  model = dp.DiffPool(config.model_config(), dataset.num_classes,
                      config.model_nodes(dataset.n_node))
  batch = jax.device_put(batch)
  state = trainer.init_members(
      model, jax.tree_util.tree_map(lambda v: v[:2], batch), [0],
      trainer.default_hyper(model.config, 1, aux_weight=1.0))
  step = jax.jit(jax.vmap(functools.partial(trainer.train_step, model),
                          in_axes=(0, 0, None)))
  members_batch = jax.tree_util.tree_map(lambda v: v[None], batch)
  start = time.perf_counter()
  compiled = step.lower(state, members_batch, jnp.int32(0)).compile()
  compile_seconds = time.perf_counter() - start
  memory = compiled.memory_analysis()
  needed = (memory.argument_size_in_bytes + memory.output_size_in_bytes +
            memory.temp_size_in_bytes)
  result = {"form": args.form, "graphs": len(largest),
            "num_nodes": num_nodes,
            "entries": int(sum(len(dataset.edges[g]) for g in largest)),
            "clusters": list(model.slot_counts(num_nodes)),
            "xla_argument_gib": memory.argument_size_in_bytes / GIB,
            "xla_temp_gib": memory.temp_size_in_bytes / GIB,
            "xla_total_gib": needed / GIB,
            "compile_seconds": compile_seconds}
  if needed > args.max_gib * GIB:
    result["ran"] = False
    result["why_not"] = (f"XLA needs {needed / GIB:.1f} GiB, more than "
                         f"--max-gib {args.max_gib}")
  else:
    result["ran"] = True
    result["step_seconds"] = median_seconds(
        lambda: jax.block_until_ready(
            compiled(state, members_batch, jnp.int32(0))), args.repeats)
  result["peak_rss_gib"] = peak_rss_gib()
  return result


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--data-root", required=True)
  parser.add_argument("--dataset", default="DD")
  parser.add_argument("--preset", default="paper")
  parser.add_argument("--reference", default="per_graph",
                      help="per_graph (the preset's per-graph counts), or a "
                      "fixed cluster reference size (see --cluster-reference "
                      "of experiments.train)")
  parser.add_argument("--batch-size", type=int, default=20)
  parser.add_argument("--repeats", type=int, default=3)
  parser.add_argument("--max-gib", type=float, default=16.0,
                      help="do not run a form whose XLA footprint is larger")
  parser.add_argument("--out", default="runs/memory_benchmark.json")
  parser.add_argument("--form", choices=["dense", "sparse"],
                      help="(internal) run one form in this process")
  args = parser.parse_args(argv)
  if args.form:
    emit(child(args))
    return 0
  given = [a for a in (sys.argv[1:] if argv is None else argv)]
  results = [{"form": form, **run_child("experiments.benchmarks.memory",
                                        ["--form", form, *given])}
             for form in ("sparse", "dense")]
  for r in results:
    line = f"{r['form']:>6}: "
    if "xla_total_gib" in r:
      line += (f"{r['graphs']} graphs x {r['num_nodes']} nodes, clusters "
               f"{r['clusters']}; XLA arguments {r['xla_argument_gib']:.2f} "
               f"GiB + temporaries {r['xla_temp_gib']:.2f} GiB; ")
    if r.get("ran"):
      line += (f"peak RSS {r['peak_rss_gib']:.2f} GiB; step "
               f"{r['step_seconds']:.2f} s")
    else:
      line += f"not run: {r['why_not']}"
    print(line)
  write_report(args.out, results)
  return 0


if __name__ == "__main__":
  sys.exit(main())
