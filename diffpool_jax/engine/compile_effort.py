"""Compile effort: how much XLA work a run's programs get, chosen from the
work the run plans.

A run's first result costs compile seconds plus training seconds, and two
choices made before compiling set both: the XLA effort ("fast": the
compiler's cheapest settings, slower programs; "medium": its optimising
settings without the CPU's memory-hungry fusion emitters; "full": all
its optimising settings) and the number of size buckets (each bucket is
one more branch of the epoch programs to trace and compile, and less
padding to train on). `choose` predicts both costs for every pair from
one cost model and takes the least predicted total over the epochs the
run plans: a two-epoch look compiles cheaply, a ten-epoch run of ten
members at "medium", and a 150-epoch run spends more to run faster.

The cost model, per backend (`COSTS`):

  compile seconds  = base[effort]
                     + buckets x branch[effort] x convolutions / 9
  training seconds = epochs x members x slowdown[effort]
                     x (steps x step_seconds + units x unit_seconds)

`convolutions` counts the model's graph convolutions (9 for the `paper`
preset, on which the constants were measured); `units` are the modelled
multiply-adds of one member's epoch (`padded_graph_cost` of every batch
slot: three times for a training step, once for evaluation). The CPU
constants were fitted on a 2-core x86 VM (`python -m
experiments.benchmarks.compile_time --calibrate` prints the measurements);
the GPU constants come from the one H200 run so far and are to be refitted
by the device check. They need only rank the choices, not predict to the
second.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Dict, List, NamedTuple, Sequence

import numpy as np

EFFORTS = ("auto", "fast", "medium", "full")
REFERENCE_CONVOLUTIONS = 9       # the paper preset's, as measured


@dataclasses.dataclass(frozen=True)
class BackendCosts:
  """The cost model's constants for one backend (seconds)."""
  base: Dict[str, float]         # effort -> initialisation and fixed work
  branch: Dict[str, float]       # effort -> one bucket of train + evaluation
  slowdown: Dict[str, float]     # effort -> training time factor
  step_seconds: float            # one member's step, beside its arithmetic
  unit_seconds: float            # one modelled multiply-add


COSTS = {
    # 2-core x86 VM, paper preset (MUTAG, ENZYMES, PROTEINS; 1-2 buckets).
    # Fitted when "full" compiled the initialisation at XLA's defaults
    # (before ffc9bb6), so base["full"] may now overstate a little.
    # "medium" is "full" less part of the compile seconds it saved in
    # whole sessions of both on six layouts (PERFORMANCE.md, row 25:
    # 2.4-2.8 s with one bucket, 0.3-2.1 s more per further bucket; here
    # 1.5 s, and 0.7 s per bucket of the 9-convolution reference), with
    # its median epoch ratio (1.07 of 0.98-1.16x) rounded up to 1.1.
    "cpu": BackendCosts(base={"fast": 3.5, "medium": 4.5, "full": 6.0},
                        branch={"fast": 6.0, "medium": 11.8, "full": 12.5},
                        slowdown={"fast": 4.0, "medium": 1.1, "full": 1.0},
                        step_seconds=3e-3, unit_seconds=3.5e-11),
    # One H200: the ENZYMES epoch program (5 buckets) compiled in 145 s,
    # most of it matmul autotuning, for a 33 ms epoch of 10 members.
    # No "medium": on accelerators it is "full" (see `weighed_efforts`).
    "gpu": BackendCosts(base={"fast": 5.0, "full": 10.0},
                        branch={"fast": 6.0, "full": 28.0},
                        slowdown={"fast": 1.3, "full": 1.0},
                        step_seconds=2e-4, unit_seconds=1e-12),
    "tpu": BackendCosts(base={"fast": 5.0, "full": 10.0},
                        branch={"fast": 10.0, "full": 20.0},
                        slowdown={"fast": 1.2, "full": 1.0},
                        step_seconds=2e-4, unit_seconds=1e-12),
}

# XLA options of each effort and backend. "full" on the CPU is LLVM level 1
# (compiles about 17 % faster than the default with the same step time,
# experiments/benchmarks/PERFORMANCE.md); "medium" on the CPU is level 1
# with the older elemental emitters (the newer fusion emitters take about
# three times the compile memory, and in whole sessions more compile
# time, for epochs up to a sixth faster: row 25); "fast" on the CPU is
# the test suite's settings (level 0, the elemental emitters, no
# expensive LLVM passes); "fast" on a GPU turns matmul autotuning off.
XLA_OPTIONS = {
    "cpu": {"fast": {"xla_backend_optimization_level": 0,
                     "xla_cpu_use_fusion_emitters": False,
                     "xla_llvm_disable_expensive_passes": True},
            "medium": {"xla_backend_optimization_level": 1,
                       "xla_cpu_use_fusion_emitters": False},
            "full": {"xla_backend_optimization_level": 1}},
    "gpu": {"fast": {"xla_gpu_autotune_level": 0}, "full": {}},
    "tpu": {"fast": {}, "full": {}},
}


