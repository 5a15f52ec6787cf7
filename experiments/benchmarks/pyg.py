"""Side-by-side speed benchmark: our `pyg` preset vs PyTorch Geometric's
DiffPool (examples/proteins_diff_pool.py), same data, same parameter count.

  pip install -r requirements-bench.txt
  python -m experiments.benchmarks.pyg --data-root ../shared/data/tu

Each side runs in its own child process (so peak RSS is its own), pinned to
--threads CPUs (XLA sizes its pool from them; torch gets set_num_threads),
on the same graphs (PyG's example drops those over its padding size N, so
at N = 150 both sides do). Before timing, a parity check copies the PyG
weights into our model and compares logits and both auxiliary losses on a
real batch. Prints one table of figures and ratios and writes them to JSON
(--out). The "ceiling" line bounds the ratio on this machine: PyG's epoch
time against the FLOPs our epoch executes, all run at the best matmul rate
measured (the large jnp.dot or one of the model's level-2 matmuls).

Then the whole-command comparison (--whole-epochs, default 2 10 150; the
first data set, with its Errica split file from --splits): PyG's example
pipeline (pyg_example.py) against `python -m experiments.train --preset
pyg` cold and warm, each a whole process on --threads CPUs, wall seconds
and peak RSS. `--whole-only` runs just that part.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from experiments.benchmarks.harness import (GIB, REPO, emit, median_seconds,
                                            peak_rss_gib, run_child,
                                            write_report)

BATCH = 20
USUAL_MAX_NODES = 150        # PyG's example pads (and filters) to this


def thread_env(threads: int) -> dict:
  """Environment that sizes torch's OpenMP / MKL pools to `threads`."""
  env = dict(os.environ)
  env["OMP_NUM_THREADS"] = str(threads)
  env["MKL_NUM_THREADS"] = str(threads)
  return env


def pin_to_cpus(threads: int):
  """A preexec_fn that runs a child on the first `threads` usable CPUs.

  XLA's CPU client sizes its thread pool from the CPUs a process may run
  on, so this is what limits our side; torch also gets set_num_threads.
  """
  cpus = sorted(os.sched_getaffinity(0))
  if threads > len(cpus):
    raise SystemExit(f"--threads {threads}: only {len(cpus)} CPUs usable")
  return lambda: os.sched_setaffinity(0, cpus[:threads])


def load(args):
  from diffpool_jax.datasets import load_tu
  from diffpool_jax.datasets.splits import stratified_folds
  dataset = load_tu(args.dataset, root=args.data_root)
  folds = stratified_folds(dataset.labels, 10, seed=0,
                           validation_fraction=0.0)
  return dataset, folds


def graphs_up_to(dataset, folds, max_nodes: int):
  """The graphs of at most `max_nodes` nodes (PyG's example drops larger
  ones), and the folds re-indexed into them: both sides use these."""
  from diffpool_jax.datasets.splits import Fold
  keep = np.flatnonzero(dataset.n_node <= max_nodes)
  position = np.full(dataset.num_graphs, -1, np.int64)
  position[keep] = np.arange(len(keep))

  def kept(ids):
    ids = position[ids]
    return ids[ids >= 0]

  return dataset.subset(keep), [Fold(*(kept(ids) for ids in fold))
                                for fold in folds]


# --------------------------------------------------------------- PyG side --

