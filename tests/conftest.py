"""Shared fixtures: where the real TU benchmark files are, if anywhere."""

import atexit
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

# Share compiled XLA programs between tests and the command-line runs they
# spawn (the kill-and-resume test compiles the same programs three times).
# Set before jax is imported; subprocesses inherit it.
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
  os.environ["JAX_COMPILATION_CACHE_DIR"] = tempfile.mkdtemp(
      prefix="diffpool_jax_xla_cache_")
  atexit.register(shutil.rmtree, os.environ["JAX_COMPILATION_CACHE_DIR"],
                  ignore_errors=True)
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")
# Tests compile far more than they run, so the CPU compiler takes its
# fastest settings: LLVM optimisation level 0, XLA's older elemental
# emitters in place of its fusion emitters, no expensive LLVM passes, one
# code-generation module. A tiny Run then compiles its training program in
# 0.6 s instead of 2.6 s (the programs run slower, which tests on tiny data
# do not notice). Results stay within float32 rounding of the defaults.
FAST_COMPILE_FLAGS = ("--xla_backend_optimization_level=0",
                      "--xla_cpu_use_fusion_emitters=false",
                      "--xla_llvm_disable_expensive_passes=true",
                      "--xla_cpu_parallel_codegen_split_count=1")
_flags = os.environ.get("XLA_FLAGS", "")
os.environ["XLA_FLAGS"] = " ".join(
    [_flags] + [flag for flag in FAST_COMPILE_FLAGS
                if flag.split("=")[0] not in _flags]).strip()

# No Python tracebacks in the lowered programs' locations (they only
# serve profiles and dumps): lowering is about 6 % faster.
os.environ.setdefault("JAX_TRACEBACK_IN_LOCATIONS_LIMIT", "0")

# Float32 matrix products in full float32 on every backend: the tests that
# compare with float64 NumPy references need it where a GPU would use TF32
# (10-bit mantissas) by default. Subprocesses inherit it; runs set their own
# (RunConfig.matmul_precision, "float32" by default).
os.environ.setdefault("JAX_DEFAULT_MATMUL_PRECISION", "float32")

# The data cache folder (downloads, processed TU sets) of this test session
# only, never the user's.
if "DIFFPOOL_JAX_DATA" not in os.environ:
  os.environ["DIFFPOOL_JAX_DATA"] = tempfile.mkdtemp(prefix="diffpool_jax_data_")
  atexit.register(shutil.rmtree, os.environ["DIFFPOOL_JAX_DATA"],
                  ignore_errors=True)

# ../shared/data beside the project checkout (CI has it), or an override.
SHARED_DATA = Path(os.environ.get(
    "DIFFPOOL_JAX_SHARED_DATA",
    Path(__file__).resolve().parents[2] / "shared" / "data"))


# Runs built in the tests' own processes keep the settings above, which
# must precede jax's import (JAX's cache, no kept traced programs: their
# programs are reused in process through jit_epoch_program, which the
# traced-program path would bypass); test_compile_effort.py checks a
# Run's own default in a fresh process.
from diffpool_jax.engine import compile_cache  # noqa: E402
compile_cache.leave_as_configured()

# Seconds of test time of the files that take longest (2 workers, measured
# at 4b7cac7 with `--durations=0`). They start longest first, so that the
# two workers end together; the other files follow in name order.
SLOW_FILES = {"test_table.py": 70,            # tables of child processes
              "test_benchmark_children.py": 60,  # each benchmark's path
              "test_processes.py": 39,      # two-process runs
              "test_device_check.py": 37,   # the device check's parts
              "test_model.py": 35,          # every preset, eagerly
              "test_tutorial.py": 29,       # the notebook in a kernel
              "test_training.py": 26,       # epoch programs, 2 buckets
              "test_train_command.py": 21,
              "test_sparse.py": 18,
              "test_scale.py": 16,
              "test_run_folder.py": 15,
              "test_sweep.py": 14,
              "test_compile_cache.py": 12,
              "test_backend.py": 11,
              "test_pooling_family.py": 11,
              "test_multi_device.py": 10}


HEAVY = os.environ.get("DIFFPOOL_JAX_HEAVY_TESTS") == "1"


def pytest_collection_modifyitems(items):
  """Slowest files first (see SLOW_FILES), each file's tests in order;
  `heavy_benchmark` tests skipped unless $DIFFPOOL_JAX_HEAVY_TESTS=1."""
  rank = lambda item: -SLOW_FILES.get(item.path.name, 0)
  items.sort(key=rank)
  if not HEAVY:
    skip = pytest.mark.skip(reason="a heavy benchmark path (minutes of "
                            "compiling): DIFFPOOL_JAX_HEAVY_TESTS=1 runs it, "
                            "as .ci/run does")
    for item in items:
      if "heavy_benchmark" in item.keywords:
        item.add_marker(skip)


@pytest.fixture(scope="session")
def tu_root() -> Path:
  """The folder holding the real TU sets; skips the test when absent."""
  root = SHARED_DATA / "tu"
  if not (root / "ENZYMES").is_dir():
    pytest.skip(f"real TU data not found at {root} (set "
                "DIFFPOOL_JAX_SHARED_DATA to the shared data folder)")
  return root


@pytest.fixture(scope="session")
def splits_root() -> Path:
  """The folder holding Errica et al.'s split files; skips when absent."""
  root = SHARED_DATA / "splits"
  if not root.is_dir():
    pytest.skip(f"split files not found at {root}")
  return root


@pytest.fixture
def session_compile_cache(monkeypatch):
  """Commands called in this process (train.main, sweep.main) keep the test
  session's compilation cache: their `compile_cache.enable` does nothing."""
  from diffpool_jax.engine import compile_cache
  monkeypatch.setattr(compile_cache, "enable", lambda folder=None: None)


@pytest.fixture
def train_here(session_compile_cache, capsys):
  """A callable running `python -m experiments.train ARGS` in this process
  (no interpreter start-up): ARGS -> CompletedProcess with the exit code,
  stdout and stderr, a SystemExit's message on stderr as Python prints
  it. The compilation cache keeps the test session's settings. The real
  exit path is tested once in a subprocess (test_train_command.py)."""
  from diffpool_jax.cli import train

  def run(*args) -> subprocess.CompletedProcess:
    capsys.readouterr()
    try:
      code = train.main([str(a) for a in args])
    except SystemExit as stop:      # as the interpreter exits on it
      code = stop.code if isinstance(stop.code, int) else int(
          stop.code is not None)
      if not isinstance(stop.code, int) and stop.code is not None:
        print(stop.code, file=sys.stderr)
    said = capsys.readouterr()
    return subprocess.CompletedProcess(args, code, said.out, said.err)
  return run
