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
    (dict(epochs=1), "epochs"), (dict(features="degree"), "features")])
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
  # which code trained which epochs (here one commit, twice)
  commit = results["commit"]
  assert results["segments"] == [{"from_epoch": 0, "commit": commit},
                                 {"from_epoch": 2, "commit": commit}]
  assert json.loads((out / "config.json").read_text())["segments"] == (
      results["segments"])


def test_a_run_saved_before_segments_resumes_from_an_unknown_commit(out):
  saved = json.loads((out / "config.json").read_text())
  del saved["segments"]
  saved.pop("digest")
  (out / "config.json").write_text(json.dumps(saved))
  _, results = fit(out, resume=True, epochs=3)
  assert results["segments"] == [{"from_epoch": 0, "commit": None},
                                 {"from_epoch": 2,
                                  "commit": results["commit"]}]


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
  assert set(saved) == {"data", "targets", "node_inputs", "edge_inputs",
                        "official_split"}
  flipped = dataclasses.replace(dataset, labels=1 - dataset.labels % 2)
  before = (out / "metrics.jsonl").read_text()
  with pytest.raises(RunFolderError, match=r"^resume: the class labels or "
                     r"target columns changed since the run"):
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


# --- config.json edited or damaged: refused before anything changes ------

def edit_config(out, edit, keep_digest=True):
  """Applies `edit` to the saved config.json's content (optionally dropping
  its digest, as files written before digests were recorded)."""
  path = out / "config.json"
  saved = json.loads(path.read_text())
  edit(saved)
  if not keep_digest:
    saved.pop("digest")
  path.write_text(json.dumps(saved))
  return path.read_bytes()


def unchanged_after_refusal(out, message, **changes):
  """Resumes `out`, expecting RunFolderError matching `message`; checks
  that no file of the run changed."""
  before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
  with pytest.raises(RunFolderError, match=message) as refused:
    fit(out, resume=True, **changes)
  assert "\n" not in str(refused.value)
  assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before


@pytest.mark.parametrize("edit", [
    lambda saved: saved["run"].pop("epochs"),
    lambda saved: saved["run"].update(epochs=1),
    lambda saved: saved["model"].update(hidden_dim=16)])
def test_resume_refuses_an_edited_config_file(out, edit):
  edit_config(out, edit)
  unchanged_after_refusal(out, "config.json was edited or damaged since the "
                          "run wrote it")


def test_resume_refuses_a_config_file_without_a_field(out):
  edit_config(out, lambda saved: saved["run"].pop("epochs"),
              keep_digest=False)
  unchanged_after_refusal(out, "lacks field.s. epochs; it was edited")


def test_resume_refuses_a_checkpoint_that_does_not_fit_the_config(out):
  edit_config(out, lambda saved: saved["run"].update(epochs=1),
              keep_digest=False)
  unchanged_after_refusal(out, r"checkpoint .*checkpoints.1 does not fit the "
                          "run in config.json")


def per_parameter_adam(hyper):
  """The default optimizer as versions before the flat one kept its state:
  Adam's moments per parameter."""
  import optax
  return optax.chain(optax.clip_by_global_norm(hyper.clip),
                     optax.add_decayed_weights(hyper.weight_decay),
                     optax.adam(hyper.lr))


def test_resume_refuses_a_checkpoint_of_another_train_state(tmp_path):
  out = tmp_path / "run"
  config = RunConfig(**{**TINY_RUN, "checkpoint_every": 1})
  Run(config, out, optimizer=per_parameter_adam).fit(progress=False)
  unchanged_after_refusal(out, r"checkpoint .*checkpoints.1 does not fit the "
                          r"run .*a version of diffpool_jax with the same "
                          r"train state \(config.json's segments name the "
                          r"commits")


@pytest.mark.parametrize("content", ["{\"run\": {\"epo", "[1, 2]", ""])
def test_resume_refuses_a_damaged_config_file(out, content):
  (out / "config.json").write_text(content)
  unchanged_after_refusal(out, "cannot read|holds no run")


def test_resume_refuses_an_invalid_resumable_value(out):
  edit_config(out, lambda saved: saved["run"].update(epochs="two"),
              keep_digest=False)
  unchanged_after_refusal(out, "config.json is not valid: epochs")


# --- claiming a folder is atomic ------------------------------------------

def test_of_claims_at_the_same_moment_exactly_one_wins(tmp_path):
  import threading
  from diffpool_jax.run import FolderLock, claim_folder, write_json_atomic

  config = RunConfig(**TINY_RUN)

  def claim(out, outcome, start):
    start.wait()
    try:
      lock = FolderLock(out)
    except RunFolderError as error:
      outcome.append(("in use", str(error)))
      return
    try:
      claim_folder(out, config, resume=False, overwrite=False)
      write_json_atomic(out / "config.json", {"run": {}})
      outcome.append(("won", ""))
    except RunFolderError as error:
      outcome.append(("refused", str(error)))
    finally:
      lock.release()

  for attempt in range(30):
    out, outcome = tmp_path / f"run{attempt}", []
    start = threading.Barrier(6)
    threads = [threading.Thread(target=claim, args=(out, outcome, start))
               for _ in range(6)]
    for thread in threads:
      thread.start()
    for thread in threads:
      thread.join()
    assert [kind for kind, _ in outcome].count("won") == 1, outcome
    for kind, message in outcome:
      assert kind == "won" or "is in use by another command" in message or (
          "already holds a run" in message)


def test_a_failed_start_leaves_no_folder_behind(tmp_path):
  out = tmp_path / "run"
  with pytest.raises(MemoryError):        # its programs do not fit
    fit(out, memory_gib=1e-6)
  assert not out.exists()