def pyg_side(args) -> dict:
  import torch
  from experiments.benchmarks.pyg_reference import (PygDiffPool,
                                                    correct_predictions,
                                                    dense_graphs)
  from experiments.benchmarks.pyg_reference import (train_epoch as train_epoch_of)

  torch.set_num_threads(args.threads)
  torch.manual_seed(0)
  full, all_folds = load(args)
  results = {}
  for max_nodes in sorted({USUAL_MAX_NODES, full.max_nodes}):
    dataset, folds = graphs_up_to(full, all_folds, max_nodes)
    subset = dense_graphs(dataset, range(dataset.num_graphs), max_nodes)
    train_ids = folds[0].train.tolist()
    model = PygDiffPool(dataset.num_node_features, dataset.num_classes,
                        max_nodes)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)

    def train_epoch(model=model, optimizer=optimizer, ids=train_ids):
      train_epoch_of(model, optimizer, [subset[i] for i in ids], BATCH)

    def evaluate(model=model, ids=range(len(subset))):
      return correct_predictions(model, [subset[i] for i in ids], BATCH)

    epoch = median_seconds(train_epoch, args.repeats)
    evaluation = median_seconds(evaluate, args.repeats)

    def cross_validation():
      for fold in folds:
        ids, test = fold.train.tolist(), fold.test.tolist()
        net = PygDiffPool(dataset.num_node_features, dataset.num_classes,
                          max_nodes)
        opt = torch.optim.Adam(net.parameters(), lr=1e-3)
        for _ in range(args.cv_epochs):
          train_epoch(net, opt, ids)
          evaluate(net, test)

    results[str(max_nodes)] = {
        "max_nodes": max_nodes, "graphs_kept": dataset.num_graphs,
        "graphs_dropped": full.num_graphs - dataset.num_graphs,
        "parameters": sum(p.numel() for p in model.parameters()),
        "train_graphs": len(train_ids), "epoch_seconds": epoch,
        "train_graphs_per_second": len(train_ids) / epoch,
        "eval_graphs_per_second": len(subset) / evaluation}
    if max_nodes == USUAL_MAX_NODES:
      start = time.perf_counter()
      cross_validation()
      results[str(max_nodes)]["cv_seconds"] = time.perf_counter() - start
  results["peak_rss_mib"] = 1024 * peak_rss_gib()
  return results


# --------------------------------------------------------------- our side --

def flops_of(compiled) -> float:
  analysis = compiled.cost_analysis()
  analysis = analysis[0] if isinstance(analysis, list) else analysis
  return float(analysis.get("flops", 0.0))


def our_side(args) -> dict:
  import functools
  import jax
  import jax.numpy as jnp
  import diffpool_jax as dp
  from diffpool_jax.datasets import choose_buckets
  from diffpool_jax.engine import pipeline, trainer

  full, all_folds = load(args)
  peak = peak_matmul_flops(jax, jnp)
  results = {"peak_matmul_gflops": peak / 1e9}
  for max_nodes in sorted({USUAL_MAX_NODES, full.max_nodes}):
    dataset, folds = graphs_up_to(full, all_folds, max_nodes)
    buckets = choose_buckets(dataset.n_node, args.buckets)
    data = pipeline.device_data(dataset, buckets)
    sample = trainer.gather_batch(data.buckets[0], jnp.arange(BATCH))
    model = dp.DiffPool(dp.preset("pyg"), dataset.num_classes, max_nodes)
    train, evaluate = trainer.compile_epochs(model)

    def members(count):
      return trainer.init_members(
          model, sample, list(range(count)),
          trainer.default_hyper(model.config, count, aux_weight=0.0))

    train_graphs = [folds[0].train]
    rng = np.random.default_rng(0)
    schedule = pipeline.make_schedule(train_graphs, data, BATCH, rng)
    states = members(1)
    start = time.perf_counter()
    compiled = train.lower(states, data.buckets, schedule.bucket_ids,
                           schedule.indices, jnp.int32(0)).compile()
    compile_seconds = time.perf_counter() - start
    everything = pipeline.make_schedule([np.arange(dataset.num_graphs)],
                                        data, BATCH)
    compiled_eval = evaluate.lower(states, data.buckets,
                                   everything.bucket_ids,
                                   everything.indices).compile()

    def train_epoch():
      nonlocal states
      states, totals = compiled(states, data.buckets, schedule.bucket_ids,
                                schedule.indices, jnp.int32(0))
      jax.block_until_ready(totals)

    def run_eval():
      jax.block_until_ready(compiled_eval(states, data.buckets,
                                          everything.bucket_ids,
                                          everything.indices))

    epoch = median_seconds(train_epoch, args.repeats)
    evaluation = median_seconds(run_eval, args.repeats)
    padded, real = epoch_flops(model, data, schedule, dataset, folds[0],
                               sample, jax, jnp, functools, trainer)

    results[str(max_nodes)] = {
        "max_nodes": max_nodes, "buckets": buckets.tolist(),
        "clusters": list(model.config.cluster_counts(max_nodes)),
        "parameters": dp.count_params(
            jax.tree_util.tree_map(lambda v: v[0], states.params)),
        "train_graphs": len(folds[0].train), "epoch_seconds": epoch,
        "train_graphs_per_second": len(folds[0].train) / epoch,
        "eval_graphs_per_second": dataset.num_graphs / evaluation,
        "compile_seconds": compile_seconds,
        "padded_gflop_per_epoch": padded / 1e9,
        "real_gflop_per_epoch": real / 1e9,
        "padded_gflops": padded / epoch / 1e9,
        "real_gflops": real / epoch / 1e9,
        "peak_fraction_padded": padded / epoch / peak,
        "peak_fraction_real": real / epoch / peak,
        "level2_matmul_gflops": level2_matmul_gflops(
            jax, jnp, model.config, model.config.cluster_counts(max_nodes)[0])}
    if max_nodes == USUAL_MAX_NODES:
      results[str(max_nodes)].update(
          our_cross_validation(args, model, dataset, members, folds))
  results["paper_per_graph"] = paper_per_graph(args, full, all_folds)
  results["peak_rss_mib"] = 1024 * peak_rss_gib()
  return results


