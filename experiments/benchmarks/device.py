"""The device check: what the library does on the accelerator JAX sees, in
one command of at most about 8 minutes on one H100.

  python -m experiments.benchmarks.device --copy-data ../shared/data   # once
  python -m experiments.benchmarks.device --out runs/device_check.json
  python -m experiments.benchmarks.device --quick   # same code, tiny inputs

`--copy-data` copies the TU files and split files the check reads into
`.device_data/` (git-ignored), so that the check travels with the
checkout. Each part runs in a child process of its own (its peak memory
is its own; a part that fails or runs out of time costs only itself), in
order of importance, while the time budget lasts:

  environment   device, memory, versions, precision; float32 matmul rate
                at each precision setting
  pyg_epoch     one training epoch, our `pyg` preset against PyTorch
                Geometric's DiffPool on the same device and graphs
                (ENZYMES padded to 150 nodes, PROTEINS to 620)
  compile_options  the ENZYMES `pyg` epoch program with 1 or 2 buckets and
                without matmul autotuning: compile time and epoch time
  paper_epoch   one member's training epoch of the default `paper` preset
                (clusters per graph; D&D and PROTEINS in full)
  fair_run      a complete ENZYMES fair run (10 folds x 150 epochs,
                Errica splits) at the runs' default precision (and, last,
                at TF32)
  members       1, 10, 100 and 1,000 ENZYMES members in one program
  tests         the test files that compare with float64 references
  determinism   two identical short runs (edge lists, so scatter-adds),
                without and with XLA's deterministic-ops flag
  compile_times cold and warm compile time of an ENZYMES fair run

After every part the report (JSON, --out) is rewritten; the table at the
end gives each figure beside its target. `--quick` runs every part on CPU
on tiny inputs (the built-in synthetic set) in a test of the default suite,
so the check never rots; its figures mean nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Dict, List, NamedTuple, Optional

import numpy as np

from experiments.benchmarks.harness import median_seconds, run_child

REPO = Path(__file__).resolve().parents[2]
DATA = REPO / ".device_data"
DATASETS = ("ENZYMES", "PROTEINS", "DD")
GIB = 2**30
BATCH = 20
# Test files whose checks compare with float64 NumPy references or assert
# exact invariances (padding, buckets, dense = edge list, vmap = solo).
REFERENCE_TESTS = ("tests/test_layers.py", "tests/test_pooling.py",
                   "tests/test_pooling_family.py", "tests/test_sparse.py",
                   "tests/test_model.py", "tests/test_training.py",
                   "tests/test_backend.py")
QUICK_TEST = "tests/test_pooling.py::test_matches_numpy_reference"
TINY_MODEL = dict(hidden_dim=8, embed_dim=8, num_layers=2, mlp_hidden=(8,),
                  pool_ratios=(0.5,))
TINY_SET = dict(num_graphs=80, communities=(2, 3), community_size=(3, 5))


class Part(NamedTuple):
  """One measurement: `run(options, **kwargs)` in a child process."""
  name: str                 # key in the report, e.g. "pyg_epoch:ENZYMES"
  run: Callable[..., dict]
  kwargs: dict
  timeout: float            # seconds on a full run
  env: Dict[str, str]       # added to the child's environment


# ------------------------------------------------------------- helpers --

def peak_memory() -> dict:
  """This process's peak memory: the device's allocator peak where it
  keeps one (GPU, TPU), and the host's peak RSS."""
  import jax
  stats = jax.devices()[0].memory_stats() or {}
  peak = stats.get("peak_bytes_in_use")
  return {"device_peak_gib": None if peak is None else peak / GIB,
          "host_peak_rss_gib": resource.getrusage(
              resource.RUSAGE_SELF).ru_maxrss * 1024 / GIB}


