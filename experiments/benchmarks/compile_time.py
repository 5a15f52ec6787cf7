"""Time to first result: where a run's first seconds go, with a cold and a
warm persistent compilation cache.

  python -m experiments.benchmarks.compile_time --suite     # the scenarios
  python -m experiments.benchmarks.compile_time --suite --only mutag,long
  python -m experiments.benchmarks.compile_time --dataset ENZYMES \
      --data-root ../shared/data/tu \
      --splits ../shared/data/splits/ENZYMES_splits.json
  python -m experiments.benchmarks.compile_time --calibrate
  python -m experiments.benchmarks.compile_time --predict --dataset ENZYMES \
      --splits ../shared/data/splits/ENZYMES_splits.json
  python -m experiments.benchmarks.compile_time --tests

`--suite` runs each scenario of SCENARIOS as a whole command
(`python -m experiments.train ...`), cold (an empty cache folder of its
own) then warm (what the cold run left; "long" only cold), and prints its wall seconds,
setup, compile and training seconds (from results.json) against the
targets of issue 34; "proteins" runs in the cache that "enzymes" left
(shared programs), and "long" runs the 150-epoch ENZYMES fair run with
the new defaults and with the previous settings (`--compile-effort full
--exact-buckets`) one after the other. `--against DIR` runs every other
scenario in another checkout too, right after, and prints the ratios.
Without --suite, the command for
--dataset (or --main-job) is timed cold and warm. `--calibrate` measures,
per data set, bucket count and effort, the compile and epoch seconds that
the cost model of diffpool_jax.engine.compile_effort predicts, beside its
predictions; `--predict` prints what the cost model predicts and chooses
for 2, 10, 30 and 150 epochs of a 10-fold fair run. `--tests` times the default test suite.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from experiments.benchmarks.harness import write_report

REPO = Path(__file__).resolve().parents[2]
TU = "../shared/data/tu"
SPLITS = "../shared/data/splits"


def fair(name: str, epochs: int) -> list:
  """A fair run of 10 folds on Errica et al.'s splits."""
  return ["--dataset", name, "--data-root", TU, "--protocol", "fair",
          "--splits", f"{SPLITS}/{name}_splits.json", "--folds", "10",
          "--epochs", str(epochs)]


# name -> (flags, targets: {figure: at most these seconds}); figures are
# "cold" and "warm" (whole command), "warm_compile", "total" (compile +
# training of the cold run) and "previous" (the previous settings' total).
SCENARIOS = {
    "mutag": (["--dataset", "MUTAG", "--data-root", TU, "--folds", "2",
               "--epochs", "2"], {"cold": 12.0, "warm": 5.0}),
    "enzymes": (fair("ENZYMES", 1), {"cold": 20.0, "warm_compile": 6.0}),
    "proteins": (fair("PROTEINS", 1), {}),
    "main": ([], {"cold": 100.0}),
    "long": (fair("ENZYMES", 150), {"total": "previous"}),
}
PREVIOUS_SETTINGS = ["--compile-effort", "full", "--exact-buckets"]


def parse_args(argv):
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--suite", action="store_true",
                      help="the scenarios, cold and warm, against targets")
  parser.add_argument("--only", help="comma-separated scenario names")
  parser.add_argument("--against", type=Path,
                      help="another checkout (e.g. a git worktree of an "
                      "older commit) whose commands run right after each "
                      "scenario's, for ratios measured in one run")
  parser.add_argument("--dataset", default="ENZYMES")
  parser.add_argument("--data-root", default=TU)
  parser.add_argument("--splits", help="split file (fair protocol)")
  parser.add_argument("--protocol", default="fair")
  parser.add_argument("--preset", default="paper")
  parser.add_argument("--main-job", action="store_true",
                      help="time `python -m experiments.train` as it is")
  parser.add_argument("--calibrate", action="store_true",
                      help="measured against predicted compile and epoch "
                      "seconds")
  parser.add_argument("--predict", action="store_true",
                      help="the cost model's choice at 2, 10, 30 and 150 "
                      "epochs of a 10-fold fair run of --dataset")
  parser.add_argument("--tests", action="store_true",
                      help="time the default test suite instead")
  parser.add_argument("--out", default="runs/compile_time.json")
  return parser.parse_args(argv)


