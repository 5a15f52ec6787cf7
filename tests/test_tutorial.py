"""The tutorial notebook runs top to bottom (quick setting) and is kept
without outputs in git."""

import os
from pathlib import Path

import nbformat
from nbclient import NotebookClient

from tests.conftest import SHARED_DATA

NOTEBOOK = Path(__file__).resolve().parents[1] / "docs" / "tutorial.ipynb"


def test_notebook_is_stored_without_outputs():
  notebook = nbformat.read(NOTEBOOK, as_version=4)
  code = [c for c in notebook.cells if c.cell_type == "code"]
  assert code and all(not c.outputs and c.execution_count is None
                      for c in code)


def test_notebook_runs(tmp_path, monkeypatch):
  monkeypatch.setenv("DIFFPOOL_TUTORIAL_QUICK", "1")
  monkeypatch.setenv("DIFFPOOL_JAX_TU_ROOT", str(SHARED_DATA / "tu"))
  monkeypatch.setenv("PYTHONPATH", str(NOTEBOOK.parents[1]) + os.pathsep +
                     os.environ.get("PYTHONPATH", ""))
  notebook = nbformat.read(NOTEBOOK, as_version=4)
  client = NotebookClient(notebook, timeout=900, kernel_name="python3",
                          resources={"metadata": {"path": str(tmp_path)}})
  client.execute()          # raises CellExecutionError on any failing cell
  printed = "".join(o.get("text", "") for c in notebook.cells
                    if c.cell_type == "code" for o in c.outputs)
  assert "link loss" in printed and "DiffPool" in printed
  assert "NMI(level-1 clusters, true communities)" in printed
