"""The persistent compilation cache of command-line runs: where it lives,
turning it off, bad folders, and a second run finding the first's
programs."""

import json
import os
import subprocess
import sys

from types import SimpleNamespace

import pytest

from diffpool_jax import compile_cache
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
  assert stages[1]["train"]["compile"] < stages[0]["train"]["compile"] / 2
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
