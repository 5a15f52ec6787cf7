"""The persistent compilation cache of command-line runs: where it lives,
turning it off, bad folders, kept traced programs, and a second run
finding the first's programs; in one process, a second run of the same
model reusing them."""

import json
import os
import subprocess

from types import SimpleNamespace

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diffpool_jax.engine import compile_cache
from tests.test_train_command import REPO, command, write_config


def test_folder_precedence(monkeypatch, tmp_path):
  """--compile-cache, then $DIFFPOOL_JAX_COMPILE_CACHE, then JAX's own
  setting, then the data cache folder."""
  monkeypatch.setenv("DIFFPOOL_JAX_DATA", str(tmp_path / "data"))
  monkeypatch.delenv(compile_cache.CACHE_ENV, raising=False)
  jax_config = SimpleNamespace(jax_compilation_cache_dir=None)
  monkeypatch.setattr(compile_cache, "jax", SimpleNamespace(config=jax_config))
  assert compile_cache.cache_folder() == tmp_path / "data" / "xla"
  jax_config.jax_compilation_cache_dir = str(tmp_path / "jax")
  assert compile_cache.cache_folder() == tmp_path / "jax"
  monkeypatch.setenv(compile_cache.CACHE_ENV, str(tmp_path / "env"))
  assert compile_cache.cache_folder() == tmp_path / "env"
  assert compile_cache.cache_folder(str(tmp_path / "flag")) == (
      tmp_path / "flag")
  monkeypatch.setenv(compile_cache.CACHE_ENV, "OFF")
  assert compile_cache.cache_folder() is None


def test_a_folder_that_cannot_be_made_is_refused(tmp_path):
  blocker = tmp_path / "file"
  blocker.write_text("not a folder")
  with pytest.raises(ValueError, match=f"compilation cache {blocker}/xla"):
    compile_cache.enable(str(blocker / "xla"))


def clean_env(tmp_path):
  """The environment without the test suite's own JAX cache settings."""
  env = {k: v for k, v in os.environ.items()
         if not k.startswith("JAX_COMPILATION_CACHE")}
  env["DIFFPOOL_JAX_DATA"] = str(tmp_path / "data")
  env.pop(compile_cache.CACHE_ENV, None)
  return env


def test_a_second_run_reads_the_first_runs_programs(tmp_path):
  """Cold, the run fills the default cache folder (in the data cache
  folder); warm, the same run compiles its epoch programs from it, faster,
  with the same metrics."""
  cache = tmp_path / "data" / "xla"
  config = write_config(tmp_path)
  stages = []
  for name in ("cold", "warm"):
    done = subprocess.run(
        command(config, tmp_path / name, "--folds", "2", "--epochs", "2",
                "--no-plots"),
        cwd=REPO, capture_output=True, text=True, timeout=600,
        env=clean_env(tmp_path))
    assert done.returncode == 0, done.stderr
    stages.append(json.loads((tmp_path / name / "results.json").read_text())
                  ["compile_stages"])
  assert any(cache.iterdir())
  assert len(list((cache / "traced").glob("*.exported"))) == 2
  seconds = [sum(s["train"][k] for k in ("trace", "lower", "compile"))
             for s in stages]
  assert seconds[1] < seconds[0] / 2
  # the traced train program is read back, not traced again
  assert stages[1]["train"]["trace"] < stages[0]["train"]["trace"] / 5
  assert ((tmp_path / "cold" / "metrics.jsonl").read_text()
          == (tmp_path / "warm" / "metrics.jsonl").read_text())


def test_off_writes_no_cache(tmp_path):
  done = subprocess.run(
      command(write_config(tmp_path), tmp_path / "run", "--folds", "2",
              "--epochs", "1", "--no-plots", "--compile-cache", "off"),
      cwd=REPO, capture_output=True, text=True, timeout=600,
      env=clean_env(tmp_path))
  assert done.returncode == 0, done.stderr
  assert not (tmp_path / "data" / "xla").exists()


def step(state, x):
  """A small program with pytrees in and out (state is donated)."""
  return ({"total": state["total"] + x.sum(0), "steps": state["steps"] + 1},
          (x * x).sum())


def step_args():
  return ({"total": jnp.ones(3), "steps": jnp.int32(2)},
          jnp.arange(6.0).reshape(2, 3))


def never_traced(*args):
  raise AssertionError("traced again instead of read back")


def test_program_key_follows_static_values_shapes_and_dtypes():
  key = compile_cache.program_key("step", "model A", step_args())
  assert key == compile_cache.program_key("step", "model A", step_args())
  state, x = step_args()
  assert key != compile_cache.program_key("step", "model B", (state, x))
  assert key != compile_cache.program_key("eval", "model A", (state, x))
  assert key != compile_cache.program_key("step", "model A",
                                          (state, x[:1]))
  assert key != compile_cache.program_key(
      "step", "model A", (state, x.astype(jnp.float16)))


