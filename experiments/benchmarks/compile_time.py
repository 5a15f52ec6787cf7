"""Time to first result: where a run's first seconds go, with a cold and a
warm persistent compilation cache.

  python -m experiments.benchmarks.compile_time --dataset ENZYMES \
      --data-root ../shared/data/tu \
      --splits ../shared/data/splits/ENZYMES_splits.json
  python -m experiments.benchmarks.compile_time --main-job
  python -m experiments.benchmarks.compile_time --tests

Runs the command (`python -m experiments.train ... --epochs 1`) twice in a
fresh compilation cache folder: cold (empty), then warm (what the first
left). For each, prints the seconds from the command's start to its end
(one epoch, plots off), the setup (data, buckets, member initialisation),
and per program (train; one evaluation program serves validation and test)
the seconds of tracing, lowering and XLA compilation, read from the run's
results.json. `--main-job` does the same for the README's main job (its
own epochs, with its baseline). `--tests` runs the default test suite
with `--durations` and prints its total time and slowest tests.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def parse_args(argv):
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--dataset", default="ENZYMES")
  parser.add_argument("--data-root", default="../shared/data/tu")
  parser.add_argument("--splits", help="split file (fair protocol)")
  parser.add_argument("--protocol", default="fair")
  parser.add_argument("--preset", default="paper")
  parser.add_argument("--main-job", action="store_true",
                      help="time `python -m experiments.train` as it is")
  parser.add_argument("--tests", action="store_true",
                      help="time the default test suite instead")
  parser.add_argument("--out", default="runs/compile_time.json")
  return parser.parse_args(argv)


def command(args, out: Path, cache: Path) -> list:
  """The timed command line."""
  base = [sys.executable, "-m", "experiments.train", "--out", str(out),
          "--quiet", "--overwrite", "--compile-cache", str(cache)]
  if args.main_job:
    return base
  base += ["--dataset", args.dataset, "--data-root", args.data_root,
           "--protocol", args.protocol, "--preset", args.preset,
           "--epochs", "1", "--no-plots"]
  if args.splits:
    base += ["--splits", args.splits]
  return base


def timed_run(args, out: Path, cache: Path) -> dict:
  """Runs the command once; its wall time and results.json's timings."""
  start = time.perf_counter()
  done = subprocess.run(command(args, out, cache), cwd=REPO,
                        capture_output=True, text=True)
  wall = time.perf_counter() - start
  if done.returncode != 0:
    raise SystemExit(f"the timed command failed:\n{done.stderr[-2000:]}")
  timing = {"command_seconds": wall, "runs": {}}
  for path in sorted(out.glob("**/results.json")):
    results = json.loads(path.read_text())
    timing["runs"][results["preset"]] = {
        key: results[key] for key in ("setup_seconds", "compile_seconds",
                                      "compile_stages",
                                      "median_epoch_seconds")}
  return timing


def print_run(name: str, timing: dict) -> None:
  print(f"\n{name}: {timing['command_seconds']:.1f} s from the command's "
        "start to its end")
  for preset, run in timing["runs"].items():
    print(f"  {preset}: setup {run['setup_seconds']:.1f} s, compilation "
          f"{run['compile_seconds']:.1f} s, median training epoch "
          f"{run['median_epoch_seconds']:.2f} s")
    print("    program      trace   lower  compile   (seconds)")
    for program, stages in run["compile_stages"].items():
      print(f"    {program:<10} {stages['trace']:>6.2f}  "
            f"{stages['lower']:>6.2f}  {stages['compile']:>7.2f}")


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


def main(argv=None) -> int:
  args = parse_args(sys.argv[1:] if argv is None else argv)
  if args.tests:
    report = time_tests()
  else:
    with tempfile.TemporaryDirectory() as folder:
      cache, out = Path(folder) / "xla", Path(folder) / "run"
      report = {"command": command(args, out, cache)[1:]}
      for name in ("cold", "warm"):
        report[name] = timed_run(args, out, cache)
        print_run(f"{name} cache", report[name])
  path = Path(args.out)
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_text(json.dumps(report, indent=2))
  print(f"\nfigures in {path}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