def timed_command(flags: list, out: Path, cache: Path,
                  repo: Path = REPO) -> dict:
  """Runs `python -m experiments.train FLAGS` once in the checkout `repo`;
  its wall time and results.json's timings (of the main run; a
  baseline's are added)."""
  line = [sys.executable, "-m", "experiments.train", *flags, "--out",
          str(out), "--quiet", "--overwrite", "--compile-cache", str(cache)]
  start = time.perf_counter()
  done = subprocess.run(line, cwd=repo, capture_output=True, text=True,
                        env={**os.environ, "PYTHONPATH": str(repo)})
  wall = time.perf_counter() - start
  if done.returncode != 0:
    raise SystemExit(f"the timed command failed:\n{done.stderr[-2000:]}")
  timing = {"command": line[1:], "command_seconds": wall, "setup": 0.0,
            "compile": 0.0, "training": 0.0, "runs": {}}
  for path in sorted(out.glob("**/results.json")):
    results = json.loads(path.read_text())
    run = {key: results.get(key, {"effort": "(before)"}) for key in (
        "setup_seconds", "compile_seconds", "compile_stages", "wall_seconds",
        "epochs_run", "buckets", "compile_effort", "score")}
    timing["runs"][results["preset"]] = run
    timing["setup"] += run["setup_seconds"]
    timing["compile"] += run["compile_seconds"]
    timing["training"] += run["wall_seconds"]
  return timing


def cold_and_warm(flags: list, folder: Path, cache: Path,
                  repo: Path = REPO, names=("cold", "warm")) -> dict:
  """The command cold (in `cache` as it is), then warm."""
  return {name: timed_command(flags, folder / name, cache, repo)
          for name in names}


def print_timing(name: str, timing: dict) -> None:
  print(f"  {name:<5} {timing['command_seconds']:7.1f} s command  "
        f"setup {timing['setup']:5.1f}  compile {timing['compile']:5.1f}  "
        f"training {timing['training']:6.1f}  ("
        + "; ".join(f"{p}: {r['compile_effort']['effort']}, buckets "
                    f"{r['buckets']}, {r['epochs_run']} epochs, "
                    f"{100 * r['score']:.1f} %"
                    for p, r in timing["runs"].items()) + ")")
  for preset, run in timing["runs"].items():
    if "start" not in next(iter(run["compile_stages"].values()), {}):
      continue
    stages = "  ".join(
        f"{program} {s['start']:.1f}-{s['end']:.1f} s (trace {s['trace']:.1f}"
        f", compile {s['compile']:.1f})"
        for program, s in run["compile_stages"].items())
    print(f"        {preset} programs, from the session's start: {stages}")


def figures(report: dict) -> dict:
  """The figures that targets name."""
  cold, warm = report["cold"], report.get("warm", report["cold"])
  values = {"cold": cold["command_seconds"], "warm": warm["command_seconds"],
            "warm_compile": warm["compile"],
            "total": cold["compile"] + cold["training"]}
  if "previous" in report:
    values["previous"] = (report["previous"]["compile"]
                          + report["previous"]["training"])
  return values


def run_suite(names, against=None) -> dict:
  """Each scenario cold and warm ("long": cold, and cold with the
  previous settings); with `against` (another checkout), the same
  commands there right after, and the ratios."""
  reports = {}
  with tempfile.TemporaryDirectory() as folder:
    folder = Path(folder)
    for name in names:
      flags, targets = SCENARIOS[name]
      cache = folder / ("enzymes" if name == "proteins" else name) / "xla"
      print(f"\n{name}: python -m experiments.train {' '.join(flags)}",
            flush=True)
      runs = ("cold",) if name == "long" else ("cold", "warm")
      report = cold_and_warm(flags, folder / name, cache, names=runs)
      if name == "long":
        report["previous"] = timed_command(
            flags + PREVIOUS_SETTINGS, folder / name / "previous",
            folder / name / "previous_xla")
      elif against is not None:
        old = folder / "against"
        before = cold_and_warm(flags, old / name, old / (
            "enzymes" if name == "proteins" else name) / "xla", against)
        report.update({f"{run}_against": t for run, t in before.items()})
      for run_name, timing in report.items():
        print_timing(run_name, timing)
      for run in runs:
        if f"{run}_against" in report:
          ratio = (report[f"{run}_against"]["command_seconds"]
                   / report[run]["command_seconds"])
          print(f"  {run}: {ratio:.2f}x faster than {against}")
      values = figures(report)
      for figure, target in targets.items():
        bound = values[target] if isinstance(target, str) else target
        verdict = "met" if values[figure] <= bound else "NOT met"
        print(f"  target {figure} <= {bound:.1f} s: {values[figure]:.1f} s, "
              f"{verdict} ({bound / values[figure]:.2f}x)")
      reports[name] = {**report, "figures": values, "targets": targets}
  return reports