class Candidate(NamedTuple):
  """One bucket layout a run could compile."""
  buckets: np.ndarray            # [K] padded sizes
  steps: int                     # optimizer steps of one member's epoch
  units: float                   # modelled multiply-adds of a member's epoch


class Choice(NamedTuple):
  """What a run compiles, and why."""
  effort: str                    # "fast", "medium" or "full"
  candidate: int                 # index into the candidates
  compile_seconds: float         # predicted
  train_seconds: float           # predicted, over the planned epochs
  reason: str                    # one line for the run's output


def xla_options(effort: str, backend: str, program: str = "epoch") -> dict:
  """XLA compiler options of `effort` ("fast", "medium" or "full") on
  `backend` for an "epoch" or "init" program. The initialisation runs
  once, so it always compiles at "fast": a member's initial states are
  then the same at every effort (compiled at each effort's own options
  they would differ by float32 rounding). Options that $XLA_FLAGS sets
  are left to it."""
  if program == "init":
    effort = "fast"
  options = backend_options(backend)[backend_effort(effort, backend)]
  flags = os.environ.get("XLA_FLAGS", "")
  return {name: value for name, value in options.items() if name not in flags}


def backend_options(backend: str) -> Dict[str, dict]:
  """{effort: XLA options} of `backend` (others are treated as "tpu")."""
  return XLA_OPTIONS.get(backend, XLA_OPTIONS["tpu"])


def backend_effort(effort: str, backend: str) -> str:
  """The effort `backend` compiles for `effort`: "medium" has options of
  its own only on the CPU; elsewhere it is "full"."""
  return effort if effort in backend_options(backend) else "full"


def weighed_efforts(backend: str) -> List[str]:
  """The efforts "auto" weighs on `backend`: each that is its own there."""
  return [e for e in ("fast", "medium", "full")
          if backend_effort(e, backend) == e]


def predict(costs: BackendCosts, effort: str, candidate: Candidate,
            epochs: int, members: int, convolutions: int):
  """(compile seconds, training seconds over `epochs`) of a candidate
  (`effort` one that `costs`' backend has: see `backend_effort`)."""
  scale = convolutions / REFERENCE_CONVOLUTIONS
  compile_seconds = (costs.base[effort] + len(candidate.buckets)
                     * costs.branch[effort] * scale)
  epoch = members * costs.slowdown[effort] * (
      candidate.steps * costs.step_seconds
      + candidate.units * costs.unit_seconds)
  return compile_seconds, epochs * epoch


def choose(effort: str, backend: str, candidates: Sequence[Candidate],
           full_candidate: int, epochs: int, members: int,
           convolutions: int) -> Choice:
  """The effort and bucket layout to compile.

  Args:
    effort: "fast" (fast XLA settings, one bucket), "medium" or "full"
      (their settings, `full_candidate`: the layout the bucket rule chose)
      or "auto" (the pair of least predicted compile + training seconds).
    backend: "cpu", "gpu" or "tpu" (others are costed as "tpu").
    candidates: layouts of 1, 2, ... buckets.
    full_candidate: the index that "medium" and "full" compile.
    epochs, members: the planned epochs and members (folds x seeds x
      points).
    convolutions: graph convolutions of the model.
  """
  if effort not in EFFORTS:
    raise ValueError(f"compile_effort={effort!r}; expected one of {EFFORTS}")
  costs = COSTS.get(backend, COSTS["tpu"])
  pairs = ([("fast", 0)] if effort == "fast" else
           [(effort, full_candidate)] if effort != "auto" else
           [(e, i) for e in weighed_efforts(backend)
            for i in range(len(candidates))])
  totals: List = []
  for name, index in pairs:
    seconds = predict(costs, backend_effort(name, backend), candidates[index],
                      epochs, members, convolutions)
    totals.append((sum(seconds), name, index, seconds))
  _, name, index, (compile_s, train_s) = min(totals, key=lambda t: t[0])
  reason = (f"compile effort {name}, {len(candidates[index].buckets)} "
            f"bucket(s) ({effort}"
            + (": least predicted compile + training" if effort == "auto"
               else ", as asked")
            + f"; predicted {compile_s:.0f} s compiling + {train_s:.0f} s "
            f"training over {epochs} epochs on {backend})")
  return Choice(name, index, compile_s, train_s, reason)