def paper_per_graph(args, dataset, folds) -> dict:
  """One member's training epoch of our `paper` preset as `train` runs it:
  the whole set (no filter), clusters per graph, buckets and first-level
  form by cost, and the compile effort a run of --run-epochs epochs picks
  (a 1-epoch configuration would get the cheap program, which no long
  run trains with); fold 0's training graphs."""
  from diffpool_jax.engine import epoch_runner
  from diffpool_jax.run import Run, RunConfig
  config = RunConfig(dataset=args.dataset, data_root=args.data_root,
                     preset="paper", protocol="paper", folds=2,
                     epochs=args.run_epochs, batch_size=BATCH,
                     max_buckets=args.buckets)
  session = Run(config, "runs/benchmark_unused", dataset=dataset).session
  epoch, _ = epoch_runner(session, [folds[0].train])
  seconds = median_seconds(epoch, args.repeats)
  return {"buckets": session.buckets.tolist(), "edge_list": session.sparse,
          "compile_effort": session.effort,
          "run_epochs": args.run_epochs,
          "cluster_slots": session.cluster_slots(),
          "train_graphs": len(folds[0].train), "epoch_seconds": seconds,
          "train_graphs_per_second": len(folds[0].train) / seconds}


def our_cross_validation(args, model, dataset, members, folds) -> dict:
  """10 folds x cv_epochs epochs (train + test evaluation per epoch), once
  as one vmapped program and once fold after fold with the same jitted
  functions, in the size buckets and at the compile effort that a run of
  cv_epochs epochs chooses (`session.bucket_layout`), not the per-epoch
  comparison's --buckets: this part includes compilation, so it times
  the programs a real run of that length compiles. Fold-after-fold runs
  take their row of the vmapped schedules (same shapes, so they share
  one compilation). Totals include compilation; "steady" sums the epochs
  after the first.
  """
  import jax
  from diffpool_jax.engine import pipeline, trainer
  from diffpool_jax.engine.session import MemberGraphs, bucket_layout
  from diffpool_jax.run import RunConfig
  config = RunConfig(dataset=args.dataset, preset="pyg", protocol="fair",
                     folds=len(folds), epochs=args.cv_epochs,
                     batch_size=BATCH)
  layout = bucket_layout(config, model, dataset, MemberGraphs(
      [f.train for f in folds], [f.validation for f in folds],
      [f.test for f in folds]))
  data = pipeline.device_data(dataset, layout.buckets, layout.sparse)
  train, evaluate = (trainer.jit_epoch_program(model, None, kind,
                                               effort=layout.effort)
                     for kind in ("train", "evaluate"))
  rng = np.random.default_rng(0)
  graphs = [f.train for f in folds]
  schedules = [pipeline.make_schedule(graphs, data, BATCH, rng)
               for _ in range(args.cv_epochs)]
  test = pipeline.make_schedule([f.test for f in folds], data, BATCH)

  def run(rows):
    """Seconds (total, epochs after the first) for these members."""
    states = members(len(rows))
    start = time.perf_counter()
    epoch_times = []
    for schedule in schedules:
      epoch_start = time.perf_counter()
      states, _ = train(states, data.buckets, schedule.bucket_ids,
                        schedule.indices[rows], np.int32(0))
      jax.block_until_ready(evaluate(states, data.buckets, test.bucket_ids,
                                     test.indices[rows]))
      epoch_times.append(time.perf_counter() - epoch_start)
    return time.perf_counter() - start, sum(epoch_times[1:])

  vmapped, vmapped_steady = run(np.arange(len(folds)))
  sequential = [run(np.array([m])) for m in range(len(folds))]
  return {"cv_buckets": layout.buckets.tolist(), "cv_effort": layout.effort,
          "cv_seconds": vmapped, "cv_steady_seconds": vmapped_steady,
          "cv_sequential_seconds": sum(t for t, _ in sequential),
          "cv_sequential_steady_seconds": sum(s for _, s in sequential)}


