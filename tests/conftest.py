"""Shared fixtures: where the real TU benchmark files are, if anywhere."""

import os
from pathlib import Path

import pytest

# ../shared/data beside the project checkout (CI has it), or an override.
SHARED_DATA = Path(os.environ.get(
    "DIFFPOOL_JAX_SHARED_DATA",
    Path(__file__).resolve().parents[2] / "shared" / "data"))


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
