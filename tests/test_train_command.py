"""The main job end to end through `python -m experiments.train`, and
exact resume after SIGKILL."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from diffpool_jax.cli import train


REPO = Path(__file__).resolve().parents[1]
TINY = {
    "synthetic": {"num_graphs": 40, "communities": [2, 3],
                  "community_size": [3, 5]},
    "model": {"hidden_dim": 8, "embed_dim": 8, "num_layers": 2,
              "mlp_hidden": [8], "pool_ratios": [0.5]},
    "max_buckets": 1,
    "protocol": "paper",
}


def write_config(tmp_path, **changes) -> Path:
  path = tmp_path / "config.json"
  path.write_text(json.dumps({**TINY, **changes}))
  return path


def arguments(config: Path, out: Path, *flags) -> list:
  """The train command's arguments: this config file, out folder, quiet."""
  return ["--config", str(config), "--out", str(out), "--quiet", *flags]


def command(config: Path, out: Path, *flags) -> list:
  return [sys.executable, "-m", "experiments.train",
          *arguments(config, out, *flags)]


def read_metrics(out: Path) -> list:
  return [json.loads(line) for line in
          (out / "metrics.jsonl").read_text().splitlines()]


def test_two_folds_two_seeds_three_epochs(tmp_path, train_here):
  out = tmp_path / "run"
  config = write_config(tmp_path)
  done = train_here(*arguments(config, out, "--folds", "2", "--seeds", "2",
                               "--epochs", "3", "--baseline", "flat"))
  assert done.returncode == 0, done.stderr
  assert "mean" in done.stdout and "paper vs flat" in done.stdout
  for name in ("config.json", "metrics.jsonl", "results.json",
               "learning_curves.png", "assignments.png", "hierarchy.png"):
    assert (out / name).is_file(), name
  rows = read_metrics(out)
  assert len(rows) == 2 * 2 * 3
  assert {"epoch", "member", "fold", "seed", "train_loss", "train_acc",
          "test_acc"} <= set(rows[0])
  results = json.loads((out / "results.json").read_text())
  for key in ("fold_scores", "score", "std", "protocol", "note",
              "wall_seconds", "graphs_per_second", "compile_seconds",
              "jax_version", "device", "assignment_nmi"):
    assert key in results, key
  assert len(results["fold_scores"]) == 2
  assert 0 <= results["score"] <= 1
  assert results["protocol"] == "paper" and "optimistic" in results["note"]
  saved = json.loads((out / "config.json").read_text())
  assert saved["run"]["seeds"] == 2 and saved["members"] == 4
  assert (out / "baseline_flat" / "results.json").is_file()


@pytest.mark.parametrize("flags, message", [
    (("--epochs", "0"), "epochs=0; must be >= 1"),
    (("--folds", "1", "--protocol", "fair"), "folds=1; stratified folds"),
    (("--cluster-reference", "p150"), "cluster_reference='p150'"),
    (("--features", "nonsense"), "features='nonsense'"),
    (("--hidden-dim", "0"), "hidden_dim=0"),
    (("--lr", "nan"), "lr=nan"),
    (("--baseline", "nope"), "--baseline 'nope'"),
    (("--splits", "no-such-file.json"), "no-such-file.json"),
    (("--aux-weight", "link"), "--aux-weight 'link': expected NAME=WEIGHT"),
    (("--aux-weight", "link=x"), "--aux-weight 'link=x'"),
    (("--preset", "mincut", "--aux-weight", "link=1"),
     "'link' is not an auxiliary loss of pooling='mincut'"),
    (("--aux-weight", "entropy=-1"), "entropy=-1.0; must be a finite"),
    (("--pooling", "dmon", "--aux-weight", "mincut=1"),
     "'mincut' is not an auxiliary loss of pooling='dmon'"),
    (("--grid", "dropout"), "--grid 'dropout': expected AXIS=V1,V2"),
    (("--grid", "dropout=0,x"), "--grid 'dropout=0,x'"),
    (("--grid", "momentum=0.9"), "unknown axis 'momentum'"),
])
def test_bad_flags_fail_clearly(tmp_path, flags, message,
                                session_compile_cache, capsys):
  """In this process (the command's own exit path is tested below with a
  bad --out): the command stops with SystemExit, never another exception
  (which would print a traceback), and writes nothing."""
  with pytest.raises(SystemExit) as stopped:
    train.main(command(write_config(tmp_path), tmp_path / "run",
                       *flags)[3:])
  said = capsys.readouterr().err + str(stopped.value.code)
  assert stopped.value.code not in (0, None) and message in said, said
  assert not (tmp_path / "run" / "config.json").exists()


