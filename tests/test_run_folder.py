"""A run owns its output folder: no silent mixing with another run, resume
only what matches, --overwrite deletes only the run's own outputs."""

import json
import shutil

import numpy as np
import pytest

from diffpool_jax.run import Run, RunConfig, RunFolderError
from tests.test_scale import TINY_RUN


def fit(out, resume=False, overwrite=False, **changes):
  run = Run(RunConfig(**{**TINY_RUN, "checkpoint_every": 1, **changes}), out)
  return run, run.fit(resume=resume, progress=False, overwrite=overwrite)


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
  """The folder of one finished TINY_RUN run (checkpoint every epoch);
  tests work on copies of it."""
  out = tmp_path_factory.mktemp("finished") / "run"
  fit(out)
  return out


@pytest.fixture
def out(finished, tmp_path):
  """A copy of the finished run's folder."""
  return shutil.copytree(finished, tmp_path / "run")


def metrics(out):
  return [json.loads(line) for line in
          (out / "metrics.jsonl").read_text().splitlines()]


def test_a_new_run_never_mixes_with_another_runs_folder(out):
  before = (out / "results.json").read_text()
  with pytest.raises(RunFolderError, match="already holds a run .*resume "
                     ".*overwrite"):
    fit(out, lr=0.01)
  assert (out / "results.json").read_text() == before


def test_overwrite_replaces_the_run_and_keeps_other_files(out):
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
def test_resume_refuses_another_configuration(out, change, field):
  with pytest.raises(RunFolderError, match=f"^resume: {field} was"):
    fit(out, resume=True, **change)


def test_resume_with_more_epochs_extends_the_run(out, tmp_path):
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


def test_the_command_says_what_to_do_in_one_line(out, tmp_path, train_here):
  from tests.test_train_command import arguments, write_config
  done = train_here(*arguments(write_config(tmp_path), out, "--folds", "2",
                               "--epochs", "2"))
  assert done.returncode != 0 and "Traceback" not in done.stderr
  assert "already holds a run" in done.stderr
  assert "--overwrite" in done.stderr


def two_fold_split_file(path, num_graphs=40):
  """Two folds of the 40 graphs in Errica et al.'s format."""
  halves = [list(range(0, 20)), list(range(20, num_graphs))]
  folds = [{"test": test, "model_selection": [
      {"train": train[4:], "validation": train[:4]}]}
           for test, train in ((halves[0], halves[1]),
                               (halves[1], halves[0]))]
  path.write_text(json.dumps(folds))
  return path


def test_resume_refuses_changed_data(tmp_path):
  import dataclasses
  from diffpool_jax.run import load_dataset
  out = tmp_path / "run"
  config = RunConfig(**{**TINY_RUN, "checkpoint_every": 1})
  dataset = load_dataset(config)
  Run(config, out, dataset=dataset).fit(progress=False)
  saved = json.loads((out / "config.json").read_text())["inputs"]
  assert set(saved) == {"data"}
  flipped = dataclasses.replace(dataset, labels=1 - dataset.labels % 2)
  before = (out / "metrics.jsonl").read_text()
  with pytest.raises(RunFolderError, match=r"^resume: the data set \(graphs,"
                     r" labels or features\) changed since the run"):
    Run(config, out, dataset=flipped).fit(resume=True, progress=False)
  assert (out / "metrics.jsonl").read_text() == before
  # the same data resumes
  Run(config, out, dataset=dataset).fit(resume=True, progress=False)


def test_resume_refuses_a_changed_split_file(tmp_path):
  splits = two_fold_split_file(tmp_path / "splits.json")
  out = tmp_path / "run"
  fit(out, splits=str(splits), protocol="fair")
  folds = json.loads(splits.read_text())
  splits.write_text(json.dumps(folds[::-1]))          # two folds swapped
  with pytest.raises(RunFolderError, match="split file's content changed "
                     ".*start a new run"):
    fit(out, resume=True, splits=str(splits), protocol="fair")
  splits.write_text(json.dumps(folds))
  fit(out, resume=True, splits=str(splits), protocol="fair")
