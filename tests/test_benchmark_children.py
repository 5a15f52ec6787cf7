"""Every benchmark's child path runs here on tiny inputs (a generated TU
set of 40 small graphs), so a renamed library function fails a test
rather than a benchmark nobody ran; and the harness they share reports a
child's failure or overrun as figures, not a traceback."""

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from experiments.benchmarks import harness
from tests.test_tu import write_set


def random_tu_set(root: Path, name: str, graphs: int = 40,
                  seed: int = 0) -> Path:
  """A TU set of `graphs` random connected graphs of 4-12 nodes, two
  classes, three node labels, written into root/name."""
  rng = np.random.default_rng(seed)
  lines, indicator, offset = [], [], 0
  for g in range(graphs):
    n = int(rng.integers(4, 13))
    pairs = [(i, i + 1) for i in range(n - 1)] + [
        tuple(sorted(rng.choice(n, 2, replace=False))) for _ in range(n // 2)]
    for a, b in sorted(set(pairs)):
      lines += [f"{a + offset + 1}, {b + offset + 1}",
                f"{b + offset + 1}, {a + offset + 1}"]
    indicator += [str(g + 1)] * n
    offset += n
  return write_set(root, {
      "A": "\n".join(lines) + "\n",
      "graph_indicator": "\n".join(indicator) + "\n",
      "graph_labels": "\n".join(str(g % 2) for g in range(graphs)) + "\n",
      "node_labels": "\n".join(map(str, rng.integers(0, 3, offset))) + "\n"},
      name)


@pytest.fixture(scope="module")
def tu(tmp_path_factory):
  root = tmp_path_factory.mktemp("tu")
  for name in ("TOY", "ENZYMES", "PROTEINS"):
    random_tu_set(root, name)
  return root


def test_a_child_that_fails_gives_its_last_error_line():
  figures = harness.run_child("tests.benchmark_stub", ["fail"])
  assert figures["ran"] is False
  assert figures["why_not"] == "the child's own error"


def test_a_child_that_overruns_keeps_the_figures_it_emitted():
  figures = harness.run_child("tests.benchmark_stub", ["slow"], timeout=5)
  assert figures["ran"] is False and figures["figure"] == 1
  assert figures["why_not"] == "not done within 5 s"


def test_a_childs_last_json_line_is_its_figures():
  figures = harness.run_child("tests.benchmark_stub", ["ok"])
  assert figures["figure"] == 1 and figures["child_seconds"] > 0


def test_scale(tu, tmp_path, capsys):
  from experiments.benchmarks import scale
  out = tmp_path / "scale.json"
  scale.main(["--dataset", "TOY", "--data-root", str(tu), "--settings",
              "per_graph", "fixed_max", "--repeats", "1", "--batch-size",
              "8", "--no-entry-cost", "--compile-effort", "full", "--out",
              str(out)])
  settings = json.loads(out.read_text())["settings"]
  assert [s["setting"] for s in settings] == ["per_graph", "fixed_max"]
  for setting in settings:
    assert setting["ran"] is True, setting
    assert setting["epoch_seconds"] > 0 and setting["graphs"] == 40
    assert setting["compile_effort"] == "full"
  assert [s["cluster_mode"] for s in settings] == ["per_graph", "fixed"]


def test_scale_entry_cost():
  from experiments.benchmarks import scale
  rows = scale.entry_cost(repeats=1)
  assert len(rows) == 8 and all(r["cost_per_entry"] > 0 for r in rows)


def test_memory(tu, tmp_path, capsys):
  from experiments.benchmarks import memory
  out = tmp_path / "memory.json"
  memory.main(["--dataset", "TOY", "--data-root", str(tu), "--batch-size",
               "4", "--repeats", "1", "--out", str(out)])
  forms = json.loads(out.read_text())
  assert [f["form"] for f in forms] == ["sparse", "dense"]
  assert all(f["ran"] is True and f["step_seconds"] > 0 for f in forms), forms


@pytest.mark.heavy_benchmark
def test_ablation(tu, tmp_path, capsys):
  from experiments.benchmarks import ablation
  out = tmp_path / "ablation.json"
  ablation.main(["--data-root", str(tu), "--repeats", "1", "--buckets", "1",
                 "--out", str(out)])
  report = json.loads(out.read_text())
  assert report["enzymes_epoch_seconds"]["buckets"] > 0
  assert report["link_loss_seconds"]["nodes"] == 12
  assert report["proteins_epoch_seconds"]["all_sparse"] > 0


def test_layer_ab(tu, capsys):
  from experiments.benchmarks import layer_ab
  if shutil.which("git") is None or subprocess.run(
      ["git", "rev-parse", "HEAD"], cwd=harness.REPO,
      capture_output=True).returncode != 0:
    pytest.skip("not a git checkout: layer_ab reads layers.py at revisions")
  layer_ab.main(["HEAD", "--data-root", str(tu), "--dataset", "TOY",
                 "--rounds", "1"])
  assert "HEAD: epoch estimate" in capsys.readouterr().out


@pytest.mark.heavy_benchmark
@pytest.mark.parametrize("side", ["ours", "pyg", "parity"])
def test_speed_benchmark_sides(tu, side, capsys, monkeypatch):
  from experiments.benchmarks import pyg
  if side != "ours":
    pytest.importorskip("torch_geometric",
                        reason="PyG's side needs requirements-bench.txt")
  # PyG's example pads to 150 nodes and the peak is a 4096^2 matmul; the
  # tiny set's own size and a small matmul keep the same path cheap.
  monkeypatch.setattr(pyg, "USUAL_MAX_NODES", 12)
  monkeypatch.setattr(pyg, "peak_matmul_flops", lambda jax, jnp: (
      pyg.matmul_flops(jax, jnp, (256, 256), (256, 256), 1)))
  pyg.main(["--child", side, "--dataset", "TOY", "--data-root", str(tu),
            "--threads", "1", "--repeats", "1", "--cv-epochs", "1",
            "--buckets", "1"])
  figures = harness.last_figures(capsys.readouterr().out)
  assert figures, "the side printed no figures"
  if side == "parity":
    assert figures["log_prob_max_abs_diff"] < 1e-4
  else:
    assert figures["12"]["train_graphs_per_second"] > 0
  if side == "ours":        # the cross-validation compiles as a run would
    assert figures["12"]["cv_effort"] in ("fast", "medium", "full")
    assert figures["12"]["cv_buckets"][-1] >= 12


def test_compile_time(tu, tmp_path, capsys):
  from experiments.benchmarks import compile_time
  out = tmp_path / "compile.json"
  compile_time.main(["--dataset", "TOY", "--data-root", str(tu),
                     "--protocol", "paper", "--out", str(out)])
  report = json.loads(out.read_text())
  assert set(report) == {"cold", "warm"}, report
  assert all(timing["command_seconds"] > 0 for timing in report.values())


def test_compile_time_predicts_each_run_length(tu, tmp_path, capsys):
  from experiments.benchmarks import compile_time
  out = tmp_path / "predict.json"
  compile_time.main(["--predict", "--dataset", "TOY", "--data-root", str(tu),
                     "--out", str(out)])
  rows = json.loads(out.read_text())["schedule"]
  assert [row["epochs"] for row in rows] == [2, 10, 30, 150]
  first, last = rows[0]["predicted"], rows[-1]["predicted"]
  assert set(first) == set(last)
  assert {"fast 1", "medium 1", "full 1"} <= set(first)   # on the CPU
  for pair in first:             # compile once; training grows with epochs
    assert last[pair][0] == pytest.approx(first[pair][0])
    assert last[pair][1] == pytest.approx(75 * first[pair][1])
  assert all("least predicted" in row["choice"] for row in rows)
  assert "150 epochs: compile effort" in capsys.readouterr().out


def errica_splits(path: Path, graphs: int, folds: int = 10) -> Path:
  """An Errica-format split file: fold f tests every folds-th graph."""
  entries = []
  for f in range(folds):
    test = list(range(f, graphs, folds))
    rest = [g for g in range(graphs) if g % folds != f]
    entries.append({"test": test, "model_selection": [
        {"train": rest[len(rest) // 5:], "validation": rest[:len(rest) // 5]}]})
  path.write_text(json.dumps(entries))
  return path


@pytest.mark.heavy_benchmark
def test_whole_commands_time_both_pipelines(tu, tmp_path, capsys):
  pytest.importorskip("torch_geometric",
                      reason="PyG's side needs requirements-bench.txt")
  from experiments.benchmarks import pyg
  errica_splits(tmp_path / "TOY_splits.json", 40)
  out = tmp_path / "whole.json"
  pyg.main(["--data-root", str(tu), "--datasets", "TOY", "--whole-only",
            "--whole-epochs", "1", "--splits", str(tmp_path), "--threads",
            "1", "--out", str(out)])
  row = json.loads(out.read_text())["whole_commands"]["1"]
  example = json.loads(row["pyg"]["last_line"])
  assert example["folds"] == 10 and example["graphs"] == 40
  for side in ("pyg", "ours_cold", "ours_warm"):
    assert row[side]["seconds"] > 0 and row[side]["peak_gib"] > 0
  assert "10 folds x 1 epochs" in capsys.readouterr().out


def test_levers_benchmark_times_each_model_against_the_first(tu, tmp_path,
                                                            capsys):
  from experiments.benchmarks import levers
  out = tmp_path / "levers.json"
  levers.main(["--dataset", "TOY", "--data-root", str(tu), "--repeats", "1",
               "--models", "paper", "paper:input_readout=sum,input_norm=true",
               "--out", str(out)])
  figures = json.loads(out.read_text())["models"]
  assert list(figures) == ["paper", "paper:input_readout=sum,input_norm=true"]
  assert figures["paper"]["ratio_to_first"] == 1.0
  assert figures["paper:input_readout=sum,input_norm=true"][
      "median_epoch_seconds"] > 0
  assert "x1.00" in capsys.readouterr().out
