"""diffpool-table on a tiny synthetic set: its cells are ordinary run
folders whose results.json the table reports, a failing cell is reported
and not fatal, and a table killed mid-cell continues to the table an
uninterrupted run writes."""

import csv
import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from diffpool_jax.cli import table
from diffpool_jax.datasets import READERS, Reader, register_reader
from diffpool_jax.run.store import with_digest
from tests.test_options import OPERATOR_MODULE

REPO = Path(__file__).resolve().parents[1]
TINY = {
    "synthetic": {"num_graphs": 80, "communities": [2, 3],
                  "community_size": [3, 5]},
    "model": {"hidden_dim": 8, "embed_dim": 8, "num_layers": 2,
              "mlp_hidden": [8]},
    "max_buckets": 1, "folds": 2, "checkpoint_every": 1,
    "compile_effort": "fast",
}


def write_config(folder: Path, **changes) -> Path:
  path = folder / "tiny.json"
  path.write_text(json.dumps({**TINY, **changes}))
  return path


def read_csv(path: Path):
  with open(path, newline="") as handle:
    return list(csv.DictReader(handle))


def command(out: Path, config: Path, *more):
  return [sys.executable, "-m", "experiments.table", "--datasets",
          "synthetic", "--config", str(config), "--out", str(out), *more]


def test_cells_are_run_folders_whose_results_the_table_reports(tmp_path):
  config = write_config(tmp_path)
  out = tmp_path / "table"
  done = subprocess.run(command(out, config, "--poolers", "mincut",
                                "--epochs", "2"),
                        cwd=REPO, capture_output=True, text=True, timeout=600)
  assert done.returncode == 0, done.stderr[-3000:]
  rows = read_csv(out / "table.csv")
  assert [(r["dataset"], r["pooler"], r["status"]) for r in rows] == [
      ("synthetic", "mincut", "ok"), ("synthetic", "flat", "ok")]
  for row in rows:
    results = json.loads((out / "synthetic" / row["pooler"] /
                          "results.json").read_text())
    assert float(row["score"]) == results["score"]
    assert float(row["std"]) == results["std"]
    assert float(row["compile_s"]) == results["compile_seconds"]
    assert float(row["epoch_s"]) == results["median_epoch_seconds"]
    assert int(row["epochs_run"]) == results["epochs_run"] == 2
    assert row["command"] == results["command"]
    assert 0.1 < float(row["peak_gib"]) < 24
  run = json.loads((out / "synthetic" / "mincut" / "config.json").read_text())
  assert run["model"]["pooling"] == "mincut"
  flat = json.loads((out / "synthetic" / "flat" / "config.json").read_text())
  assert flat["model"]["pool_ratios"] == [] and \
      flat["run"]["preset"] == run["run"]["preset"] == "paper"
  text = (out / "table.md").read_text()
  assert "| synthetic | mincut | accuracy" in text and \
      (out / "table.png").stat().st_size > 0
  # Run again: every cell is read, none trains (the folders are unchanged;
  # a splits folder without the set's file changes no cell, and says so).
  before = (out / "synthetic" / "mincut" / "metrics.jsonl").stat().st_mtime
  again = subprocess.run(command(out, config, "--poolers", "mincut",
                                 "--epochs", "2", "--splits", str(tmp_path)),
                         cwd=REPO, capture_output=True, text=True,
                         timeout=600)
  assert again.returncode == 0
  assert (f"synthetic: no synthetic_splits.json in --splits {tmp_path}; "
          "its cells make stratified folds of their own") in again.stderr
  assert (out / "synthetic" / "mincut" / "metrics.jsonl").stat(
      ).st_mtime == before
  assert read_csv(out / "table.csv") == rows


