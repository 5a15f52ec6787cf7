"""One run across several processes (jax.distributed, two local CPU
processes with two devices each) gives the results of one process (this
test's, with one device: test_multi_device shows that the device count
changes nothing); a process that never gets its partners ends, bounded."""

import json
import os
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from diffpool_jax.engine import hosts
from diffpool_jax.run import RunConfig, RunFolderError, claim_folder
from tests.test_train_command import TINY

REPO = Path(__file__).resolve().parents[1]
# The fair protocol's validation holdout needs a graph of every class.
FAIR = {**TINY, "synthetic": {**TINY["synthetic"], "num_graphs": 80},
        "protocol": "fair", "folds": 2, "epochs": 2, "batch_size": 8}


def free_port() -> int:
  with socket.socket() as sock:
    sock.bind(("127.0.0.1", 0))
    return sock.getsockname()[1]


def environment(devices: int) -> dict:
  flags = os.environ.get("XLA_FLAGS", "")
  return {**os.environ, "JAX_PLATFORMS": "cpu",
          "XLA_FLAGS": f"{flags} --xla_force_host_platform_device_count="
                       f"{devices}"}


def run_processes(command: list, count: int, devices: int) -> list:
  """`command` in `count` processes started together; their completed
  processes."""
  done = []
  for process in start_processes(command, count, devices):
    out, err = process.communicate(timeout=600)
    done.append(subprocess.CompletedProcess(process.args, process.returncode,
                                            out, err))
  return done


def rows(path: Path) -> list:
  return [json.loads(line) for line in path.read_text().splitlines()]


def assert_same_rows(got: list, want: list) -> None:
  """The same rows, every number within float32 rounding."""
  assert len(got) == len(want)
  for a, b in zip(got, want):
    assert a.keys() == b.keys()
    for key in a:
      if isinstance(a[key], float):
        np.testing.assert_allclose(a[key], b[key], rtol=1e-4, atol=1e-6)
      else:
        assert a[key] == b[key], key


