"""A stand-in benchmark child for the harness tests:
`python -m tests.benchmark_stub MODE` emits figures, then fails (MODE
fail) or sleeps (MODE slow), or just ends (MODE ok)."""

import sys
import time

from experiments.benchmarks.harness import emit

if __name__ == "__main__":
  mode = sys.argv[1]
  print("some log line")
  emit({"figure": 1, "mode": mode})
  if mode == "fail":
    raise SystemExit("the child's own error")
  if mode == "slow":
    time.sleep(60)