def test_a_failing_cell_is_reported_and_the_others_still_run(tmp_path):
  """Own presets: "halved" (registered by --import) has no preset of its
  name, so its cell fails with the train command's message."""
  module = tmp_path / "my_operators.py"
  module.write_text(OPERATOR_MODULE)
  config = write_config(tmp_path)
  out = tmp_path / "table"
  done = subprocess.run(command(out, config, "--poolers", "halved", "mincut",
                                "--backbone", "own", "--epochs", "1",
                                "--import", str(module)),
                        cwd=REPO, capture_output=True, text=True, timeout=600)
  assert done.returncode == 1
  rows = {r["pooler"]: r for r in read_csv(out / "table.csv")}
  assert rows["halved"]["status"].startswith("failed: ")
  assert "unknown preset 'halved'" in rows["halved"]["status"]
  assert rows["mincut"]["status"] == rows["flat"]["status"] == "ok"
  assert json.loads((out / "synthetic" / "flat" / "config.json").read_text()
                    )["run"]["preset"] == "flat"
  assert "failed: " in (out / "table.md").read_text()


def test_a_killed_table_continues_to_the_uninterrupted_table(tmp_path):
  config = write_config(tmp_path)
  whole = tmp_path / "whole"
  flags = ("--poolers", "justbalance", "--epochs", "4", "--quiet")
  done = subprocess.run(command(whole, config, *flags), cwd=REPO,
                        capture_output=True, text=True, timeout=600)
  assert done.returncode == 0, done.stderr[-3000:]

  killed = tmp_path / "killed"
  started = subprocess.Popen(command(killed, config, *flags), cwd=REPO,
                             stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE)
  checkpoint = killed / "synthetic" / "justbalance" / "checkpoints" / "1"
  deadline = time.time() + 300
  while not checkpoint.is_dir():
    assert started.poll() is None, started.stderr.read()
    assert time.time() < deadline
    time.sleep(0.05)
  started.send_signal(signal.SIGKILL)
  started.wait()
  assert not (killed / "synthetic" / "justbalance" / "results.json").exists()
  time.sleep(1.0)                   # the cell's process ended with it
  resumed = subprocess.run(command(killed, config, *flags), cwd=REPO,
                           capture_output=True, text=True, timeout=600)
  assert resumed.returncode == 0, resumed.stderr[-3000:]
  same = ("dataset", "pooler", "status", "metric", "score", "std",
          "epochs_run")
  assert ([{k: r[k] for k in same} for r in read_csv(killed / "table.csv")]
          == [{k: r[k] for k in same} for r in read_csv(whole / "table.csv")])
  for cell in ("justbalance", "flat"):
    assert ((killed / "synthetic" / cell / "metrics.jsonl").read_text()
            == (whole / "synthetic" / cell / "metrics.jsonl").read_text())


def write_rings_and_paths(folder: Path, labels) -> None:
  """A TU set TOY in `folder`: graph g a ring (label 1) or a path (2) of
  4 + g % 3 nodes, with graph labels `labels`."""
  edges, indicator = [], []
  for g in range(len(labels)):
    first, size = len(indicator) + 1, 4 + g % 3
    indicator += [g + 1] * size
    pairs = [(i, i + 1) for i in range(size - 1)]
    if g % 2 == 0:
      pairs.append((size - 1, 0))
    edges += [f"{first + a}, {first + b}\n{first + b}, {first + a}\n"
              for a, b in pairs]
  folder.mkdir(parents=True, exist_ok=True)
  (folder / "TOY_A.txt").write_text("".join(edges))
  (folder / "TOY_graph_indicator.txt").write_text(
      "".join(f"{g}\n" for g in indicator))
  (folder / "TOY_graph_labels.txt").write_text(
      "".join(f"{label}\n" for label in labels))


