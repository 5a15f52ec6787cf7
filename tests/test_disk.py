"""A full disk or a lost permission ends a run in one line: no temporary
file or half checkpoint is left, the last good checkpoint and the metrics
stay, and --resume continues once there is space again."""

import errno
import json
import logging
import re
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import numpy as np
import orbax.checkpoint as ocp
import pytest

from diffpool_jax.run import WriteFailure, write_json_atomic
from tests.test_run_folder import fit, metrics


def no_space(*args, **kwargs):
  raise OSError(errno.ENOSPC, "No space left on device")


def test_a_failed_write_changes_nothing_and_leaves_no_temporary(
    tmp_path, monkeypatch):
  path = tmp_path / "results.json"
  write_json_atomic(path, {"accuracy": 0.5})
  write_text = Path.write_text

  def half_then_full(self, text, *args, **kwargs):
    write_text(self, text[:len(text) // 2])
    no_space()

  monkeypatch.setattr(Path, "write_text", half_then_full)
  with pytest.raises(WriteFailure, match=(
      f"^could not write the results to {path}: No space left on device; "
      "the file was not changed$")):
    write_json_atomic(path, {"accuracy": 0.75})
  assert json.loads(path.read_text()) == {"accuracy": 0.5}
  assert sorted(p.name for p in tmp_path.iterdir()) == ["results.json"]


def test_the_reason_is_the_operating_systems_words_however_long_the_path():
  from diffpool_jax.run.store import failure_reason
  long_path = "/tmp/" + "very-long-folder/" * 20 + "ocdbt.process_0/d/05d8"
  tensorstore = ValueError(
      f'RESOURCE_EXHAUSTED: Error writing "w/0" in OCDBT database at local '
      f'file "{long_path}": Failed to write 429258 bytes to file 11: No '
      "space left on device [os_error_code='28']")
  assert failure_reason(tensorstore) == "No space left on device"
  try:
    try:
      raise PermissionError(errno.EACCES, "Permission denied", long_path)
    except OSError as error:
      raise RuntimeError("orbax: save failed") from error
  except RuntimeError as wrapped:
    assert failure_reason(wrapped) == "Permission denied"
  assert failure_reason(ValueError("first line\nsecond")) == "first line"
  assert failure_reason(ValueError()) == "ValueError"


def test_a_checkpoint_that_does_not_fit_keeps_the_last_one(tmp_path,
                                                           monkeypatch):
  save = ocp.CheckpointManager.save

  def full_at_epoch_one(manager, step, *args, **kwargs):
    if step != 1:
      return save(manager, step, *args, **kwargs)
    partial = Path(manager.directory) / "1.orbax-checkpoint-tmp-7"
    (partial / "default").mkdir(parents=True)
    (partial / "default" / "d").write_bytes(b"half")
    no_space()

  monkeypatch.setattr(ocp.CheckpointManager, "save", full_at_epoch_one)
  absl = logging.getLogger("absl")
  level = absl.level
  out = tmp_path / "run"
  with pytest.raises(WriteFailure, match=(
      "^could not write the checkpoint of epoch 1 to .*checkpoints: .*No "
      "space left on device; the earlier checkpoints are kept; free space "
      r".*, then continue the run with resume$")):
    fit(out, epochs=3)
  # orbax's writing threads may log their own failures after this one is
  # reported: their records are dropped from then on, no one else's
  record = lambda path: logging.LogRecord("absl", logging.ERROR, path, 1,
                                          "failed", None, None)
  assert absl.level == level
  assert not absl.filter(record(ocp.__file__))       # orbax's own code
  assert absl.filter(record(__file__))
  assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["0"]
  assert not list(out.rglob("*.tmp"))
  assert sorted({row["epoch"] for row in metrics(out)}) == [0, 1]
  monkeypatch.undo()
  _, results = fit(out, resume=True, epochs=3)
  assert results["epochs_run"] == 3
  fit(tmp_path / "whole", epochs=3)
  resumed, whole = metrics(out), metrics(tmp_path / "whole")
  assert [r["epoch"] for r in resumed] == [r["epoch"] for r in whole]
  np.testing.assert_allclose([r["train_loss"] for r in resumed],
                             [r["train_loss"] for r in whole], rtol=1e-5)


# A checkpoint of the run below (3 layers, 2 levels, 10 folds: about 190
# arrays) takes about 1 MiB: these sizes fail a checkpoint part way,
# while orbax's writing threads are busy (each printed a traceback, 182
# in all, before store.drop_closed_loop_errors), the first or a later one.
DISK_SIZES = ("700k", "1500k")
MODEL = {"hidden_dim": 8, "embed_dim": 8, "mlp_hidden": [8]}


@pytest.fixture(params=DISK_SIZES)
def small_disk(tmp_path, request):
  """A small tmpfs (root and mount needed, else the test is skipped), and
  a callable giving it more room."""
  where = tmp_path / f"disk-{uuid.uuid4().hex[:6]}"
  where.mkdir()
  mount = ["mount", "-t", "tmpfs", "-o", f"size={request.param}", "tmpfs",
           str(where)]
  if shutil.which("mount") is None or subprocess.run(
      mount, capture_output=True).returncode != 0:
    pytest.skip("cannot mount a small tmpfs here (needs root)")
  grow = lambda: subprocess.run(["mount", "-o", "remount,size=8m",
                                 str(where)], check=True)
  yield where, grow
  subprocess.run(["umount", str(where)], check=True)


def test_the_command_on_a_full_disk_says_so_in_one_line_and_resumes(
    small_disk):
  """In a process of its own: orbax's threads report through the
  interpreter's hooks, which pytest replaces in its own process."""
  from tests.test_train_command import arguments, write_config
  disk, grow = small_disk
  config = write_config(disk.parent, model=MODEL)
  flags = arguments(config, disk / "run", "--epochs", "3",
                    "--checkpoint-every", "1", "--no-plots")
  train = lambda *more: subprocess.run(
      [sys.executable, "-m", "diffpool_jax.cli.train", *flags, *more],
      capture_output=True, text=True, timeout=600)
  done = train()
  assert done.returncode == 1
  lines = done.stderr.strip().splitlines()
  assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
  failed = re.search(r"could not write the (checkpoint of epoch (\d)|"
                     r"metrics)", lines[0])
  assert failed, lines[0]
  assert "No space left on device" in lines[0] and "--resume" in lines[0]
  if failed.group(2):
    kept = sorted(p.name for p in (disk / "run" / "checkpoints").iterdir())
    assert kept == [str(e) for e in range(int(failed.group(2)))][-2:]
  grow()
  again = train("--resume")
  assert again.returncode == 0, again.stderr
  assert json.loads((disk / "run" / "results.json").read_text())[
      "epochs_run"] == 3