def run_config(options, dataset: str, **changes):
  """A RunConfig on the check's data: the named TU set with its Errica
  splits (full), or the tiny synthetic set and model (--quick)."""
  from diffpool_jax.run import RunConfig
  if options.quick:
    values = dict(dataset="synthetic", synthetic=TINY_SET, model=TINY_MODEL,
                  batch_size=4, folds=2, checkpoint_every=0)
  else:
    values = dict(dataset=dataset, data_root=str(options.data / "tu"),
                  batch_size=BATCH, checkpoint_every=0)
    splits = options.data / "splits" / f"{dataset}_splits.json"
    if changes.get("protocol") in ("fair", "errica") and splits.is_file():
      values["splits"] = str(splits)
  values.update(changes)
  if options.quick:
    values["max_buckets"] = 1       # one branch: the least to compile
    values["folds"] = min(values.get("folds", 2), 2)
    values["epochs"] = min(values.get("epochs", 2), 2)
  return RunConfig(**values)


def load_set(options, name: str):
  """A data set and 10 stratified folds (2 with --quick)."""
  from diffpool_jax.datasets import load_tu, synthetic_hierarchical
  from diffpool_jax.datasets.splits import stratified_folds
  if options.quick:
    dataset = synthetic_hierarchical(**TINY_SET)
  else:
    dataset = load_tu(name, root=options.data / "tu")
  folds = stratified_folds(dataset.labels, 2 if options.quick else 10,
                           seed=0, validation_fraction=0.0)
  return dataset, folds


# --------------------------------------------------------------- parts --

def environment(options) -> dict:
  """Device, memory, versions, precision, and the float32 matmul rate at
  every precision setting."""
  import flax
  import jax
  import jax.numpy as jnp
  import optax
  from diffpool_jax.engine import memory, trainer
  from diffpool_jax.run import RunConfig
  device = jax.devices()[0]
  import jaxlib
  versions = {"jax": jax.__version__, "jaxlib": jaxlib.__version__,
              "flax": flax.__version__, "optax": optax.__version__,
              "python": sys.version.split()[0]}
  try:
    import torch
    import torch_geometric
    versions.update(torch=torch.__version__,
                    torch_geometric=torch_geometric.__version__)
  except ImportError:
    pass
  limit = memory.device_limit_bytes(device)
  size = 256 if options.quick else 8192
  a = jnp.ones((size, size), jnp.float32)
  rates = {}
  for precision in trainer.MATMUL_PRECISIONS:
    with trainer.precision_context(precision):
      dot = jax.jit(jnp.matmul)
      seconds = median_seconds(lambda: dot(a, a).block_until_ready(), 5)
    rates[precision] = 2 * size**3 / seconds / 1e12
  return {"platform": device.platform, "device": device.device_kind,
          "device_count": jax.device_count(),
          "memory_limit_gib": None if limit is None else limit / GIB,
          "budget": memory.budget().source, "versions": versions,
          "runs_matmul_precision": RunConfig().matmul_precision,
          "jax_default_matmul_precision":
              jax.config.jax_default_matmul_precision,
          "xla_flags": os.environ.get("XLA_FLAGS", ""),
          "matmul_size": size, "matmul_tflops": rates}


def reference_tests(options) -> dict:
  """The float64-reference test files, run by pytest on this device."""
  selection = [QUICK_TEST] if options.quick else list(REFERENCE_TESTS)
  workers = ["-n", "0"] if options.quick else ["-n", "8"]
  start = time.perf_counter()
  done = subprocess.run([sys.executable, "-m", "pytest", "-q",
                         "-p", "no:cacheprovider", *workers, *selection],
                        cwd=REPO, capture_output=True, text=True)
  lines = done.stdout.strip().splitlines()
  return {"returncode": done.returncode, "summary": lines[-1] if lines else "",
          "failed": [line for line in lines if line.startswith("FAILED")],
          "seconds": time.perf_counter() - start, "files": selection}


