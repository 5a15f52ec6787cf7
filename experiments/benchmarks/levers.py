"""Per-epoch cost of the accuracy levers against the default model.

  python -m experiments.benchmarks.levers --dataset ENZYMES \
      --data-root ../shared/data/tu

For each model (the `paper` preset, then each lever or preset named by
--models, e.g. `best` or `paper:conv=gin,input_readout=sum`), one member's
training epoch on 90 % of the graphs (batch 20, the session's buckets),
median seconds after a warm-up; the models' epochs alternate so that a
machine whose speed drifts slows them alike. Prints each median and its
ratio to the first model's; figures go to --out as JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np

from experiments.benchmarks.harness import write_report


def parse_model(text: str):
  """("best", {}) from "best"; ("paper", {"conv": "gin"}) from
  "paper:conv=gin" (values read as JSON, else as text)."""
  name, _, rest = text.partition(":")
  overrides = {}
  for item in filter(None, rest.split(",")):
    field, _, value = item.partition("=")
    try:
      overrides[field] = json.loads(value)
    except json.JSONDecodeError:
      overrides[field] = value
  return name, overrides


def epoch_runners(args):
  """{model text: one-member epoch function} on the same graphs."""
  from diffpool_jax.engine import epoch_runner
  from diffpool_jax.run import Run, RunConfig
  from diffpool_jax.run.members import load_dataset
  base = RunConfig(dataset=args.dataset, data_root=args.data_root,
                   protocol="paper", folds=2, epochs=1)
  dataset = load_dataset(base)
  count = dataset.num_graphs
  graphs = np.sort(np.random.default_rng(0).permutation(count)[
      :int(0.9 * count)])
  runners = {}
  for text in args.models:
    preset, overrides = parse_model(text)
    config = RunConfig(dataset=args.dataset, data_root=args.data_root,
                       preset=preset, model=overrides, protocol="paper",
                       folds=2, epochs=args.run_epochs)
    session = Run(config, "runs/levers_benchmark_unused",
                  dataset=dataset).session
    runners[text] = (epoch_runner(session, [graphs])[0], session.effort)
  return runners


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--dataset", default="ENZYMES")
  parser.add_argument("--data-root")
  parser.add_argument("--models", nargs="+",
                      default=["paper", "paper:conv=gin,input_norm=true",
                               "paper:input_readout=sum", "best"])
  parser.add_argument("--repeats", type=int, default=5)
  parser.add_argument("--run-epochs", type=int, default=150,
                      help="each model is compiled with the effort the cost "
                      "model picks for a run of this many epochs (the "
                      "fair ablations ran 150)")
  parser.add_argument("--out", default="runs/levers_benchmark.json")
  args = parser.parse_args(argv)
  runners = epoch_runners(args)
  for run, _ in runners.values():              # warm-up
    run()
  seconds = {text: [] for text in runners}
  for _ in range(args.repeats):
    for text, (run, _) in runners.items():
      start = time.perf_counter()
      run()
      seconds[text].append(time.perf_counter() - start)
  first = float(np.median(seconds[args.models[0]]))
  figures = {"dataset": args.dataset, "repeats": args.repeats,
             "run_epochs": args.run_epochs, "models": {
                 text: {"median_epoch_seconds": float(np.median(values)),
                        "ratio_to_first": float(np.median(values)) / first,
                        "compile_effort": runners[text][1]}
                 for text, values in seconds.items()}}
  for text, row in figures["models"].items():
    print(f"{args.dataset}  {text:45s} {row['median_epoch_seconds']:.3f} s"
          f"  x{row['ratio_to_first']:.2f}  (compile effort "
          f"{row['compile_effort']}, as a {args.run_epochs}-epoch run "
          "picks)")
  write_report(args.out, figures)
  return 0


if __name__ == "__main__":
  sys.exit(main())
