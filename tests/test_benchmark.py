"""The speed benchmark's own logic (no torch needed): CPU pinning of its
child processes and the ceiling line of its table."""

import os
import subprocess
import sys

import pytest

from experiments.benchmarks import pyg as benchmark


def test_pin_to_cpus_limits_the_child():
  done = subprocess.run(
      [sys.executable, "-c", "import os; print(len(os.sched_getaffinity(0)))"],
      capture_output=True, text=True, check=True,
      preexec_fn=benchmark.pin_to_cpus(1))
  assert done.stdout.strip() == "1"


def test_pin_to_cpus_rejects_more_threads_than_cpus():
  usable = len(os.sched_getaffinity(0))
  with pytest.raises(SystemExit, match=f"--threads {usable + 1}"):
    benchmark.pin_to_cpus(usable + 1)


def report(level2_rates: dict) -> dict:
  """A one-row report: PyG's epoch 1 s, ours 0.5 s and 40 GFLOP."""
  pyg = {"max_nodes": 150, "parameters": 10, "train_graphs_per_second": 100.0,
         "eval_graphs_per_second": 300.0, "epoch_seconds": 1.0,
         "graphs_dropped": 0}
  ours = {"parameters": 10, "train_graphs_per_second": 200.0,
          "eval_graphs_per_second": 900.0, "compile_seconds": 1.0,
          "real_gflops": 80.0, "padded_gflops": 80.0,
          "peak_fraction_real": 0.5, "padded_gflop_per_epoch": 40.0,
          "level2_matmul_gflops": level2_rates}
  parity = {"log_prob_max_abs_diff": 1e-6, "link_relative_diff": 1e-6,
            "entropy_relative_diff": 1e-6}
  return {"threads": 2, "repeats": 1, "cv_epochs": 1, "datasets": {
      "SET": {"parity": parity,
              "pyg": {"150": pyg, "peak_rss_mib": 1.0},
              "ours": {"150": ours, "peak_matmul_gflops": 160.0,
                       "peak_rss_mib": 1.0,
                       "paper_per_graph": {"buckets": [20, 150],
                                           "train_graphs_per_second": 1000.0}
                       }}}}


def test_ceiling_uses_the_large_matmul_peak(capsys):
  benchmark.print_table(report({"first_layer": 100.0}))
  out = capsys.readouterr().out
  # 40 GFLOP at 160 GFLOP/s: 0.25 s, 1/4.0 of PyG's 1 s; 5x needs 125 %.
  assert "(160 GFLOP/s) would take 1/4.0 of PyG's epoch" in out
  assert "5x needs 125 % of that rate" in out
  assert "| 2.00x |" in out
  assert ("1000 train g/s against PyG at N = 150: 10.00x" in out)


def test_ceiling_uses_a_faster_model_matmul(capsys):
  benchmark.print_table(report({"first_layer": 200.0, "aggregation": 50.0}))
  out = capsys.readouterr().out
  assert "(200 GFLOP/s) would take 1/5.0 of PyG's epoch" in out
  assert "5x needs 100 % of that rate" in out
  assert "first_layer 200, aggregation 50" in out


def test_scale_stand_in_graphs_are_simple_undirected_graphs():
  import numpy as np
  from experiments.benchmarks import scale
  rng = np.random.default_rng(0)
  for make, n in ((scale.thread_graph, 300), (scale.ego_graph, 60)):
    entries = make(rng, n)
    pairs = {tuple(e) for e in entries.tolist()}
    assert len(pairs) == len(entries)                  # no duplicates
    assert all((j, i) in pairs for i, j in pairs)      # both directions
    assert entries.min() >= 0 and entries.max() < n
    assert not np.any(entries[:, 0] == entries[:, 1])  # no self-loops
  # Threads are sparse (a tree plus a few edges); ego networks dense.
  assert len(scale.thread_graph(rng, 1000)) < 3 * 1000
  assert len(scale.ego_graph(rng, 100)) > 0.2 * 100 * 100
  sizes = scale.graph_sizes(rng, 500, 50, 0.8, 10, 400)
  assert sizes.min() >= 10 and sizes.max() == 400


def test_raw_copy_decompresses_the_tu_files_for_pyg(tmp_path):
  import gzip
  source = tmp_path / "tu" / "TOY"
  source.mkdir(parents=True)
  with gzip.open(source / "TOY_A.txt.gz", "wt") as handle:
    handle.write("1, 2\n2, 1\n")
  (source / "TOY_graph_labels.txt").write_text("0\n")
  (source / "README.txt").write_text("not a table")
  folder = benchmark.raw_copy(str(tmp_path / "tu"), "TOY", tmp_path / "pyg")
  raw = folder / "TOY" / "raw"
  assert sorted(p.name for p in raw.iterdir()) == ["TOY_A.txt",
                                                   "TOY_graph_labels.txt"]
  assert (raw / "TOY_A.txt").read_text() == "1, 2\n2, 1\n"


def test_timed_process_gives_wall_peak_and_last_line():
  timing = benchmark.timed_process(
      [sys.executable, "-c", "x = bytearray(200 * 2**20); print('a'); "
       "print('done')"], dict(os.environ), None)
  assert timing["last_line"] == "done"
  assert timing["seconds"] > 0
  assert timing["peak_gib"] > 0.19           # the child's own 200 MiB


def test_timed_process_names_the_command_that_failed():
  with pytest.raises(SystemExit, match="failed:\nboom"):
    benchmark.timed_process(
        [sys.executable, "-c", "import sys; sys.exit('bo' + 'om')"],
        dict(os.environ), None)
