"""A run owns its output folder: no silent mixing with another run, resume
only what matches, --overwrite deletes only the run's own outputs."""

import json

import numpy as np
import pytest

from diffpool_jax.run import Run, RunConfig, RunFolderError
from tests.test_scale import TINY_RUN


def fit(out, resume=False, overwrite=False, **changes):
  run = Run(RunConfig(**{**TINY_RUN, "checkpoint_every": 1, **changes}), out)
  return run, run.fit(resume=resume, progress=False, overwrite=overwrite)


def metrics(out):
  return [json.loads(line) for line in
          (out / "metrics.jsonl").read_text().splitlines()]


def test_a_new_run_never_mixes_with_another_runs_folder(tmp_path):
  out = tmp_path / "run"
  fit(out)
  before = (out / "results.json").read_text()
  with pytest.raises(RunFolderError, match="already holds a run .*--resume "
                     ".*--overwrite"):
    fit(out, lr=0.01)
  assert (out / "results.json").read_text() == before


def test_overwrite_replaces_the_run_and_keeps_other_files(tmp_path):
  out = tmp_path / "run"
  fit(out)
  (out / "notes.txt").write_text("mine")
  _, results = fit(out, overwrite=True, lr=0.01)
  assert (out / "notes.txt").read_text() == "mine"
  saved = json.loads((out / "config.json").read_text())
  assert saved["run"]["lr"] == [0.01]
  assert {row["lr"] for row in metrics(out)} == {0.01}
  assert results["epochs_run"] == 2


@pytest.mark.parametrize("change, field", [
    (dict(lr=0.01), "lr"), (dict(preset="flat"), "preset"),
    (dict(model={"aux_weights": {"entropy": 0.5}}), "model"),
    (dict(epochs=1), "epochs")])
def test_resume_refuses_another_configuration(tmp_path, change, field):
  out = tmp_path / "run"
  fit(out)
  with pytest.raises(RunFolderError, match=f"--resume: {field} was"):
    fit(out, resume=True, **change)


def test_resume_with_more_epochs_extends_the_run(tmp_path):
  out = tmp_path / "run"
  first, _ = fit(out)
  _, results = fit(out, resume=True, epochs=4)
  assert results["epochs_run"] == 4
  rows = metrics(out)
  assert sorted({row["epoch"] for row in rows}) == [0, 1, 2, 3]
  again = Run(RunConfig(**{**TINY_RUN, "epochs": 4}), tmp_path / "whole")
  again.fit(progress=False)
  np.testing.assert_allclose(
      [r["train_loss"] for r in rows],
      [r["train_loss"] for r in metrics(tmp_path / "whole")], rtol=1e-5)
  assert json.loads((out / "config.json").read_text())["run"]["epochs"] == 4


def test_resume_and_overwrite_exclude_each_other(tmp_path):
  with pytest.raises(RunFolderError, match="exclude each other"):
    fit(tmp_path / "run", resume=True, overwrite=True)


def test_the_command_says_what_to_do_in_one_line(tmp_path):
  import subprocess
  from tests.test_train_command import REPO, command, write_config
  out = tmp_path / "run"
  fit(out)
  done = subprocess.run(command(write_config(tmp_path), out, "--folds", "2",
                                "--epochs", "2"),
                        cwd=REPO, capture_output=True, text=True, timeout=300)
  assert done.returncode != 0 and "Traceback" not in done.stderr
  assert "already holds a run" in done.stderr
  assert "--overwrite" in done.stderr