def calibrate() -> dict:
  """Per data set, bucket count (1, 2) and effort: the measured and the
  predicted compile seconds (the stages of the train, evaluation and
  initialisation programs, added) and epoch seconds (10 members, fair
  protocol)."""
  import jax
  from diffpool_jax.engine import compile_cache, compile_effort
  from diffpool_jax.engine.session import (convolutions, layout_candidate,
                                           modelled_graph_cost)
  from diffpool_jax.run import Run, RunConfig
  compile_cache.enable("off")
  rows = []
  for name in ("MUTAG", "ENZYMES", "PROTEINS"):
    for buckets in (1, 2):
      for effort in ("full", "medium", "fast"):
        config = RunConfig(dataset=name, data_root=TU, protocol="fair",
                           folds=10, epochs=1, max_buckets=buckets,
                           min_bucket_gain=0.0, compile_effort=effort)
        run = Run(config, "/dev/null")
        session = run.session
        programs = session.compile()
        compiled = sum(stage["trace"] + stage["lower"] + stage["compile"]
                       for stage in programs.stages.values())
        schedule = session.schedule(0)
        seconds = []
        for _ in range(2):
          start = time.perf_counter()
          session.train_members(programs, schedule, 0)
          jax.block_until_ready(session.states)
          seconds.append(time.perf_counter() - start)
        candidate = layout_candidate(
            session.buckets, modelled_graph_cost(session.model, run.dataset),
            run.dataset.n_node, session.graphs, config.batch_size)
        predicted = compile_effort.predict(
            compile_effort.COSTS[jax.default_backend()], effort, candidate,
            1, len(run.members), convolutions(run.model_config))
        row = {"dataset": name, "buckets": run.session.buckets.tolist(),
               "effort": effort, "compile": compiled,
               "epoch": min(seconds), "predicted_compile": predicted[0],
               "predicted_epoch": predicted[1]}
        print(json.dumps(row), flush=True)
        rows.append(row)
  return {"calibration": rows}


def time_tests() -> dict:
  """The default test suite with its slowest tests."""
  start = time.perf_counter()
  done = subprocess.run([sys.executable, "-m", "pytest", "-q",
                         "--durations=15"], cwd=REPO, capture_output=True,
                        text=True)
  wall = time.perf_counter() - start
  lines = done.stdout.splitlines()
  first = next((i for i, line in enumerate(lines) if "slowest" in line), 0)
  slowest = [line for line in lines[first + 1:] if line.strip()
             and line[:1].isdigit()]
  print(f"test suite: {wall:.0f} s, exit status {done.returncode}")
  print("\n".join(slowest))
  return {"suite_seconds": wall, "returncode": done.returncode,
          "slowest": slowest}


def predict_schedule(args) -> dict:
  """The cost model's choice for a 10-fold fair run of --dataset at 2, 10,
  30 and 150 epochs: per (effort, bucket count) the predicted compile and
  training seconds, and the pair a run of that length compiles."""
  import jax
  from diffpool_jax.engine import compile_cache, compile_effort
  from diffpool_jax.engine.session import convolutions, layout_candidates
  from diffpool_jax.run import Run, RunConfig
  compile_cache.enable("off")
  config = RunConfig(dataset=args.dataset, data_root=args.data_root,
                     protocol="fair", folds=10, epochs=2, preset=args.preset,
                     splits=args.splits)
  run = Run(config, "/dev/null")
  session = run.session
  candidates, full = layout_candidates(config, session.model, run.dataset,
                                       session.graphs)
  costs = compile_effort.COSTS[jax.default_backend()]
  members, scale = len(run.members), convolutions(run.model_config)
  rows = []
  for epochs in (2, 10, 30, 150):
    choice = compile_effort.choose("auto", jax.default_backend(), candidates,
                                   full, epochs, members, scale)
    pairs = {f"{effort} {len(c.buckets)}": compile_effort.predict(
        costs, effort, c, epochs, members, scale)
        for effort in compile_effort.weighed_efforts(jax.default_backend())
        for c in candidates}
    rows.append({"epochs": epochs, "choice": choice.reason,
                 "predicted": pairs})
    print(f"{epochs:4d} epochs: {choice.reason}")
    print("      " + ", ".join(f"{name} bucket(s) {c:.0f} + {t:.0f} s"
                               for name, (c, t) in pairs.items()))
  return {"dataset": args.dataset, "members": members, "schedule": rows}


def single(args) -> dict:
  """The command for --dataset (or the main job), cold and warm."""
  flags = [] if args.main_job else [
      "--dataset", args.dataset, "--data-root", args.data_root,
      "--protocol", args.protocol, "--preset", args.preset, "--epochs", "1",
      "--no-plots"] + (["--splits", args.splits] if args.splits else [])
  with tempfile.TemporaryDirectory() as folder:
    report = cold_and_warm(flags, Path(folder), Path(folder) / "xla")
  for name, timing in report.items():
    print_timing(name, timing)
  return report


def main(argv=None) -> int:
  args = parse_args(sys.argv[1:] if argv is None else argv)
  if args.tests:
    report = time_tests()
  elif args.calibrate:
    report = calibrate()
  elif args.predict:
    report = predict_schedule(args)
  elif args.suite:
    names = args.only.split(",") if args.only else list(SCENARIOS)
    unknown = sorted(set(names) - set(SCENARIOS))
    if unknown:
      raise SystemExit(f"--only: unknown scenarios {unknown}; expected "
                       f"some of {sorted(SCENARIOS)}")
    report = run_suite(names, args.against)
  else:
    report = single(args)
  write_report(args.out, report)
  return 0


if __name__ == "__main__":
  sys.exit(main())