def test_a_finished_cell_whose_data_changed_is_reported_not_read(tmp_path,
                                                                monkeypatch):
  """The cell's results.json stands only for the data it was trained on:
  with the graph labels changed the row says so (nothing retrains, nothing
  is overwritten); restored, the cell is read again; changed while the
  table runs, the cells trained before the change are reported at the
  end."""
  labels = [1 + g % 2 for g in range(40)]
  write_rings_and_paths(tmp_path / "tu" / "TOY", labels)
  config = write_config(tmp_path)
  out = tmp_path / "table"
  flags = ["--datasets", "TOY", "--data-root", str(tmp_path / "tu"),
           "--config", str(config), "--epochs", "1", "--out", str(out)]
  run = lambda: subprocess.run(
      [sys.executable, "-m", "experiments.table", *flags, "--poolers",
       "flat"], cwd=REPO, capture_output=True, text=True, timeout=600)
  first = run()
  assert first.returncode == 0, first.stderr[-3000:]
  trained = read_csv(out / "table.csv")
  assert trained[0]["status"] == "ok"
  cell = out / "TOY" / "flat"
  results = (cell / "results.json").read_text()
  metrics_time = (cell / "metrics.jsonl").stat().st_mtime

  write_rings_and_paths(tmp_path / "tu" / "TOY", labels[::-1])
  changed = run()
  assert changed.returncode == 1
  status = read_csv(out / "table.csv")[0]["status"]
  assert status.startswith("failed: the class labels or target columns "
                           "changed since this cell trained (fingerprint ")
  assert status.endswith(f"restore them, or delete {cell} to train the "
                         "cell again")
  assert (cell / "results.json").read_text() == results
  assert (cell / "metrics.jsonl").stat().st_mtime == metrics_time

  write_rings_and_paths(tmp_path / "tu" / "TOY", labels)
  restored = run()
  assert restored.returncode == 0, restored.stderr[-3000:]
  assert read_csv(out / "table.csv") == trained

  # Labels changed while a table runs, after its first cell trained: at
  # the end that cell is reported too (the done flat cell when read).
  real_run_cell = table.run_cell

  def run_then_change(argv):
    outcome = real_run_cell(argv)
    write_rings_and_paths(tmp_path / "tu" / "TOY", labels[::-1])
    return outcome
  monkeypatch.setattr(table, "run_cell", run_then_change)
  assert table.main(flags + ["--poolers", "mincut", "--quiet"]) == 1
  rows = read_csv(out / "table.csv")
  assert [r["pooler"] for r in rows] == ["mincut", "flat"]
  for row in rows:
    assert row["status"].startswith("failed: the class labels or target "
                                    "columns changed since this cell")
  assert (out / "TOY" / "mincut" / "results.json").is_file()
  monkeypatch.undo()

  # A cell written by an older version (a RunConfig field and an input
  # name it did not have yet) is checked on what it has
  write_rings_and_paths(tmp_path / "tu" / "TOY", labels)
  saved = json.loads((cell / "config.json").read_text())
  older = {key: value for key, value in saved.items() if key != "digest"}
  older["run"] = {k: v for k, v in saved["run"].items() if k != "format"}
  older["inputs"] = {k: v for k, v in saved["inputs"].items()
                     if k != "targets"}
  (cell / "config.json").write_text(json.dumps(with_digest(older)))
  assert table.changed_input(cell) is None
  write_rings_and_paths(tmp_path / "tu" / "TOY", labels[::-1])
  table.fingerprints_now.cache_clear()
  assert table.changed_input(cell).startswith(
      "the data set (graphs, labels or features) changed since this cell")

  # An edited config.json: the cell's inputs cannot be checked
  saved["run"]["epochs"] += 1
  (cell / "config.json").write_text(json.dumps(saved))
  assert table.changed_input(cell) == (
      f"cannot check the cell's inputs: {cell / 'config.json'} was edited "
      "or damaged since the run wrote it (its content no longer matches "
      f"its digest) (RunFolderError); restore them, or delete {cell} to "
      "train the cell again")


def test_unknown_poolers_and_data_roots(tmp_path):
  with pytest.raises(SystemExit, match=r"--poolers: unknown \['nope'\]"):
    table.pooler_names(["nope"])
  assert table.pooler_names(["mincut", "flat"]) == ["mincut", "flat"]
  assert table.data_root("ENZYMES", [str(tmp_path / "no_such_folder")]) \
      is None