def matmul_flops(jax, jnp, left: tuple, right: tuple, repeats: int) -> float:
  """FLOP/s of jnp.matmul on float32 arrays of these shapes (median)."""
  a, b = jnp.ones(left, jnp.float32), jnp.ones(right, jnp.float32)
  dot = jax.jit(jnp.matmul)
  seconds = median_seconds(lambda: dot(a, b).block_until_ready(), repeats)
  return 2 * np.prod(left) * right[-1] / seconds


def peak_matmul_flops(jax, jnp, size: int = 4096) -> float:
  """The machine's fp32 matmul rate: FLOP/s of a large jnp.dot."""
  return matmul_flops(jax, jnp, (size, size), (size, size), 3)


def level2_matmul_gflops(jax, jnp, config, clusters: int) -> dict:
  """GFLOP/s of the second level's matmuls, each alone (median of 60).

  The shapes of one train step's batch at the first pooled level (B x K
  nodes): the first SAGE layer's fused linear map (concatenated level-1
  embedding -> both weights), a hidden layer's ([mean, x] -> hidden) and
  the neighbour aggregation (batched K x K times K x hidden).
  """
  hidden = config.hidden_dim
  concat = hidden * (config.num_layers - 1) + config.embed_dim
  rows = BATCH * clusters
  shapes = {"first_layer": ((rows, concat), (concat, 2 * hidden)),
            "hidden_layer": ((rows, 2 * hidden), (2 * hidden, hidden)),
            "aggregation": ((BATCH, clusters, clusters),
                            (BATCH, clusters, hidden))}
  return {name: matmul_flops(jax, jnp, left, right, 60) / 1e9
          for name, (left, right) in shapes.items()}


def epoch_flops(model, data, schedule, dataset, fold, sample, jax, jnp,
                functools, trainer):
  """(padded, real) FLOPs of one training epoch, from XLA's cost analysis.

  Padded: per bucket, the compiled step's FLOPs times its steps. Real: the
  step's FLOPs are a quadratic in the node count n for one graph (dense
  layers ~n, aggregation and pooling ~n^2), so three single-graph sizes fix
  the quadratic, summed over the fold's training graphs at their own size.
  """
  state = trainer.init_members(
      model, sample, [0], trainer.default_hyper(model.config, 1,
                                                aux_weight=0.0))
  step = jax.jit(jax.vmap(functools.partial(trainer.train_step, model),
                          in_axes=(0, 0, None)))

  def step_flops(bucket, batch_size):
    positions = jnp.arange(batch_size)[None] % bucket.x.shape[0]
    batch = jax.vmap(trainer.gather_batch, in_axes=(None, 0))(bucket,
                                                             positions)
    return flops_of(step.lower(state, batch, jnp.int32(0)).compile())

  steps = np.bincount(schedule.bucket_ids, minlength=len(data.buckets))
  padded = sum(steps[b] * step_flops(bucket, BATCH)
               for b, bucket in enumerate(data.buckets))
  sizes = (8, 16, 32)
  from diffpool_jax.graphs import dense_batch
  per_size = []
  for n in sizes:
    chain = np.stack([np.arange(n - 1), np.arange(1, n)], 1)
    single = dense_batch([chain], [np.zeros((n, dataset.num_node_features),
                                            np.float32)], [0], n)
    per_size.append(step_flops(jax.device_put(single), 1))
  a, b, c = np.polyfit(sizes, per_size, 2)
  n = dataset.n_node[fold.train].astype(np.float64)
  real = float(np.sum(a * n**2 + b * n + c))
  return padded, real


