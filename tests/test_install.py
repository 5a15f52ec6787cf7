"""`pip install .` (not editable) ships the commands, their configs and the
library: a wheel built from this checkout, installed into a fresh virtual
environment, trains from another folder with `diffpool-train`."""

import json
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def run(*command, cwd, timeout=300):
  done = subprocess.run([str(c) for c in command], cwd=cwd, timeout=timeout,
                        capture_output=True, text=True)
  assert done.returncode == 0, done.stdout + done.stderr
  return done.stdout


@pytest.fixture(scope="module")
def venv(tmp_path_factory):
  """A fresh venv holding only the wheel; the dependencies (jax, flax, ...)
  are read from this interpreter's site-packages through a .pth line, which
  does not carry this checkout's editable install."""
  tmp = tmp_path_factory.mktemp("install")
  # pip builds the wheel as a user's `pip install .` does (in an isolated
  # build environment with the build-system's setuptools), from a copy of
  # what the build reads, so that no build/ folder is left in the checkout.
  source = tmp / "source"
  shutil.copytree(REPO / "diffpool_jax", source / "diffpool_jax",
                  ignore=shutil.ignore_patterns("__pycache__"))
  for name in ("pyproject.toml", "README.md"):
    shutil.copy(REPO / name, source / name)
  run(sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps",
      "-w", tmp / "wheels", source, cwd=tmp)
  wheel, = (tmp / "wheels").glob("diffpool_jax-*.whl")
  env = tmp / "venv"
  run(sys.executable, "-m", "venv", "--without-pip", env, cwd=tmp)
  python = env / "bin" / "python"
  purelib = Path(run(python, "-c", "import sysconfig; print(sysconfig."
                     "get_paths()['purelib'])", cwd=tmp).strip())
  (purelib / "dependencies.pth").write_text(
      sysconfig.get_paths()["purelib"] + "\n")
  run(sys.executable, "-m", "pip", "--python", python, "install", "--quiet",
      "--no-deps", "--no-index", wheel, cwd=tmp)
  return env


def test_the_installed_package_is_the_wheel_and_ships_its_configs(venv,
                                                                  tmp_path):
  printed = run(venv / "bin" / "python", "-c",
                "import diffpool_jax, diffpool_jax.cli as cli; "
                "print(diffpool_jax.__file__); print(cli.shipped_names())",
                cwd=tmp_path)
  where, names = printed.splitlines()
  assert where.startswith(str(venv)) and not where.startswith(str(REPO))
  assert "synthetic" in names and "sweep_small" in names
  for command in ("diffpool-train", "diffpool-sweep", "diffpool-report"):
    assert "usage:" in run(venv / "bin" / command, "--help", cwd=tmp_path)


def test_the_installed_command_trains_from_another_folder(venv, tmp_path):
  config = tmp_path / "tiny.json"
  config.write_text(json.dumps({
      "protocol": "paper", "folds": 2, "epochs": 1, "max_buckets": 1,
      "synthetic": {"num_graphs": 24, "communities": [2, 3],
                    "community_size": [3, 4]},
      "model": {"hidden_dim": 8, "embed_dim": 8, "num_layers": 1,
                "mlp_hidden": [8], "pool_ratios": [0.5]}}))
  run(venv / "bin" / "diffpool-train", "--config", config, "--quiet",
      "--no-plots", "--compile-cache", "off", "--out", "run", cwd=tmp_path)
  results = json.loads((tmp_path / "run" / "results.json").read_text())
  assert results["epochs_run"] == 1 and results["commit"] is None
  table = run(venv / "bin" / "diffpool-report", "run", cwd=tmp_path)
  assert "| synthetic | paper | paper |" in table
