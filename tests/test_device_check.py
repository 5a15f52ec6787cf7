"""The device check (experiments.benchmarks.device) runs end to end on tiny
inputs, so that it works the day a GPU is lent; its figures mean nothing
here."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from experiments.benchmarks import device

REPO = Path(__file__).resolve().parents[1]
# Every part function once; the determinism part's child gets XLA flags
# through its environment.
QUICK_PARTS = ("environment", "tests", "pyg_epoch:ENZYMES", "paper_epoch:DD",
               "fair_run:float32", "members:1000", "compile_times",
               "determinism:")


def test_quick_check_runs_every_part(tmp_path):
  out = tmp_path / "report.json"
  done = subprocess.run(
      [sys.executable, "-m", "experiments.benchmarks.device", "--quick",
       "--out", str(out), "--parts", *QUICK_PARTS],
      cwd=REPO, capture_output=True, text=True, timeout=900)
  assert done.returncode == 0, done.stderr[-3000:]
  parts = json.loads(out.read_text())["parts"]
  expected = {p.name for p in device.PARTS
              if any(p.name.startswith(prefix) for prefix in QUICK_PARTS)}
  assert set(parts) == expected
  for name, result in parts.items():
    assert "error" not in result, (name, result["error"])
    if "skipped" in result:     # only the peer, where torch is missing
      assert name.endswith(":pyg") and not device.has_pyg(), name
  assert parts["tests"]["returncode"] == 0
  assert "passed" in parts["tests"]["summary"]
  strict = parts["determinism:deterministic_ops"]
  assert strict["identical"]      # the CPU is deterministic
  assert "--xla_gpu_deterministic_ops=true" in strict["xla_flags"]
  assert parts["members:1000"]["members"] == device.QUICK_MEMBERS[1000]
  assert parts["compile_times"]["warm"]["compile_seconds"] < \
      parts["compile_times"]["cold"]["compile_seconds"]
  table = done.stdout
  assert "device: cpu" in table and "budget" in table
  assert "reference tests on the device:" in table
  assert "DD: one member's training epoch" in table
  assert "members side by side" in table
  assert ("two identical runs with --xla_gpu_deterministic_ops=true: "
          "metrics identical True") in table


def test_reference_test_selection_exists():
  for path in device.REFERENCE_TESTS:
    assert (REPO / path).is_file(), path
  assert (REPO / device.QUICK_TEST.split("::")[0]).is_file()


def test_copy_data_names_what_is_missing(tmp_path):
  with pytest.raises(SystemExit, match=r"tu/ENZYMES not found"):
    device.copy_data(tmp_path / "shared", tmp_path / "data")


def test_a_failed_part_is_reported_not_fatal(capsys):
  report = {"parts": {"environment": {"error": "boom\nRuntimeError: no GPU"},
                      "members:1": {"skipped": "time budget spent"}}}
  device.print_table(report)
  out = capsys.readouterr().out
  assert "environment (FAILED: RuntimeError: no GPU)" in out
  assert "members:1 (skipped: time budget spent)" in out


def test_compile_options_are_tabled_beside_the_default_program(capsys):
  epoch = lambda compile_s, epoch_s: {"compile_seconds": compile_s,
                                      "epoch_seconds": epoch_s,
                                      "train_graphs_per_second": 1.0}
  report = {"parts": {"pyg_epoch:ENZYMES@150:ours": epoch(145.0, 0.0331),
                      "compile_options:buckets=1": epoch(40.0, 0.03),
                      "compile_options:autotune=0": {"error": "timed out"}}}
  device.print_table(report)
  out = capsys.readouterr().out
  assert ("5 buckets 145.0 s / 0.0331 s; buckets=1 40.0 s / 0.0300 s"
          in out)
  assert "compile_options:autotune=0 (FAILED: timed out)" in out
  part = next(p for p in device.PARTS if p.name == "compile_options:autotune=0")
  assert part.env == {"XLA_FLAGS": "--xla_gpu_autotune_level=0"}