def parity_side(args) -> dict:
  """Copies PyG weights into our `pyg` preset; compares on a real batch."""
  import jax
  import torch
  import diffpool_jax as dp
  from experiments.benchmarks.pyg_reference import (PygDiffPool,
                                                    to_flax_variables)

  torch.manual_seed(0)
  dataset, _ = load(args)
  max_nodes = max(USUAL_MAX_NODES, dataset.max_nodes)
  ids = np.arange(BATCH)
  batch = dp.dense_batch([dataset.edges[g] for g in ids],
                         [dataset.features[g] for g in ids],
                         dataset.labels[ids], max_nodes)
  tensors = [torch.from_numpy(np.asarray(v))
             for v in (batch.x, batch.adj, batch.node_mask)]
  net = PygDiffPool(dataset.num_node_features, dataset.num_classes,
                    max_nodes)
  net.train()
  with torch.no_grad():             # non-trivial running statistics
    for _ in range(3):
      net(*tensors)
  net.eval()
  with torch.no_grad():
    log_probs, link, entropy = net(*tensors)
  model = dp.DiffPool(dp.preset("pyg"), dataset.num_classes, max_nodes)
  logits, levels = model.apply(to_flax_variables(net), batch.x, batch.adj,
                               batch.node_mask)
  ours = np.asarray(jax.nn.log_softmax(logits))
  our_link = float(sum(level.aux["link"] for level in levels))
  our_entropy = float(sum(level.aux["entropy"] for level in levels))
  relative = lambda a, b: abs(a - b) / max(abs(b), 1e-12)
  return {"max_nodes": max_nodes,
          "log_prob_max_abs_diff": float(np.abs(ours - log_probs.numpy()).max()),
          "link_loss": [our_link, float(link)],
          "entropy_loss": [our_entropy, float(entropy)],
          "link_relative_diff": relative(our_link, float(link)),
          "entropy_relative_diff": relative(our_entropy, float(entropy))}


SIDES = {"pyg": pyg_side, "ours": our_side, "parity": parity_side}


def side_figures(side: str, dataset: str, args) -> dict:
  """One side measured in its own child process, on --threads CPUs."""
  figures = run_child(
      "experiments.benchmarks.pyg",
      ["--child", side, "--dataset", dataset, "--data-root", args.data_root,
       "--threads", args.threads, "--repeats", args.repeats,
       "--cv-epochs", args.cv_epochs, "--buckets", args.buckets,
       "--run-epochs", args.run_epochs],
      env=thread_env(args.threads), preexec_fn=pin_to_cpus(args.threads))
  if figures.get("ran") is False:
    raise SystemExit(f"benchmark child {side} {dataset} failed:\n"
                     f"{figures.get('error', figures['why_not'])}")
  figures.pop("child_seconds")
  return figures


# ------------------------------------------------------ whole commands --

def timed_process(command: list, env: dict, preexec_fn) -> dict:
  """Wall seconds and peak RSS (GiB) of one child process in the checkout,
  and the last line it printed; SystemExit when it fails."""
  with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
    start = time.perf_counter()
    child = subprocess.Popen(command, cwd=REPO, stdout=out, stderr=err,
                             text=True, env=env, preexec_fn=preexec_fn)
    _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - start
    child.returncode = os.waitstatus_to_exitcode(status)
    out.seek(0), err.seek(0)
    if child.returncode != 0:
      raise SystemExit(f"{' '.join(command)} failed:\n{err.read()[-2000:]}")
    lines = out.read().strip().splitlines() or [""]
  return {"seconds": wall, "peak_gib": usage.ru_maxrss * 1024 / GIB,
          "last_line": lines[-1]}


def raw_copy(data_root: str, name: str, folder: Path) -> Path:
  """The TU set's raw files decompressed into folder/NAME/raw (what PyG's
  TUDataset reads); returns `folder`."""
  raw = folder / name / "raw"
  raw.mkdir(parents=True)
  for path in sorted(Path(data_root, name).glob(f"{name}_*")):
    target = raw / path.name.removesuffix(".gz")
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as source, open(target, "wb") as copy:
      shutil.copyfileobj(source, copy)
  return folder