def start_processes(command: list, count: int, devices: int,
                    own_flags: tuple = ()) -> list:
  """`command` in `count` processes joined at a fresh local port;
  `own_flags[i]`, if given, are added to process i's command only."""
  address = f"127.0.0.1:{free_port()}"
  own_flags = own_flags or [[]] * count
  return [subprocess.Popen(
      command + own_flags[i] + [
          "--coordinator", address, "--num-processes", str(count),
          "--process-id", str(i)], cwd=REPO, env=environment(devices),
      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
          for i in range(count)]


@pytest.fixture(scope="module", autouse=True)
def lone_process(tmp_path_factory):
  """A process told to wait 2 s for a partner that never comes, started
  before this file's tests so that its wait overlaps theirs: a future of
  (its completed process, the seconds it ran)."""
  folder = tmp_path_factory.mktemp("lone")
  config = folder / "config.json"
  config.write_text(json.dumps(TINY))
  command = [sys.executable, "-m", "experiments.train", "--config",
             str(config), "--out", str(folder / "run"), "--coordinator",
             f"127.0.0.1:{free_port()}", "--num-processes", "2",
             "--process-id", "0", "--join-timeout", "2"]

  def run():
    start = time.perf_counter()
    done = subprocess.run(command, cwd=REPO, env=environment(1),
                          capture_output=True, text=True, timeout=120)
    return done, time.perf_counter() - start, folder / "run"

  with ThreadPoolExecutor(1) as pool:
    yield pool.submit(run)


def test_two_processes_killed_and_resumed_train_as_one_process(
    tmp_path, train_here):
  """Fair protocol, 2 folds: 2 members on 4 devices, so the members split
  over 2 devices and each batch over 2 (the uneven case). Both processes
  are killed (SIGKILL) after a checkpoint and resumed; the result is that
  of one uninterrupted process."""
  config = tmp_path / "config.json"
  config.write_text(json.dumps({**FAIR, "epochs": 4, "checkpoint_every": 1,
                                "patience": 100}))
  flags = lambda out, *more: ["--config", config, "--out", out, "--quiet",
                              "--no-plots", *more]
  command = lambda out, *more: [sys.executable, "-m", "experiments.train",
                                *map(str, flags(out, *more))]
  whole = tmp_path / "one_process"
  done = train_here(*flags(whole, "--checkpoint-every", "0"))
  assert done.returncode == 0, done.stderr[-3000:]

  killed = tmp_path / "two_processes"
  started = start_processes(command(killed), 2, 2)
  deadline = time.time() + 300
  while not (killed / "checkpoints" / "1").is_dir():    # 2 epochs left
    assert all(p.poll() is None for p in started), started[0].stderr.read()
    assert time.time() < deadline
    time.sleep(0.02)
  for process in started:
    process.kill()
    process.wait()
  assert not (killed / "results.json").exists()
  for done in run_processes(command(killed, "--resume"), 2, 2):
    assert done.returncode == 0, done.stderr[-3000:]

  assert_same_rows(rows(killed / "metrics.jsonl"), rows(whole / "metrics.jsonl"))
  one, two = (json.loads((out / "results.json").read_text())
              for out in (whole, killed))
  assert two["fold_scores"] == one["fold_scores"]
  assert json.loads((killed / "config.json").read_text())["processes"] == 2


def test_two_processes_sweep_as_one_process(tmp_path,
                                            session_compile_cache):
  from diffpool_jax.cli import sweep
  grid = tmp_path / "grid.json"
  grid.write_text(json.dumps({
      "run": {**FAIR, "checkpoint_every": 0},
      "scalar": {"lr": [0.01, 0.001]}}))
  flags = lambda out: ["--grid", str(grid), "--out", str(out), "--quiet"]
  one_process, two_processes = tmp_path / "one", tmp_path / "two"
  assert sweep.main(flags(one_process)) == 0
  for done in run_processes([sys.executable, "-m", "experiments.sweep",
                             *flags(two_processes)], 2, 2):
    assert done.returncode == 0, done.stderr[-3000:]
  assert_same_rows(rows(two_processes / "shape_00" / "metrics.jsonl"),
                   rows(one_process / "shape_00" / "metrics.jsonl"))
  one, two = (json.loads((out / "sweep.json").read_text())
              for out in (one_process, two_processes))
  assert two["selection"]["score"] == pytest.approx(
      one["selection"]["score"])


def test_a_process_without_its_partners_ends_within_the_join_timeout(
    lone_process):
  done, seconds, out = lone_process.result()
  assert done.returncode != 0
  assert seconds < 60
  assert "process 0 of 2: joining at 127.0.0.1:" in done.stderr
  assert "waiting up to 2 s" in done.stderr
  assert not (out / "config.json").exists()


@pytest.mark.parametrize("own_flags, field", [
    ([["--lr", "0.001"], ["--lr", "0.05"]], "--lr"),
    ([["--epochs", "2"], ["--epochs", "3"]], "--epochs"),
])
def test_processes_given_different_commands_refuse_before_writing(
    tmp_path, own_flags, field):
  config = tmp_path / "config.json"
  config.write_text(json.dumps(FAIR))
  out = tmp_path / "run"
  started = start_processes(
      [sys.executable, "-m", "experiments.train", "--config", str(config),
       "--out", str(out), "--quiet", "--no-plots"], 2, 2, own_flags)
  for index, process in enumerate(started):
    _, err = process.communicate(timeout=300)
    assert process.returncode != 0
    assert "Traceback" not in err, err[-3000:]
    line = err.strip().splitlines()[-1]
    assert line.startswith(f"synthetic: process {index} of 2: {field} is ")
    assert line.endswith("start every process with the same command and "
                         "inputs"), line
  assert not out.exists()


@pytest.mark.parametrize("killed", [1, 0])
def test_a_process_whose_partner_dies_ends_soon_in_one_line(tmp_path,
                                                            killed):
  """One process is killed mid-run. The other says so in one line and
  ends at once if it was computing; if it was waiting (in one of orbax's
  barriers, or for process 0's coordination service), the runtime ends it
  with its own fatal report, which nothing in Python can catch, so what
  to do was said first, when it joined. Either way: bounded, no
  traceback, and never a write failure blamed on the disk."""
  config = tmp_path / "config.json"
  config.write_text(json.dumps({**FAIR, "epochs": 40, "checkpoint_every": 1,
                                "patience": 100}))
  out = tmp_path / "run"
  started = start_processes(
      [sys.executable, "-m", "experiments.train", "--config", str(config),
       "--out", str(out), "--quiet", "--no-plots"], 2, 2)
  deadline = time.time() + 300
  while not (out / "checkpoints" / "1").is_dir():
    assert all(p.poll() is None for p in started)
    assert time.time() < deadline
    time.sleep(0.02)
  started[killed].kill()
  started[killed].wait()
  since = time.perf_counter()
  survivor = started[1 - killed]
  _, err = survivor.communicate(timeout=120)
  assert time.perf_counter() - since < 2 * hosts.HEARTBEAT_TIMEOUT
  assert survivor.returncode != 0
  assert "Traceback" not in err and "free space" not in err, err[-3000:]
  lines = err.strip().splitlines()
  assert lines[0].startswith(f"process {1 - killed} of 2: joining at ")
  assert lines[0].endswith("restart every process with the same command "
                           "and --resume)")
  assert (lines[-1].startswith(f"process {1 - killed} of 2: lost contact "
                               "with another process (")
          and lines[-1].endswith("restart every process with the same "
                                 "command and --resume")) or (
              "JAX distributed service detected fatal errors" in err), err


def test_auto_without_a_cluster_says_so(tmp_path):
  config = tmp_path / "config.json"
  config.write_text(json.dumps(TINY))
  done = subprocess.run(
      [sys.executable, "-m", "experiments.train", "--config", str(config),
       "--out", str(tmp_path / "run"), "--distributed", "auto"],
      cwd=REPO, env=environment(1), capture_output=True, text=True,
      timeout=120)
  assert done.returncode != 0
  assert ("could not join the processes at the cluster's coordinator "
          "(--distributed auto)") in done.stderr
  assert "Traceback" not in done.stderr


@pytest.mark.parametrize("flags, message", [
    (["--coordinator", "127.0.0.1:1"], "missing: --num-processes, "
     "--process-id"),
    (["--coordinator", "127.0.0.1:1", "--num-processes", "2",
      "--process-id", "2"], "--process-id=2 with --num-processes=2"),
])
def test_process_flags_go_together(tmp_path, flags, message):
  from diffpool_jax.cli import train
  config = tmp_path / "config.json"
  config.write_text(json.dumps(TINY))
  with pytest.raises(SystemExit, match=message):
    train.main(["--config", str(config), "--out", str(tmp_path / "run"),
                *flags])


def test_resume_refuses_another_process_count(tmp_path):
  config = RunConfig(**{**TINY, "epochs": 1})
  (tmp_path / "config.json").write_text(json.dumps(
      {"run": json.loads(json.dumps(__import__("dataclasses").asdict(config))),
       "processes": 2}))
  with pytest.raises(RunFolderError, match="ran on 2 process"):
    claim_folder(tmp_path, config, resume=True, overwrite=False,
                 processes=1)


def test_members_and_batch_that_cannot_fill_every_process_are_refused(
    monkeypatch):
  """2 members and a batch of 7 on 4 devices of 2 processes: the members
  fill 2 devices and the batch cannot split, so 2 would idle; one process
  may leave devices idle, several may not."""
  import jax
  from diffpool_jax.engine import hosts, trainer
  from diffpool_jax.errors import InputError
  devices = jax.devices()[:1] * 4
  with pytest.raises(InputError, match="cannot use all 4 devices"):
    monkeypatch.setattr(hosts, "count", lambda: 2)
    trainer.make_mesh(2, 7, devices)
  monkeypatch.setattr(hosts, "count", lambda: 1)
  assert trainer.make_mesh(2, 7, devices[:2]).shape == {"members": 2,
                                                          "batch": 1}


def test_a_lost_process_is_told_from_other_runtime_errors(monkeypatch):
  heartbeat = RuntimeError("INTERNAL: Barrier failed because: task is set "
                           "to ERROR: UNAVAILABLE: Task 1 heartbeat timeout")
  assert hosts.lost_process(heartbeat) is None        # one process
  monkeypatch.setattr(hosts, "count", lambda: 2)
  assert str(hosts.lost_process(heartbeat)) == (
      "process 0 of 2: lost contact with another process (INTERNAL: "
      "Barrier failed because: task is set to ERROR: UNAVAILABLE: Task 1 "
      "heartbeat timeout); restart every process with the same command "
      "and --resume")
  assert hosts.lost_process(RuntimeError("RESOURCE_EXHAUSTED: out of "
                                         "memory")) is None


def test_a_checkpoint_cut_off_by_a_lost_process_is_not_blamed_on_the_disk(
    tmp_path, monkeypatch):
  import orbax.checkpoint as ocp
  from diffpool_jax.run import store

  def barrier_fails(*args, **kwargs):
    raise ValueError("UNAVAILABLE: Task 1 heartbeat timeout")

  manager = store.checkpoint_manager(tmp_path)
  monkeypatch.setattr(ocp.CheckpointManager, "save", barrier_fails)
  monkeypatch.setattr(hosts, "count", lambda: 2)
  with pytest.raises(hosts.LostProcess, match="lost contact with another"):
    store.save_checkpoint(manager, 0, {"w": np.zeros(3)})


def buffered_output() -> dict:
  """The environment without PYTHONUNBUFFERED: stdout to a pipe is then
  block-buffered, as for a user's command."""
  return {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}


def test_a_finished_command_exits_with_its_code_output_and_exit_handlers(
    tmp_path):
  """`processes.finish` skips only the interpreter's teardown: buffered
  output is written, atexit handlers run (once), the code is the exit
  status."""
  marker = tmp_path / "handler_ran"
  code = ("import atexit, sys\n"
          "from diffpool_jax.cli import processes\n"
          f"atexit.register(lambda: open({str(marker)!r}, 'a').write('x'))\n"
          "sys.stdout.write('buffered, no newline')\n"
          "sys.stderr.write('to stderr')\n"
          "processes.finish(3)\n"
          "print('never')\n")
  done = subprocess.run([sys.executable, "-c", code], cwd=REPO,
                        env=buffered_output(), capture_output=True,
                        text=True, timeout=120)
  assert done.returncode == 3
  assert done.stdout == "buffered, no newline"
  assert done.stderr.endswith("to stderr")
  assert marker.read_text() == "x"


def test_a_finished_command_whose_reader_left_exits_quietly():
  """`diffpool-train ... | head`: the pipe closed before the last output
  is flushed is not an error at the end."""
  code = ("import sys\n"
          "from diffpool_jax.cli import processes\n"
          "sys.stdout.write('still buffered')\n"
          "sys.stdin.read()\n"            # until the reader has gone
          "processes.finish(0)\n")
  child = subprocess.Popen([sys.executable, "-c", code], cwd=REPO,
                           env=buffered_output(),
                           stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True)
  child.stdout.close()
  _, errors = child.communicate("", timeout=120)
  assert child.returncode == 0
  assert "Error" not in errors


def test_a_profiled_command_keeps_the_normal_exit(tmp_path):
  """Under cProfile (which writes its report after the program ends)
  `finish` exits normally, so the profile is written."""
  script = tmp_path / "command.py"
  script.write_text("from diffpool_jax.cli import processes\n"
                    "processes.finish(0)\n")
  profile = tmp_path / "command.prof"
  done = subprocess.run([sys.executable, "-m", "cProfile", "-o",
                         str(profile), str(script)], cwd=REPO,
                        capture_output=True, text=True, timeout=120)
  assert done.returncode == 0, done.stderr[-2000:]
  assert profile.stat().st_size > 0
