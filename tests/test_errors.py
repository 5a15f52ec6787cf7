"""The library names the input at fault by its field; only the commands
spell it as a flag."""

import ast
from pathlib import Path

import pytest

from diffpool_jax.datasets import stratified_folds
from diffpool_jax.errors import InputError
from diffpool_jax.run import RunConfig, RunFolderError, claim_folder
from diffpool_jax.cli.errors import command_message, flag

LIBRARY = Path(__file__).resolve().parents[1] / "diffpool_jax"


def test_spelled_replaces_only_the_declared_fields():
  error = InputError("{folds}=3 but {splits} holds 2; {other} stays",
                     "folds", "splits")
  assert str(error) == "folds=3 but splits holds 2; {other} stays"
  assert error.spelled(flag) == "--folds=3 but --splits holds 2; {other} stays"
  assert isinstance(error, ValueError)


def test_flags_of_library_names():
  assert flag("out") == "--out"
  assert flag("matmul_precision") == "--matmul-precision"
  assert flag("folder") == "--compile-cache"


def test_a_run_folder_error_names_fields_in_the_library_and_flags_in_commands(
    tmp_path):
  (tmp_path / "config.json").write_text("{}")
  with pytest.raises(RunFolderError) as caught:
    claim_folder(tmp_path, RunConfig(), resume=False, overwrite=False)
  library = str(caught.value)
  assert library.startswith(f"out {tmp_path} already holds a run")
  assert "pass resume to continue it or overwrite to replace it" in library
  assert "--" not in library
  command = command_message(caught.value)
  assert command.startswith(f"--out {tmp_path} already holds a run")
  assert "pass --resume to continue it or --overwrite to replace it" in command


def test_too_many_folds_names_the_field():
  with pytest.raises(InputError, match="use fewer folds$") as caught:
    stratified_folds([0, 1, 0], num_folds=5)
  assert command_message(caught.value).endswith("use fewer --folds")


def raised_strings(path: Path):
  """Every string constant inside a `raise` statement of a module."""
  for node in ast.walk(ast.parse(path.read_text())):
    if isinstance(node, ast.Raise):
      for inner in ast.walk(node):
        if isinstance(inner, ast.Constant) and isinstance(inner.value, str):
          yield inner.lineno, inner.value


def test_no_library_error_is_worded_as_a_command_line_flag():
  """(The commands, diffpool_jax/cli, speak in flags.)"""
  worded = [f"{path.relative_to(LIBRARY)}:{line}: {text!r}"
            for path in sorted(LIBRARY.rglob("*.py"))
            if LIBRARY / "cli" not in path.parents
            for line, text in raised_strings(path)
            if any(word.startswith("--") and word[2:3].isalpha()
                   for word in text.split())]
  assert not worded, "\n".join(worded)