def whole_commands(args, name: str) -> dict:
  """Per epoch count E of --whole-epochs, a 10-fold fair run of E epochs
  as whole processes: PyG's example pipeline (pyg_example.py: TUDataset,
  ToDense on the fly, DenseDataLoader, fold after fold, validation and
  test every epoch) from raw files it has not processed yet, and our
  command with the `pyg` preset, cold (empty compile cache and data
  cache) then warm (the caches the cold run left). Early stopping is off
  on our side (patience E), so both train every epoch."""
  splits = str(Path(args.splits, f"{name}_splits.json").resolve())
  env, pin = thread_env(args.threads), pin_to_cpus(args.threads)
  rows = {}
  for epochs in args.whole_epochs:
    with tempfile.TemporaryDirectory() as folder:
      folder = Path(folder)
      pyg = timed_process(
          [sys.executable, "-m", "experiments.benchmarks.pyg_example",
           "--root", str(raw_copy(args.data_root, name, folder / "pyg")),
           "--name", name, "--splits", splits, "--epochs", str(epochs),
           "--threads", str(args.threads)], env, pin)
      ours_line = [sys.executable, "-m", "experiments.train", "--dataset",
                   name, "--data-root", str(Path(args.data_root).resolve()),
                   "--preset", "pyg", "--protocol", "fair", "--splits",
                   splits, "--folds", "10", "--epochs", str(epochs),
                   "--patience", str(epochs), "--out", str(folder / "ours"),
                   "--quiet", "--overwrite", "--compile-cache",
                   str(folder / "xla")]
      ours_env = {**env, "DIFFPOOL_JAX_DATA": str(folder / "data")}
      cold = timed_process(ours_line, ours_env, pin)
      warm = timed_process(ours_line, ours_env, pin)
    rows[str(epochs)] = {"pyg": pyg, "ours_cold": cold, "ours_warm": warm,
                         "command": ours_line[1:]}
    print_whole_row(epochs, rows[str(epochs)])
  return rows


def print_whole_row(epochs: int, row: dict) -> None:
  pyg, cold, warm = row["pyg"], row["ours_cold"], row["ours_warm"]
  print(f"    whole commands, 10 folds x {epochs} epochs: PyG's example "
        f"pipeline {pyg['seconds']:.1f} s (peak {pyg['peak_gib']:.2f} GiB); "
        f"ours cold {cold['seconds']:.1f} s (peak {cold['peak_gib']:.2f} "
        f"GiB): {ratio(cold['seconds'], pyg['seconds'])} PyG's pace; warm "
        f"{warm['seconds']:.1f} s: {ratio(warm['seconds'], pyg['seconds'])}"
        f"; memory {cold['peak_gib'] / pyg['peak_gib']:.1f}x PyG's",
        flush=True)
  dropped = json.loads(pyg["last_line"]).get("dropped", 0)
  if dropped:
    print(f"    (PyG's side dropped {dropped} graphs over its 150 nodes, as "
          "its example does; ours trained on all of them)", flush=True)


def ratio(pyg: float, ours: float) -> str:
  return f"{ours / pyg:.2f}x"