def test_mincut_preset_trains_with_its_losses_by_name(tmp_path, train_here):
  """Another pooling operator through the command: its auxiliary losses
  reach metrics.jsonl by name, --aux-weight updates the preset's weights."""
  out = tmp_path / "run"
  done = train_here(*arguments(
      write_config(tmp_path), out, "--preset", "mincut", "--folds", "2",
      "--epochs", "2", "--aux-weight", "ortho=0.5", "--no-plots"))
  assert done.returncode == 0, done.stderr
  rows = read_metrics(out)
  assert {"train_mincut", "train_ortho"} <= set(rows[0])
  assert "train_link" not in rows[0]
  assert all(-1 <= row["train_mincut"] <= 0 for row in rows)
  model = json.loads((out / "config.json").read_text())["model"]
  assert model["pooling"] == "mincut"
  assert dict(map(tuple, model["aux_weights"])) == {"ortho": 0.5}


def test_out_pointing_at_a_file_fails_clearly(tmp_path):
  target = tmp_path / "file.txt"
  target.write_text("mine")
  done = subprocess.run(command(write_config(tmp_path), target),
                        cwd=REPO, capture_output=True, text=True, timeout=120)
  assert done.returncode != 0 and "is a file, not a folder" in done.stderr
  assert "Traceback" not in done.stderr and target.read_text() == "mine"


def test_resume_after_sigkill_matches_uninterrupted_run(tmp_path,
                                                        train_here):
  config = write_config(tmp_path, protocol="fair", folds=2, epochs=16,
                        checkpoint_every=4, patience=100,
                        synthetic={"num_graphs": 120, "communities": [2, 3],
                                   "community_size": [3, 6]})
  whole = tmp_path / "whole"
  done = train_here(*arguments(config, whole, "--no-plots"))
  assert done.returncode == 0, done.stderr

  killed = tmp_path / "killed"
  process = subprocess.Popen(command(config, killed, "--no-plots"), cwd=REPO,
                             stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
  deadline = time.time() + 300
  while not (killed / "checkpoints" / "3").is_dir():
    assert process.poll() is None, "the run ended before its first checkpoint"
    assert time.time() < deadline
    time.sleep(0.02)
  os.kill(process.pid, signal.SIGKILL)
  assert process.wait() == -signal.SIGKILL
  assert not (killed / "results.json").exists()

  resumed = subprocess.run(command(config, killed, "--resume", "--no-plots"),
                           cwd=REPO,
                           capture_output=True, text=True, timeout=600)
  assert resumed.returncode == 0, resumed.stderr
  assert read_metrics(killed) == read_metrics(whole)
  final = [json.loads((d / "results.json").read_text()) for d in
           (whole, killed)]
  for key in ("score", "std", "fold_scores", "selected_epochs"):
    assert final[0][key] == final[1][key]


def test_a_real_data_set_without_protocol_is_fair_and_the_main_job_says_paper():
  """Without --protocol a TU set is trained with Errica et al.'s protocol;
  the main job's config names its (optimistic, one-point) protocol."""
  config, _ = train.build_config(train.parse_args(["--dataset", "MUTAG"]))
  assert config.protocol == "fair"
  config, _ = train.build_config(train.parse_args([]))
  assert config.dataset == "synthetic" and config.protocol == "paper"
  with pytest.raises(SystemExit, match="--protocol='paper' with 2 points"):
    train.build_config(train.parse_args(["--lr", "0.001", "0.01"]))
