"""The README and docs/ stay true to the code: every Python block runs,
every command line of ours parses with its flags, the README stays short
and names the commit of each figure. (The Sphinx build itself runs in
.ci/run with warnings as errors.)"""

import importlib.util
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from diffpool_jax.cli import report, sweep, table, train

REPO = Path(__file__).resolve().parents[1]
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
# docs/nnx.md's blocks run in tests/test_nnx_example.py (fewer epochs).
RUN_ELSEWHERE = {"nnx.md"}


def blocks(path: Path, language: str):
  return re.findall(rf"^ *```{language}\n(.*?)^ *```", path.read_text(),
                    re.S | re.M)


def command_lines(path: Path):
  """Each shell command of the page's bash blocks as its words,
  continuations joined, comments dropped, `&&`, `&` and `;` split."""
  for block in blocks(path, "bash"):
    for line in block.replace("\\\n", " ").splitlines():
      words = shlex.split(line, comments=True)
      command = []
      for word in words + ["&"]:
        if word in ("&&", "&", ";"):
          if command:
            yield command
          command = []
        else:
          command.append(word.rstrip(";"))


@pytest.mark.parametrize("page", [p for p in PAGES if blocks(p, "python")
                                  and p.name not in RUN_ELSEWHERE],
                         ids=lambda p: p.name)
def test_every_python_block_runs(page, tmp_path):
  """The page's blocks, in order, as one script in a fresh process."""
  code = "\n".join(re.sub(r"(?m)^   ", "", b) if b.startswith("   ") else b
                   for b in blocks(page, "python"))
  script = tmp_path / "page.py"
  script.write_text(code)
  env = {**os.environ, "PYTHONPATH": str(REPO)}
  done = subprocess.run([sys.executable, str(script)], cwd=tmp_path,
                        env=env, capture_output=True, text=True, timeout=600)
  assert done.returncode == 0, done.stderr[-3000:]


COMMAND_STARTS = ("python -m experiments.", "python -m diffpool_jax.cli",
                  "diffpool-")
# Placeholders the pages write in commands, and a value each stands for.
PLACEHOLDERS = {"SET": "ENZYMES", "PRESET": "paper", "NAME": "mincut",
                "E": "2", "RUN_FOLDER": "runs/x", "DIR": "runs/x"}


def inline_commands(path: Path):
  """Each command of ours written in inline code (in text and in tables,
  outside the code blocks) as its words, placeholders given a value and
  `...` dropped; a command's bare name (`diffpool-sweep`, `python -m
  experiments.table`) names it."""
  text = re.sub(r"^ *```.*?^ *```", "", path.read_text(), flags=re.S | re.M)
  for span in re.findall(r"`([^`]+)`", text.replace("\n", " ")):
    name_only = len(span.split()) == (3 if span.startswith("python") else 1)
    if span.startswith(COMMAND_STARTS) and not name_only:
      yield [PLACEHOLDERS.get(word, word) for word in shlex.split(span)
             if word != "..."]


COMMANDS = {"diffpool-train": train, "experiments.train": train,
            "diffpool-sweep": sweep, "experiments.sweep": sweep,
            "diffpool-report": report, "experiments.report": report,
            "diffpool-table": table, "experiments.table": table}


def our_command(words):
  """(module, argv) of a command that runs one of ours, else None."""
  words = [w.replace("$T", "T").replace("$S", "S") for w in words]
  if words[:2] == ["python", "-m"] and len(words) > 2:
    words = words[2:]
  return (words[0], words[1:]) if words and (
      words[0] in COMMANDS or words[0].startswith("experiments.")) else None


def test_every_command_in_the_pages_parses():
  """Our commands' flags as written in the pages (code blocks, inline code
  and tables): the train command's also build a valid RunConfig; a
  benchmark's module must exist."""
  seen = 0
  for page in PAGES:
    for words in [*command_lines(page), *inline_commands(page)]:
      found = our_command(words)
      if found is None:
        continue
      name, argv = found
      seen += 1
      where = f"{page.name}: {' '.join(words)}"
      if name not in COMMANDS:
        assert importlib.util.find_spec(name), where
        continue
      try:
        args = COMMANDS[name].parse_args(argv)
        if COMMANDS[name] is train:
          train.build_config(args)
        if COMMANDS[name] is sweep:
          assert sweep.grid_path(args.grid).is_file(), where
      except SystemExit as error:       # --help ends with code 0
        if error.code not in (0, None):
          pytest.fail(f"{where}: {error}")
  assert seen >= 50


def test_the_readme_is_short_and_its_first_screen_has_the_start():
  text = (REPO / "README.md").read_text()
  lines = text.splitlines()
  assert len(lines) <= 200
  first = "\n".join(lines[:60])
  for what in ("pip install", "diffpool-train", "python -m pytest",
               "## Quick start"):
    assert what in first, what
  quick = blocks(REPO / "README.md", "python")[0]
  assert len(quick.splitlines()) <= 20


def test_every_figure_row_of_the_readme_names_its_commit():
  lines = (REPO / "README.md").read_text().splitlines()
  rows = [line for line, after in zip(lines, lines[1:] + [""])
          if line.startswith("|") and re.search(r"\d", line)
          and not set(line) <= set("|-: ")          # no separator line
          and not set(after) <= set("|-: ") - {" "}]  # no header line
  assert rows
  for row in rows:
    commit = r"[0-9a-f]{7}(\+changes)?"
    assert re.search(rf"\| {commit}( / {commit})* \|", row), row