def print_table(report: dict) -> None:
  print(f"\nthreads: {report['threads']} (torch and XLA), batch {BATCH}, "
        f"medians of {report['repeats']} repeats after warm-up")
  print(" | ".join(("data set", "PyG N", "PyG params", "our params",
                    "PyG train g/s", "our train g/s", "ratio",
                    "PyG eval g/s", "our eval g/s", "ratio")))
  for name, entry in report["datasets"].items():
    parity = entry["parity"]
    print(f"{name}: parity max |log-prob diff| "
          f"{parity['log_prob_max_abs_diff']:.2e}, link rel "
          f"{parity['link_relative_diff']:.1e}, entropy rel "
          f"{parity['entropy_relative_diff']:.1e}")
    peak = entry["ours"]["peak_matmul_gflops"]
    for key, pyg in entry["pyg"].items():
      if key == "peak_rss_mib":
        continue
      ours = entry["ours"][key]
      row = (name, pyg["max_nodes"], pyg["parameters"], ours["parameters"],
             f"{pyg['train_graphs_per_second']:.0f}",
             f"{ours['train_graphs_per_second']:.0f}",
             ratio(pyg["train_graphs_per_second"],
                   ours["train_graphs_per_second"]),
             f"{pyg['eval_graphs_per_second']:.0f}",
             f"{ours['eval_graphs_per_second']:.0f}",
             ratio(pyg["eval_graphs_per_second"],
                   ours["eval_graphs_per_second"]))
      print(" | ".join(str(v) for v in row))
      print(f"    ours: compile {ours['compile_seconds']:.1f} s, "
            f"{ours['real_gflops']:.1f} GFLOP/s real work "
            f"({100 * ours['peak_fraction_real']:.1f} % of the "
            f"{peak:.0f} GFLOP/s matmul "
            f"peak), {ours['padded_gflops']:.1f} GFLOP/s padded; PyG "
            f"dropped {pyg['graphs_dropped']} graphs over {pyg['max_nodes']}"
            " nodes")
      rates = ours["level2_matmul_gflops"]
      best = max(peak, *rates.values())
      ceiling = pyg["epoch_seconds"] * best / ours["padded_gflop_per_epoch"]
      print(f"    ceiling: our epoch's FLOPs at the best matmul rate "
            f"measured ({best:.0f} GFLOP/s) would take 1/{ceiling:.1f} of "
            f"PyG's epoch; 5x needs {500 / ceiling:.0f} % of that rate over "
            "the whole epoch; level-2 matmuls alone, GFLOP/s: "
            + ", ".join(f"{name} {rate:.0f}" for name, rate in rates.items()))
      if "cv_seconds" in pyg:
        print(f"    10 folds x {report['cv_epochs']} epochs (train + test): "
              f"PyG folds in sequence {pyg['cv_seconds']:.1f} s; ours "
              f"vmapped {ours['cv_seconds']:.1f} s (compile included, "
              f"buckets {ours['cv_buckets']} at effort "
              f"{ours['cv_effort']}, as a {report['cv_epochs']}-epoch run "
              "chooses; "
              f"{ratio(ours['cv_seconds'], pyg['cv_seconds'])} faster), ours "
              f"fold after fold {ours['cv_sequential_seconds']:.1f} s; "
              f"epochs after the first: vmapped "
              f"{ours['cv_steady_seconds']:.1f} s, fold after fold "
              f"{ours['cv_sequential_steady_seconds']:.1f} s")
    paper = entry["ours"]["paper_per_graph"]
    largest = entry["pyg"][max((k for k in entry["pyg"] if k.isdigit()),
                               key=int)]
    speedup = ratio(largest["train_graphs_per_second"],
                    paper["train_graphs_per_second"])
    print(f"    ours, `paper` preset with clusters per graph, all graphs "
          f"(buckets {paper['buckets']}; compile effort "
          f"{paper.get('compile_effort', '?')}, as a "
          f"{paper.get('run_epochs', '?')}-epoch run picks): "
          f"{paper['train_graphs_per_second']:.0f} train g/s against PyG at "
          f"N = {largest['max_nodes']}: {speedup}")
    print(f"    peak RSS: PyG {entry['pyg']['peak_rss_mib']:.0f} MiB, ours "
          f"{entry['ours']['peak_rss_mib']:.0f} MiB")


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--data-root", required=True)
  parser.add_argument("--datasets", nargs="+", default=["ENZYMES",
                                                        "PROTEINS"])
  parser.add_argument("--threads", type=int, default=2)
  parser.add_argument("--repeats", type=int, default=3)
  parser.add_argument("--cv-epochs", type=int, default=3)
  parser.add_argument("--buckets", type=int, default=5)
  parser.add_argument("--run-epochs", type=int, default=150,
                      help="the run length whose compile effort the "
                      "`paper` preset line uses (the cost model's choice "
                      "for a run of this many epochs)")
  parser.add_argument("--whole-epochs", type=int, nargs="*",
                      default=[2, 10, 150],
                      help="epoch counts of the whole-command comparison "
                      "(10-fold fair runs of the first data set as whole "
                      "processes; none: skip it)")
  parser.add_argument("--splits", default="../shared/data/splits",
                      help="folder of NAME_splits.json (whole commands)")
  parser.add_argument("--whole-only", action="store_true",
                      help="only the whole-command comparison")
  parser.add_argument("--out", default="runs/benchmark.json")
  parser.add_argument("--child", choices=sorted(SIDES), help=argparse.SUPPRESS)
  parser.add_argument("--dataset", help=argparse.SUPPRESS)
  args = parser.parse_args(argv)
  if args.child:
    emit(SIDES[args.child](args))
    return 0
  report = {"threads": args.threads, "repeats": args.repeats,
            "cv_epochs": args.cv_epochs, "datasets": {}}
  if not args.whole_only:
    for name in args.datasets:
      report["datasets"][name] = {side: side_figures(side, name, args)
                                  for side in ("parity", "pyg", "ours")}
    print_table(report)
  if args.whole_epochs:
    write_report(args.out, report)        # kept if a whole command fails
    print(f"\n{args.datasets[0]}, whole processes on {args.threads} CPUs:")
    report["whole_commands"] = whole_commands(args, args.datasets[0])
  write_report(args.out, report)
  return 0


if __name__ == "__main__":
  sys.exit(main())