def pyg_epoch(options, dataset: str, max_nodes: int, side: str,
              max_buckets: int = 2, effort: str = "full",
              ladder: bool = False) -> dict:
  """One training epoch (fold 0's training graphs, batch 20) of PyG's
  DiffPool ("pyg") or our `pyg` preset ("ours", in up to `max_buckets`
  size buckets at compile `effort`, sizes on the ladder or exact), on the
  same graphs: those of at most `max_nodes` nodes, as PyG's example keeps
  them."""
  from experiments.benchmarks.pyg import graphs_up_to
  if side == "pyg" and not has_pyg():
    return {"skipped": "torch or torch_geometric not installed "
            "(requirements-bench.txt)"}
  full, folds = load_set(options, dataset)
  if options.quick:
    max_nodes = int(full.max_nodes)
  data, folds = graphs_up_to(full, folds, max_nodes)
  train_ids = folds[0].train
  if side == "pyg":
    seconds, memory = pyg_train_epoch(options, data, train_ids, max_nodes)
  else:
    seconds, memory = our_train_epoch(options, data, train_ids, max_nodes,
                                      max_buckets, effort, ladder)
  return {"dataset": dataset, "max_nodes": max_nodes,
          "graphs_kept": data.num_graphs, "train_graphs": len(train_ids),
          "epoch_seconds": seconds,
          "train_graphs_per_second": len(train_ids) / seconds,
          "xla_flags": os.environ.get("XLA_FLAGS", ""), **memory}


def has_pyg() -> bool:
  """Whether PyTorch Geometric (the peer) can be imported here."""
  try:
    import torch  # noqa: F401
    import torch_geometric  # noqa: F401
  except ImportError:
    return False
  return True


def pyg_train_epoch(options, data, train_ids, max_nodes):
  """PyG's side: examples/proteins_diff_pool.py's model, loader and loop
  (each batch moved to the device in the loop, as the example does)."""
  import torch
  from experiments.benchmarks.pyg_reference import (PygDiffPool, dense_graphs,
                                                    train_epoch)
  device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
  torch.manual_seed(0)
  graphs = dense_graphs(data, train_ids, max_nodes)
  model = PygDiffPool(data.num_node_features, data.num_classes,
                      max_nodes).to(device)
  optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
  epoch = lambda: train_epoch(model, optimizer, graphs, BATCH, device)

  if device.type == "cuda":
    torch.cuda.reset_peak_memory_stats()
  seconds = median_seconds(epoch, options.repeats)
  peak = (torch.cuda.max_memory_allocated() / GIB if device.type == "cuda"
          else None)
  return seconds, {"device_peak_gib": peak, "torch_device": str(device),
                   "host_peak_rss_gib": resource.getrusage(
                       resource.RUSAGE_SELF).ru_maxrss * 1024 / GIB}


def our_train_epoch(options, data, train_ids, max_nodes, max_buckets,
                    effort="full", ladder=False):
  """Our side: the `pyg` preset (PyG's function, clusters from `max_nodes`
  as PyG's), one member, `max_buckets` size buckets, a whole epoch in one
  call, compiled at `effort`."""
  config = run_config(options, "", preset="pyg", protocol="paper",
                      cluster_reference=max_nodes, min_bucket_gain=0.0,
                      max_buckets=max_buckets, compile_effort=effort,
                      bucket_ladder=ladder)
  run = make_run(config, data)
  timing = time_training(run, [train_ids], options.repeats)
  return timing.pop("epoch_seconds"), {**timing, **peak_memory()}


def make_run(config, dataset=None):
  """A Run (data on the device, model, members) in a folder it never
  writes to."""
  from diffpool_jax.run import Run
  return Run(config, Path(tempfile.gettempdir()) / "device_check_unused",
             dataset=dataset)


def time_training(run, member_graphs, repeats: int) -> dict:
  """The training epoch of the run's first len(member_graphs) members on
  these graphs: median seconds after warm-up, compile seconds and XLA's
  memory estimate."""
  from diffpool_jax.engine import epoch_runner
  session = run.session
  epoch, compiled = epoch_runner(session, member_graphs)
  try:
    seconds = median_seconds(epoch, repeats)
  except Exception as error:        # e.g. out of device memory: say how much
    raise RuntimeError(
        f"{len(member_graphs)} member(s): the epoch failed with XLA's "
        f"estimate {compiled['program_bytes'] / GIB:.1f} GiB: "
        f"{str(error).splitlines()[0]}") from None
  return {"epoch_seconds": seconds,
          "compile_seconds": compiled["compile_seconds"],
          "xla_estimate_gib": compiled["program_bytes"] / GIB,
          "buckets": session.buckets.tolist(), "edge_list": session.sparse,
          "effort": session.effort}