def test_inputs_every_cell_reads_are_checked_before_any_cell(tmp_path):
  out = tmp_path / "out"
  base = ["--datasets", "synthetic", "--out", str(out)]
  bad_json = tmp_path / "bad.json"
  bad_json.write_text("{not json")
  with_baseline = write_config(tmp_path, baseline="flat")
  a_file = tmp_path / "a_file"
  a_file.write_text("")
  for root in ("a", "b"):
    write_rings_and_paths(tmp_path / root / "TOY", [1, 2])
  write_rings_and_paths(tmp_path / "c" / "TOY", [1, 2])
  (tmp_path / "c" / "TOY" / "TOY_A.txt.gz").write_bytes(b"")
  for more, message in (
      (["--data-root", str(tmp_path / "nope")],
       f"--data-root {tmp_path / 'nope'} is not a folder (mistyped?)"),
      (["--splits", str(a_file)], f"--splits {a_file} is not a folder"),
      (["--config", str(bad_json)], f"--config {bad_json}: Expecting"),
      (["--config", str(tmp_path / "none.json")],
       f"--config {tmp_path / 'none.json'}: [Errno 2] No such file"),
      (["--config", str(with_baseline)],
       f"--config {with_baseline}: drop 'baseline'"),
      (["--epochs", "0"], "--epochs: epochs=0; must be >= 1"),
      (["--patience", "-1"], "--patience: patience=-1; must be >= 0"),
      (["--datasets", "TOY", "synthetic", "TOY"],
       "--datasets: TOY named more than once"),
      (["--poolers", "mincut", "dmon", "mincut"],
       "--poolers: mincut named more than once"),
      (["--datasets", "TOY", "--data-root", str(tmp_path / "a"),
        str(tmp_path / "b")],
       f"--data-root: TOY is in both {tmp_path / 'a'} and {tmp_path / 'b'}; "
       "give one root that holds it"),
      (["--datasets", "TOY", "--data-root", str(tmp_path / "c")],
       f"--data-root: TOY: {tmp_path / 'c' / 'TOY'}: two versions of table "
       "TOY_A.txt: TOY_A.txt and TOY_A.txt.gz")):
    with pytest.raises(SystemExit, match=re.escape(message)):
      table.main(base + more)
    assert not out.exists()       # no cell began
  args = table.parse_args(base + ["--patience", "0", "--data-root",
                                   str(tmp_path / "a"), str(tmp_path / "b")])
  table.check_inputs(args)        # synthetic is read from no folder
  assert args.patience == 0 and args.config_values == {}
  # the same root twice, spelled two ways
  with pytest.raises(SystemExit, match=re.escape(
      f"--data-root: {tmp_path / 'a'} named more than once")):
    table.main(base + ["--data-root", str(tmp_path / "a"),
                       str(tmp_path / "b" / ".." / "a")])


def test_sets_without_a_split_file_are_named(tmp_path):
  (tmp_path / "ENZYMES_splits.json").write_text("[]")
  tu = tmp_path / "tu"
  (tu / "MINE").mkdir(parents=True)
  (tu / "MINE" / "MINE_A.txt").write_text("1, 2\n")
  sets = ["ENZYMES", "synthetic", "ogbg-molbace", "MINE"]
  missing = lambda roots, config: table.without_split_file(
      sets, roots, str(tmp_path), config)
  # ogbg- sets have their own fixed split: no file is missing for them
  assert missing([], {}) == ["synthetic", "MINE"]
  # MINE read from a TU folder among other roots: the fair protocol
  assert missing([str(tmp_path / "empty"), str(tu)], {}) == [
      "synthetic", "MINE"]
  assert missing([], {"protocol": "fixed"}) == []
  assert missing([], {"protocol": "fair"}) == ["synthetic", "ogbg-molbace",
                                               "MINE"]
  assert missing([], {"splits": "my_splits.json"}) == []
  assert table.without_split_file(sets, [], None, {}) == []
  # a format of one's own with a fixed split, holding OWN in the second
  # root: the reader a cell would use decides
  register_reader("fixed_own", Reader(
      lambda name, root, features, **options: None,
      lambda root, name: name == "OWN" and root == str(tu),
      protocol="fixed"))
  try:
    own = lambda roots: table.without_split_file(["OWN"], roots,
                                                 str(tmp_path), {})
    assert own([str(tmp_path / "empty"), str(tu)]) == []
    assert own([]) == ["OWN"]                # the download cache: TU's
  finally:
    READERS.pop("fixed_own")
