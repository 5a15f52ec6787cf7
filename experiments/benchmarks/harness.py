"""What every benchmark shares: one measurement in a child process (its
own memory peak, a time limit, its figures as the last line it prints),
median timing after a warm-up, peak memory, and the report written
atomically.

  figures = harness.run_child("experiments.benchmarks.scale",
                              ["--setting", "per_graph", ...], timeout=300)
  # a child ends with harness.emit(figures)
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np

GIB = 2**30
REPO = Path(__file__).resolve().parents[2]


def median_seconds(run: Callable[[], object], repeats: int) -> float:
  """Median wall time of `run()` over `repeats` calls, after one warm-up
  call (`run` blocks until its results are ready)."""
  run()
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    run()
    times.append(time.perf_counter() - start)
  return float(np.median(times))


def peak_rss_gib() -> float:
  """This process's peak resident memory so far, GiB."""
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / GIB


def emit(figures: dict) -> None:
  """Prints a child's figures as one JSON line (the parent reads the last
  one; a child may emit early figures before a step that can overrun)."""
  print(json.dumps(figures), flush=True)


def run_child(module: str, flags: Sequence[str],
              timeout: Optional[float] = None, env: Optional[dict] = None,
              preexec_fn=None) -> dict:
  """Runs `python -m module flags...` in the checkout; returns the last
  JSON line it printed. A child that fails gives {"ran": False, "why_not":
  its last line of error}; one that overruns `timeout` seconds gives its
  last emitted figures with {"ran": False, "why_not": ...}."""
  command = [sys.executable, "-m", module, *map(str, flags)]
  start = time.perf_counter()
  try:
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True,
                          timeout=timeout, env=env, preexec_fn=preexec_fn)
  except subprocess.TimeoutExpired as expired:
    printed = expired.stdout or b""
    printed = printed.decode() if isinstance(printed, bytes) else printed
    return {**last_figures(printed), "ran": False,
            "why_not": f"not done within {timeout:.0f} s",
            "child_seconds": time.perf_counter() - start}
  if done.returncode != 0:
    lines = done.stderr.strip().splitlines() or ["(no message)"]
    return {"ran": False, "why_not": lines[-1], "error": done.stderr[-3000:],
            "child_seconds": time.perf_counter() - start}
  figures = last_figures(done.stdout)
  if not figures:
    return {"ran": False, "why_not": f"{module} printed no figures"}
  return {**figures, "child_seconds": time.perf_counter() - start}


def last_figures(printed: str) -> dict:
  """The last line of `printed` that is a JSON object, or {}."""
  for line in reversed(printed.strip().splitlines()):
    try:
      value = json.loads(line)
    except ValueError:
      continue
    if isinstance(value, dict):
      return value
  return {}


def write_report(path: os.PathLike, report) -> None:
  """Writes the benchmark's report as JSON atomically and says where."""
  from diffpool_jax.run import write_json_atomic
  write_json_atomic(Path(path), report, "the benchmark's report")
  print(f"figures in {path}", flush=True)
