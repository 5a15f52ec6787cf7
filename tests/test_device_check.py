"""The device check (experiments.benchmarks.device) runs end to end on tiny
inputs, so that it works the day a GPU is lent; its figures mean nothing
here."""

import json
import subprocess
import sys
import traceback
from pathlib import Path

import pytest

from experiments.benchmarks import device

REPO = Path(__file__).resolve().parents[1]
# Through the command (a child process per part): the cheapest part, so
# that the driver, its report and its table are tested end to end.
CHILD_PARTS = ("tests",)
# The other part functions, each once, in this process (a child would only
# add the interpreter's start-up; their code is the same). A part's XLA
# flags reach its child: test_a_part_gets_its_flags_in_its_child.
IN_PROCESS_PARTS = ("environment", "compile_options:fast",
                    "pyg_epoch:ENZYMES@150:pyg",
                    "pyg_epoch:ENZYMES@150:ours", "paper_epoch:DD",
                    "fair_run:float32", "members:1000", "determinism",
                    "compile_times")


@pytest.fixture(scope="module")
def quick_parts() -> dict:
  """Each IN_PROCESS_PARTS part's result, run as `--quick --child` runs it."""
  results = {}
  for name in IN_PROCESS_PARTS:
    try:
      results[name] = device.child(device.parse_args(["--quick", "--child",
                                                      name]))
    except Exception:       # reported by the test, with its name
      results[name] = {"error": traceback.format_exc()[-3000:]}
  return results


def test_quick_check_runs_its_parts_in_child_processes(tmp_path):
  out = tmp_path / "report.json"
  done = subprocess.run(
      [sys.executable, "-m", "experiments.benchmarks.device", "--quick",
       "--out", str(out), "--parts", *CHILD_PARTS],
      cwd=REPO, capture_output=True, text=True, timeout=900)
  assert done.returncode == 0, done.stderr[-3000:]
  parts = json.loads(out.read_text())["parts"]
  expected = {p.name for p in device.PARTS
              if any(p.name.startswith(prefix) for prefix in CHILD_PARTS)}
  assert set(parts) == expected
  for name, result in parts.items():
    assert "error" not in result and "skipped" not in result, (name, result)
  assert parts["tests"]["returncode"] == 0
  assert "passed" in parts["tests"]["summary"]
  assert "reference tests on the device:" in done.stdout


def test_a_part_gets_its_flags_in_its_child(monkeypatch):
  """The deterministic-ops part's child runs with this process's XLA flags
  and the part's own; its last line of output is its result."""
  started = []

  def child(command, env, **kwargs):
    started.append((command, env))
    return subprocess.CompletedProcess(command, 0, 'log\n{"figure": 1}\n',
                                       "")
  monkeypatch.setattr(device.subprocess, "run", child)
  monkeypatch.setenv("XLA_FLAGS", "--xla_cpu_flag=1")
  part = next(p for p in device.PARTS
              if p.name == "determinism:deterministic_ops")
  result = device.run_part(part, device.parse_args(["--quick"]), 600)
  assert result["figure"] == 1 and result["seconds"] >= 0
  (command, env), = started
  assert command[command.index("--child") + 1] == part.name
  assert "--quick" in command
  assert env["XLA_FLAGS"] == f"--xla_cpu_flag=1 {device.DETERMINISTIC}"


def test_every_part_is_run_by_the_quick_tests():
  names = {p.name for p in device.PARTS}
  covered = {n for n in names if n.startswith(CHILD_PARTS)}
  covered |= set(IN_PROCESS_PARTS)
  functions = {p.run for p in device.PARTS if p.name in covered}
  assert functions == {p.run for p in device.PARTS}
  assert set(IN_PROCESS_PARTS) <= names


def test_quick_parts_run_in_process(quick_parts, capsys):
  for name, result in quick_parts.items():
    assert "error" not in result, (name, result["error"])
    if "skipped" in result:     # only the peer, where torch is missing
      assert name.endswith(":pyg") and not device.has_pyg(), name
  assert quick_parts["members:1000"]["members"] == device.QUICK_MEMBERS[1000]
  assert quick_parts["fair_run:float32"]["epochs_run"] >= 1
  assert quick_parts["pyg_epoch:ENZYMES@150:ours"]["epoch_seconds"] > 0
  assert quick_parts["compile_options:fast"]["effort"] == "fast"
  assert quick_parts["determinism"]["identical"]    # the CPU is deterministic
  times = quick_parts["compile_times"]
  assert times["warm"]["compile_seconds"] < times["cold"]["compile_seconds"]
  device.print_table({"parts": quick_parts})
  table = capsys.readouterr().out
  assert "device: cpu" in table and "budget" in table
  assert "DD: one member's training epoch" in table
  assert "members side by side" in table
  assert "two identical runs: metrics identical True" in table
  assert "ENZYMES fair run, compile (command): cold" in table


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


def test_compile_options_are_tabled_and_give_the_gpu_constants(capsys):
  epoch = lambda compile_s, epoch_s, effort="full": {
      "compile_seconds": compile_s, "epoch_seconds": epoch_s,
      "buckets": [150], "effort": effort, "train_graphs_per_second": 1.0}
  report = {"parts": {"compile_options:fast": epoch(12.0, 0.05, "fast"),
                      "compile_options:full,buckets=1": epoch(40.0, 0.04),
                      "compile_options:full,buckets=2": epoch(70.0, 0.03),
                      "compile_options:auto,ladder": {"error": "timed out"}}}
  device.print_table(report)
  out = capsys.readouterr().out
  assert "fast (buckets [150], fast) 12.0 s / 0.0500 s" in out
  assert ("branch_full 30, base_full 10, fast_one_bucket 12, "
          "slowdown_fast 1.25") in out
  assert "compile_options:auto,ladder (FAILED: timed out)" in out
  part = next(p for p in device.PARTS
              if p.name == "compile_options:full,buckets=1,triton_gemm=0")
  assert part.env == {"XLA_FLAGS": "--xla_gpu_enable_triton_gemm=false"}
  # The compile options come first, right after the environment.
  names = [p.name for p in device.PARTS]
  assert all(n.startswith("compile_options:") for n in names[1:6])