def test_traced_programs_are_kept_read_back_and_retraced_when_damaged(
    monkeypatch, tmp_path):
  monkeypatch.setattr(compile_cache, "_traced_folder", tmp_path)
  expected = jax.jit(step)(*step_args())
  key = compile_cache.program_key("step", None, step_args())
  cold, _ = compile_cache.compile_exported(step, step_args(), key,
                                           donate_argnums=(0,))
  # warm: the kept program runs; tracing `never_traced` would raise
  warm, _ = compile_cache.compile_exported(never_traced, step_args(), key,
                                           donate_argnums=(0,))
  for program in (cold, warm):
    args = step_args()
    out = program(*args)
    assert (jax.tree_util.tree_structure(out)
            == jax.tree_util.tree_structure(expected))
    for got, want in zip(jax.tree_util.tree_leaves(out),
                         jax.tree_util.tree_leaves(expected)):
      np.testing.assert_array_equal(got, want)
    assert args[0]["total"].is_deleted()       # the state was donated
    assert not args[1].is_deleted()
  (tmp_path / f"{key}.exported").write_bytes(b"cut short")
  with pytest.warns(RuntimeWarning, match="cannot be used"):
    again, _ = compile_cache.compile_exported(step, step_args(), key)
  np.testing.assert_array_equal(again(*step_args())[1], expected[1])
  read_back, _ = compile_cache.compile_exported(never_traced, step_args(),
                                                key)
  np.testing.assert_array_equal(read_back(*step_args())[1], expected[1])


@pytest.mark.parametrize("check_bytes", [True, False])
def test_a_kept_program_damaged_in_place_is_traced_again(
    monkeypatch, tmp_path, check_bytes):
  """Bytes of the kept StableHLO flipped, the file's size unchanged: caught
  by its checksum, or (checksum forged, as from other code) by the
  compiler; either way traced again with one warning, same results."""
  import hashlib
  import pickle
  monkeypatch.setattr(compile_cache, "_traced_folder", tmp_path)
  key = compile_cache.program_key("step", None, step_args())
  compile_cache.compile_exported(step, step_args(), key)
  path = tmp_path / f"{key}.exported"
  kept = pickle.loads(path.read_bytes())
  damaged = bytearray(kept["exported"])
  middle = len(damaged) // 3
  damaged[middle:middle + 8] = bytes(b ^ 0xFF for b in
                                     damaged[middle:middle + 8])
  kept["exported"] = bytes(damaged)
  if not check_bytes:
    kept["sha256"] = hashlib.sha256(kept["exported"]).hexdigest()
  size = path.stat().st_size
  path.write_bytes(pickle.dumps(kept))
  assert path.stat().st_size == size
  with pytest.warns(RuntimeWarning, match="cannot be used") as caught:
    program, _ = compile_cache.compile_exported(step, step_args(), key)
  assert len(caught) == 1
  if check_bytes:
    assert "bytes changed" in str(caught[0].message)
  expected = jax.jit(step)(*step_args())
  for got, want in zip(jax.tree_util.tree_leaves(program(*step_args())),
                       jax.tree_util.tree_leaves(expected)):
    np.testing.assert_array_equal(got, want)
  # rewritten: the next compile reads it back without tracing
  compile_cache.compile_exported(never_traced, step_args(), key)


def test_a_cache_folder_that_cannot_be_written_only_costs_tracing(
    monkeypatch, tmp_path):
  blocker = tmp_path / "file"
  blocker.write_text("not a folder")
  monkeypatch.setattr(compile_cache, "_traced_folder", blocker / "traced")
  key = compile_cache.program_key("step", None, step_args())
  program, _ = compile_cache.compile_exported(step, step_args(), key)
  np.testing.assert_array_equal(program(*step_args())[1],
                                jax.jit(step)(*step_args())[1])
  assert blocker.read_text() == "not a folder"


def test_a_second_run_in_this_process_reuses_the_first_runs_programs(
    tmp_path, monkeypatch):
  """The same model twice in one process: the second run traces nothing
  (its epoch programs are kept per model, mesh, kind and optimizer) and
  gives the same metrics (no traced programs kept on disk here, which
  would serve the second run as well)."""
  from diffpool_jax.engine import compile_cache, trainer
  monkeypatch.setattr(compile_cache, "traced_folder", lambda: None)
  from diffpool_jax.run import Run, RunConfig
  from tests.test_scale import TINY_RUN
  trainer.jit_epoch_program.cache_clear()
  traced = []
  trace_train_epoch = trainer.run_train_epoch

  def counting(*args, **kwargs):      # runs once per trace
    traced.append(1)
    return trace_train_epoch(*args, **kwargs)
  monkeypatch.setattr(trainer, "run_train_epoch", counting)
  runs = [Run(RunConfig(**TINY_RUN), tmp_path / name) for name in "ab"]
  for run in runs:
    run.fit(progress=False)
  assert len(traced) == 1
  for key, values in runs[0].history.items():
    np.testing.assert_array_equal(runs[1].history[key], values, key)