def paper_epoch(options, dataset: str) -> dict:
  """One member's training epoch of the default `paper` preset as `train`
  runs it: the whole set, clusters per graph, buckets and first-level form
  by cost; the run's first fold's training graphs."""
  run = make_run(run_config(options, dataset, protocol="paper"))
  graphs = run.train_graphs[0]
  timing = time_training(run, [graphs], options.repeats)
  return {"dataset": dataset, "train_graphs": len(graphs),
          "train_graphs_per_second": len(graphs) / timing["epoch_seconds"],
          "cluster_slots": run.session.cluster_slots(), **timing, **peak_memory()}


def members(options, count: int) -> dict:
  """`count` ENZYMES members (10 folds x count/10 seeds; 2 folds with
  --quick) training side by side in one program, `paper` preset."""
  folds = 2 if options.quick else 10
  config = run_config(options, "ENZYMES", protocol="paper", folds=folds,
                      seeds=max(count // folds, 1))
  run = make_run(config)
  graphs = run.train_graphs[:count]
  timing = time_training(run, graphs, options.repeats)
  total = sum(len(g) for g in graphs)
  return {"members": count, "train_graphs_per_member": total / count,
          "graphs_per_second": total / timing["epoch_seconds"],
          "graphs_per_second_per_member":
              total / count / timing["epoch_seconds"],
          **timing, **peak_memory()}


def fair_run(options, precision: str) -> dict:
  """A complete ENZYMES fair run (10 folds x 150 epochs, patience 50,
  Errica splits) at this matmul precision: training time and accuracy."""
  config = run_config(options, "ENZYMES", protocol="fair", folds=10,
                      epochs=150, patience=50, matmul_precision=precision)
  with tempfile.TemporaryDirectory() as out:
    from diffpool_jax.run import Run
    results = Run(config, out).fit(progress=False)
  keep = ("score", "std", "epochs_run", "members", "wall_seconds",
          "compile_seconds", "median_epoch_seconds", "members_per_program")
  return {"precision": precision, **{k: results[k] for k in keep},
          "epochs_planned": config.epochs, **peak_memory()}


def compile_times(options) -> dict:
  """Cold and warm compile time of an ENZYMES fair run (the command, one
  epoch, a fresh compilation cache folder)."""
  config = run_config(options, "ENZYMES", protocol="fair", folds=10,
                      epochs=1)
  timings = {}
  with tempfile.TemporaryDirectory() as folder:
    folder = Path(folder)
    config_file = folder / "config.json"
    from diffpool_jax.run import write_json_atomic
    import dataclasses
    write_json_atomic(config_file, dataclasses.asdict(config))
    for name in ("cold", "warm"):
      start = time.perf_counter()
      done = subprocess.run(
          [sys.executable, "-m", "experiments.train", "--config",
           str(config_file), "--out", str(folder / "run"), "--overwrite",
           "--quiet", "--no-plots", "--compile-cache", str(folder / "xla")],
          cwd=REPO, capture_output=True, text=True)
      if done.returncode != 0:
        raise RuntimeError(f"{name} run failed: {done.stderr[-2000:]}")
      results = json.loads((folder / "run" / "results.json").read_text())
      timings[name] = {"command_seconds": time.perf_counter() - start,
                       "compile_seconds": results["compile_seconds"],
                       "compile_stages": results["compile_stages"]}
  return timings


def determinism(options) -> dict:
  """Two identical short runs (PROTEINS, fair, 3 folds, 5 epochs; its
  large buckets train on edge lists, whose messages are scatter-adds):
  are their metrics identical, and what does an epoch take?"""
  histories, seconds = [], []
  for _ in range(2):
    config = run_config(options, "PROTEINS", protocol="fair", folds=3,
                        epochs=5, patience=5,
                        first_level="sparse" if options.quick else "auto")
    with tempfile.TemporaryDirectory() as out:
      from diffpool_jax.run import Run
      run = Run(config, out)
      results = run.fit(progress=False)
    histories.append(run.history)
    seconds.append(results["median_epoch_seconds"])
  first, second = histories
  differences = {key: float(np.nanmax(np.abs(first[key] - second[key])))
                 for key in first}
  return {"identical": all(np.array_equal(first[k], second[k],
                                          equal_nan=True) for k in first),
          "max_abs_difference": differences,
          "median_epoch_seconds": float(np.median(seconds)),
          "xla_flags": os.environ.get("XLA_FLAGS", "")}


DETERMINISTIC = "--xla_gpu_deterministic_ops=true"
NO_TRITON_GEMM = "--xla_gpu_enable_triton_gemm=false"
# Seconds for a part that compiles an epoch program: measured 145 s of
# compilation for the 5-bucket ENZYMES `pyg` program on an H200.
COMPILE_LIMIT = 300
# The compile options measured first (ENZYMES@150, `pyg` preset): name ->
# (pyg_epoch's keyword arguments, added XLA flags). compile_effort "fast"
# is one bucket without matmul autotuning.
COMPILE_OPTIONS = {
    "fast": (dict(effort="fast"), ""),
    "full,buckets=1": (dict(max_buckets=1), ""),
    "full,buckets=1,triton_gemm=0": (dict(max_buckets=1), NO_TRITON_GEMM),
    "full,buckets=2": (dict(max_buckets=2), ""),
    "auto,ladder": (dict(effort="auto", ladder=True, max_buckets=5), ""),
}
NO_PREALLOCATION = {"XLA_PYTHON_CLIENT_PREALLOCATE": "false"}
# In order of importance: what the first GPU run (2026-11-26, H200) left
# unmeasured first (PROTEINS ratio, what cuts compile time, D&D epoch, the
# fair run, members), then the rest; parts left when the budget is spent
# are reported as skipped.
PARTS: List[Part] = [
    Part("environment", environment, {}, 60, {}),
    # What cuts the GPU's compile time (145 s for the 5-bucket ENZYMES
    # program on an H200, 22 s on 2 CPU cores), cheapest first: they set
    # the GPU constants of compile_effort (see `gpu_defaults`).
    *(Part(f"compile_options:{name}", pyg_epoch,
           dict(dataset="ENZYMES", max_nodes=150, side="ours", **kwargs),
           COMPILE_LIMIT, {"XLA_FLAGS": flags} if flags else {})
      for name, (kwargs, flags) in COMPILE_OPTIONS.items()),
    *(Part(f"pyg_epoch:{name}@{n}:{side}", pyg_epoch,
           dict(dataset=name, max_nodes=n, side=side),
           60 if side == "pyg" else COMPILE_LIMIT, {})
      for name, n in (("PROTEINS", 620), ("ENZYMES", 150))
      for side in ("pyg", "ours")),
    Part("paper_epoch:DD", paper_epoch, dict(dataset="DD"), COMPILE_LIMIT,
         {}),
    Part("paper_epoch:PROTEINS", paper_epoch, dict(dataset="PROTEINS"),
         COMPILE_LIMIT, {}),
    Part("fair_run:float32", fair_run, dict(precision="float32"), 600, {}),
    *(Part(f"members:{count}", members, dict(count=count), COMPILE_LIMIT,
           {})
      for count in (1, 10, 100, 1000)),
    Part("tests", reference_tests, {}, 300, NO_PREALLOCATION),
    Part("determinism", determinism, {}, COMPILE_LIMIT, {}),
    Part("determinism:deterministic_ops", determinism, {}, COMPILE_LIMIT,
         {"XLA_FLAGS": DETERMINISTIC}),
    Part("compile_times", compile_times, {}, 2 * COMPILE_LIMIT, {}),
    Part("fair_run:tensorfloat32", fair_run,
         dict(precision="tensorfloat32"), 600, {}),
]
QUICK_MEMBERS = {1: 1, 10: 2, 100: 4, 1000: 8}   # --quick: tiny counts


# --------------------------------------------------------------- driver --

def child(options) -> dict:
  """Runs the part named `options.child` here; returns its figures."""
  part = next(p for p in PARTS if p.name == options.child)
  kwargs = dict(part.kwargs)
  if options.quick and "count" in kwargs:
    kwargs["count"] = QUICK_MEMBERS[kwargs["count"]]
  return part.run(options, **kwargs)


def run_part(part: Part, options, seconds_left: float) -> dict:
  """The part in a child process, within its time limit; its figures, or
  {"error": ...} / {"skipped": ...}."""
  limit = min(part.timeout * options.timeout_scale * (5 if options.quick else 1),
              seconds_left)
  if limit < 10:
    return {"skipped": "time budget spent"}
  env = dict(os.environ, **part.env)
  if "XLA_FLAGS" in part.env:
    env["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " "
                        + part.env["XLA_FLAGS"]).strip()
  flags = ["--child", part.name, "--data", options.data,
           "--repeats", options.repeats] + (["--quick"] if options.quick
                                            else [])
  figures = run_child("experiments.benchmarks.device", flags, timeout=limit,
                      env=env)
  seconds = figures.pop("child_seconds", limit)
  if figures.get("ran") is False:
    return {"error": figures.get("error", figures["why_not"]),
            "seconds": seconds}
  return {**figures, "seconds": seconds}


def check(options) -> dict:
  """Every part in order while the time budget lasts; the report is
  rewritten after each one."""
  from diffpool_jax.run import write_json_atomic
  report = {"date": time.strftime("%Y-%m-%d %H:%M:%S"),
            "quick": options.quick, "parts": {}}
  start = time.perf_counter()
  for part in PARTS:
    if options.parts and not any(part.name.startswith(p)
                                 for p in options.parts):
      continue
    left = options.budget - (time.perf_counter() - start)
    report["parts"][part.name] = run_part(part, options, left)
    print(f"[{time.perf_counter() - start:5.0f} s] {part.name}: "
          f"{describe(report['parts'][part.name])}", flush=True)
    report["seconds"] = time.perf_counter() - start
    write_json_atomic(options.out, report)
  return report


def describe(result: dict) -> str:
  """A part's outcome in a few words."""
  if "error" in result:
    return "FAILED: " + result["error"].splitlines()[-1][:200]
  if "skipped" in result:
    return "skipped: " + result["skipped"]
  return f"done in {result['seconds']:.0f} s"


# ---------------------------------------------------------------- table --

def ratio_line(parts: dict, name: str, n: int) -> Optional[str]:
  """Ours against PyG's training epoch on one data set."""
  pyg = parts.get(f"pyg_epoch:{name}@{n}:pyg", {})
  ours = parts.get(f"pyg_epoch:{name}@{n}:ours", {})
  if "train_graphs_per_second" not in pyg or \
      "train_graphs_per_second" not in ours:
    return None
  speed = ours["train_graphs_per_second"] / pyg["train_graphs_per_second"]
  return (f"  {name}@{n}: PyG {pyg['train_graphs_per_second']:.0f} g/s "
          f"(peak {gib(pyg.get('device_peak_gib'))}) | ours "
          f"{ours['train_graphs_per_second']:.0f} g/s (peak "
          f"{gib(ours.get('device_peak_gib'))}, compile "
          f"{ours['compile_seconds']:.1f} s) | {speed:.1f}x (target >= 10x: "
          f"{'met' if speed >= 10 else 'not met'})")


def gpu_defaults(variants: dict) -> dict:
  """compile_effort's GPU constants as the compile-option parts measured
  them: a bucket's compile seconds at full effort (2 buckets less 1), the
  fixed rest, fast effort's one-bucket compile and its slowdown."""
  one, two = variants.get("full,buckets=1"), variants.get("full,buckets=2")
  fast = variants.get("fast")
  found = {}
  if one and two:
    branch = two["compile_seconds"] - one["compile_seconds"]
    found.update(branch_full=branch,
                 base_full=one["compile_seconds"] - branch)
  if fast:
    found["fast_one_bucket"] = fast["compile_seconds"]
    if one:
      found["slowdown_fast"] = fast["epoch_seconds"] / one["epoch_seconds"]
  return found


def gib(value) -> str:
  return "n/a" if value is None else f"{value:.2f} GiB"


def print_table(report: dict) -> None:
  """The figures of every part that ran, each beside its target."""
  parts = report["parts"]
  out = print
  env = parts.get("environment", {})
  if "device" in env:
    rates = ", ".join(f"{k} {v:.1f}" for k, v in env["matmul_tflops"].items())
    versions = ", ".join(f"{k} {v}" for k, v in env["versions"].items())
    out(f"device: {env['device']} ({env['platform']}, "
        f"{env['device_count']} device(s)); JAX may use "
        f"{gib(env['memory_limit_gib'])}; run budget: {env['budget']}")
    out(f"versions: {versions}")
    out(f"runs' matmul precision: {env['runs_matmul_precision']}; matmul "
        f"TFLOP/s at {env['matmul_size']}^3: {rates}")
  tests = parts.get("tests", {})
  if "summary" in tests:
    out(f"reference tests on the device: {tests['summary']} "
        f"({tests['seconds']:.0f} s)"
        + "".join(f"\n  {line}" for line in tests["failed"]))
  lines = [ratio_line(parts, name, n)
           for name, n in (("ENZYMES", 150), ("PROTEINS", 620))]
  if any(lines):
    out("training epoch, same function (`pyg` preset) against PyG's "
        "DiffPool on the same device:")
    for line in filter(None, lines):
      out(line)
  variants = {k.split(":", 1)[1]: v for k, v in parts.items()
              if k.startswith("compile_options:") and "compile_seconds" in v}
  if variants:
    out("ENZYMES@150 `pyg` epoch program, compile / epoch seconds: "
        + "; ".join(f"{k} (buckets {v['buckets']}, {v['effort']}) "
                    f"{v['compile_seconds']:.1f} s / {v['epoch_seconds']:.4f}"
                    " s" for k, v in variants.items()))
    defaults = gpu_defaults(variants)
    if defaults:
      out("GPU constants for compile_effort.COSTS from these: " + ", ".join(
          f"{k} {v:.3g}" for k, v in defaults.items()))
  for name, target in (("PROTEINS", None), ("DD", 0.5)):
    paper = parts.get(f"paper_epoch:{name}", {})
    if "epoch_seconds" in paper:
      verdict = ("" if target is None else f" (target <= {target} s: "
                 f"{'met' if paper['epoch_seconds'] <= target else 'not met'})")
      out(f"`paper` preset, clusters per graph, {name}: one member's "
          f"training epoch {paper['epoch_seconds']:.3f} s{verdict}, "
          f"{paper['train_graphs_per_second']:.0f} g/s, peak "
          f"{gib(paper['device_peak_gib'])}, XLA estimate "
          f"{gib(paper['xla_estimate_gib'])}")
  for precision in ("float32", "tensorfloat32"):
    fair = parts.get(f"fair_run:{precision}", {})
    if "score" in fair:
      full = fair["median_epoch_seconds"] * fair["epochs_planned"]
      out(f"ENZYMES fair, {fair['members']} members, {precision}: "
          f"{100 * fair['score']:.1f} +- {100 * fair['std']:.1f} %, "
          f"{fair['epochs_run']} epochs in {fair['wall_seconds']:.1f} s of "
          f"training ({fair['epochs_planned']} epochs at the median epoch: "
          f"{full:.1f} s; target <= 60 s: "
          f"{'met' if full <= 60 else 'not met'}), compile "
          f"{fair['compile_seconds']:.1f} s")
  rows = [parts[k] for k in parts
          if k.startswith("members:") and "epoch_seconds" in parts[k]]
  if rows:
    out("members side by side (ENZYMES, `paper`), one program:")
    for row in rows:
      out(f"  {row['members']:>5}: epoch {row['epoch_seconds']:.3f} s, "
          f"{row['graphs_per_second']:.0f} g/s, "
          f"{row['graphs_per_second_per_member']:.0f} g/s per member, XLA "
          f"estimate {gib(row['xla_estimate_gib'])}, peak "
          f"{gib(row['device_peak_gib'])}")
  compiled = parts.get("compile_times", {})
  if "cold" in compiled:
    out("ENZYMES fair run, compile (command): " + ", ".join(
        f"{k} {v['compile_seconds']:.1f} s ({v['command_seconds']:.1f} s)"
        for k, v in compiled.items() if isinstance(v, dict)))
  for name, flags in (("determinism", ""),
                      ("determinism:deterministic_ops", f" with {DETERMINISTIC}")):
    twice = parts.get(name, {})
    if "identical" in twice:
      largest = max(twice["max_abs_difference"].values())
      out(f"two identical runs{flags}: metrics identical "
          f"{twice['identical']} (largest difference {largest:.2e}), epoch "
          f"{twice['median_epoch_seconds']:.3f} s")
  failed = [k for k, v in parts.items() if "error" in v or "skipped" in v]
  if failed:
    out("not measured: " + ", ".join(
        f"{k} ({describe(parts[k])[:80]})" for k in failed))


def copy_data(source: Path, target: Path) -> None:
  """The TU folders and split files the check reads, from `source` (the
  shared data folder: tu/NAME/, splits/NAME_splits.json) into `target`."""
  for name in DATASETS:
    folder = source / "tu" / name
    splits = source / "splits" / f"{name}_splits.json"
    for path in (folder, splits):
      if not path.exists():
        raise SystemExit(f"--copy-data {source}: {path} not found")
    shutil.copytree(folder, target / "tu" / name, dirs_exist_ok=True)
    (target / "splits").mkdir(parents=True, exist_ok=True)
    shutil.copy2(splits, target / "splits" / splits.name)
  print(f"copied {', '.join(DATASETS)} and their splits into {target}")


def parse_args(argv):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--quick", action="store_true",
                      help="tiny inputs (synthetic set), for the test suite")
  parser.add_argument("--data", type=Path, default=DATA,
                      help="folder with tu/NAME/ and splits/ (default "
                      ".device_data, see --copy-data)")
  parser.add_argument("--copy-data", type=Path, metavar="SHARED",
                      help="copy the check's data from SHARED (tu/, "
                      "splits/) into --data, then stop")
  parser.add_argument("--out", type=Path, default=Path(
      "runs/device_check.json"))
  parser.add_argument("--timeout-scale", type=float, default=1.0,
                      help="multiplies every part's time limit")
  parser.add_argument("--budget", type=float, default=None,
                      help="seconds for all parts (default 480; --quick "
                      "900); parts left when it is spent are skipped")
  parser.add_argument("--repeats", type=int, default=None,
                      help="timed epochs per measurement (default 3; "
                      "--quick 1)")
  parser.add_argument("--parts", nargs="+", metavar="PREFIX",
                      help="only the parts whose names start so, e.g. "
                      "pyg_epoch members:1000")
  parser.add_argument("--child", help=argparse.SUPPRESS)
  options = parser.parse_args(argv)
  if options.budget is None:
    options.budget = 900 if options.quick else 480
  if options.repeats is None:
    options.repeats = 1 if options.quick else 3
  return options


def main(argv=None) -> int:
  options = parse_args(argv)
  if options.copy_data:
    copy_data(options.copy_data, options.data)
    return 0
  if options.child:
    print(json.dumps(child(options)))
    return 0
  if not options.quick and not (options.data / "tu").is_dir():
    raise SystemExit(f"--data {options.data}: no tu/ folder; run once "
                     "with --copy-data ../shared/data")
  report = check(options)
  print()
  print_table(report)
  print(f"\nreport: {options.out}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
