"""diffpool-report: the Markdown rows come from the run folders (figures,
protocol, commit, command, machine), and bad folders are named."""

import json

import pytest

from diffpool_jax.cli import report, train
from diffpool_jax.run.loop import source_commit
from tests.test_train_command import write_config


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
  """A tiny run of the train command, with a flat baseline beside it."""
  tmp_path = tmp_path_factory.mktemp("report")
  config = write_config(tmp_path, folds=2, epochs=2, baseline="flat")
  out = tmp_path / "run"
  train.main(["--config", str(config), "--out", str(out), "--quiet",
              "--no-plots", "--compile-cache", "off"])
  return out


def cells(line):
  return [c.strip() for c in line.strip().strip("|").split(" | ")]


def test_a_row_per_results_file_with_its_figures_commit_and_command(trained):
  lines = report.table([trained]).splitlines()
  assert cells(lines[0]) == list(report.COLUMNS)
  assert len(lines) == 4                       # header, rule, run, baseline
  for line, folder in zip(lines[2:], [trained, trained / "baseline_flat"]):
    results = json.loads((folder / "results.json").read_text())
    row = dict(zip(report.COLUMNS, cells(line)))
    assert row["data set"] == "synthetic" and row["protocol"] == "paper"
    assert row["model"] == results["preset"]
    assert row["score"] == (f"accuracy {100 * results['score']:.2f} ± "
                            f"{100 * results['std']:.2f} %")
    assert row["folds x seeds x points"] == "2 x 1 x 1"
    assert row["epochs run"] == "2"
    assert row["commit"] == (source_commit() or "unknown")
    assert row["machine"].endswith("x cpu") and "CPU cores" in row["machine"]
    assert row["command"].startswith("`diffpool-train --config ")
    assert f"--out {trained}" in row["command"]
    assert results["command_seconds"] > results["wall_seconds"]


def test_the_table_is_written_atomically_with_out(trained, tmp_path):
  target = tmp_path / "table.md"
  assert report.main([str(trained), "--out", str(target)]) == 0
  assert target.read_text() == report.table([trained])
  assert [p.name for p in tmp_path.iterdir()] == ["table.md"]


def test_bad_folders_and_files_are_named(trained, tmp_path):
  with pytest.raises(SystemExit, match="report: .*nothere does not exist"):
    report.main([str(tmp_path / "nothere")])
  (tmp_path / "empty").mkdir()
  with pytest.raises(SystemExit, match="empty holds no results.json"):
    report.main([str(tmp_path / "empty")])
  damaged = tmp_path / "damaged"
  damaged.mkdir()
  (damaged / "results.json").write_text('{"dataset": "x",\n "accuracy": }')
  with pytest.raises(SystemExit, match=r"damaged/results.json: line 2: "):
    report.main([str(damaged)])
  (damaged / "results.json").write_text('{"dataset": "x"}')
  with pytest.raises(SystemExit, match="not a run's results .no preset, "
                     "protocol, score, std, metric"):
    report.main([str(damaged)])
  (damaged / "results.json").write_bytes(b'\xff\xfe{"dataset": "x"}')
  with pytest.raises(SystemExit, match=r"damaged/results.json: not UTF-8 "
                     r"text \(byte 0: invalid start byte\)"):
    report.main([str(damaged)])
  good = json.loads((trained / "results.json").read_text())
  for key, value, message in [
      ("metric", "f1", r"metric='f1' is not one of \('accuracy'"),
      ("score", "high", r"score='high' is not a number")]:
    (damaged / "results.json").write_text(json.dumps({**good, key: value}))
    with pytest.raises(SystemExit, match=message):
      report.main([str(damaged)])
