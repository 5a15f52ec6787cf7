"""Results tables written by the program: run folders -> Markdown rows.

  diffpool-report runs/ENZYMES_paper_fair runs/PROTEINS_paper_fair
  diffpool-report runs/* --out docs/table.md

(`python -m diffpool_jax.cli.report`, or `python -m experiments.report` in
a checkout.) Each folder holding results.json gives one row, and so does
each of its subfolders that holds one (a baseline trained beside it):
the score mean ± std over folds (or seeds) with its metric, the protocol,
members and epochs, the
command's wall time, the commit and machine it ran on, and its command.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import List

from diffpool_jax.run.store import write_text_atomic
from diffpool_jax.tasks import METRICS, shown

COLUMNS = ("data set", "model", "protocol", "score",
           "folds x seeds x points", "epochs run", "wall time", "commit",
           "machine", "command")


def result_files(folder: Path) -> List[Path]:
  """results.json of `folder` and of its subfolders; ValueError naming the
  folder when there is none."""
  found = [folder / "results.json"] if (folder / "results.json").is_file() \
      else []
  found += sorted(folder.glob("*/results.json"))
  if not found:
    why = "does not exist" if not folder.exists() else (
        "holds no results.json (a run that has not finished?)")
    raise ValueError(f"report: {folder} {why}")
  return found


def read_results(path: Path) -> dict:
  """A results.json; ValueError naming the file (and line) at fault."""
  try:
    results = json.loads(path.read_text())
  except OSError as error:
    raise ValueError(f"report: {path}: {error.strerror}") from None
  except UnicodeDecodeError as error:
    raise ValueError(f"report: {path}: not UTF-8 text (byte {error.start}: "
                     f"{error.reason})") from None
  except json.JSONDecodeError as error:
    raise ValueError(f"report: {path}: line {error.lineno}: {error.msg}"
                     ) from None
  if isinstance(results, dict) and "score" not in results and (
      "accuracy" in results):     # written before runs scored other metrics
    results.update(score=results["accuracy"], metric="accuracy",
                   fold_scores=results.get("fold_accuracies"))
  missing = [k for k in ("dataset", "preset", "protocol", "score", "std",
                         "metric")
             if not isinstance(results, dict) or k not in results]
  if missing:
    raise ValueError(f"report: {path}: not a run's results (no "
                     f"{', '.join(missing)})")
  if results["metric"] not in METRICS:
    raise ValueError(f"report: {path}: metric={results['metric']!r} is not "
                     f"one of {tuple(METRICS)}")
  for key in ("score", "std"):
    value = results[key]
    if value is not None and (isinstance(value, bool)
                              or not isinstance(value, (int, float))):
      raise ValueError(f"report: {path}: {key}={value!r} is not a number")
  return results


def members_shape(path: Path, results: dict) -> str:
  """"F x S x P" from the run's config.json beside results.json."""
  try:
    run = json.loads((path.parent / "config.json").read_text())["run"]
  except (OSError, ValueError, KeyError, TypeError):
    return f"{results.get('members', '?')} members"
  points = len(results.get("points") or [None])
  folds = len(results.get("fold_scores") or []) or run.get("folds")
  return f"{folds} x {run.get('seeds')} x {points}"


def cell(text) -> str:
  """A Markdown table cell (pipes escaped, no line breaks)."""
  return str(text).replace("|", "\\|").replace("\n", " ")


def row(path: Path) -> str:
  """The Markdown row of one results.json."""
  r = read_results(path)
  metric = r["metric"]
  unit = " %" if METRICS[metric][1] else ""
  score = (f"{metric} {shown(metric, r['score'])} ± "
           f"{shown(metric, r['std'])}{unit}"
           if r["score"] is not None else "nan (diverged)")
  seconds = r.get("command_seconds") or sum(
      r.get(k) or 0 for k in ("setup_seconds", "compile_seconds",
                              "wall_seconds"))
  command = r.get("command") or "from Python (Run.fit)"
  values = (r["dataset"], r["preset"], r["protocol"], score,
            members_shape(path, r), r.get("epochs_run", "?"),
            f"{seconds / 60:.1f} min", r.get("commit") or "unknown",
            r.get("machine") or r.get("device", "?"), f"`{command}`")
  return "| " + " | ".join(cell(v) for v in values) + " |"


def table(folders: List[Path]) -> str:
  """The Markdown table (header and one row per results.json)."""
  lines = ["| " + " | ".join(COLUMNS) + " |",
           "|" + "---|" * len(COLUMNS)]
  for folder in folders:
    lines += [row(path) for path in result_files(folder)]
  return "\n".join(lines) + "\n"


def parse_args(argv):
  parser = argparse.ArgumentParser(
      description="Markdown rows from run folders (see the module "
      "docstring).", formatter_class=argparse.ArgumentDefaultsHelpFormatter)
  parser.add_argument("folders", nargs="+", type=Path, metavar="RUN_FOLDER")
  parser.add_argument("--out", type=Path, default=None,
                      help="write the table to this file (atomically) "
                      "instead of printing it")
  return parser.parse_args(argv)


def main(argv=None) -> int:
  args = parse_args(sys.argv[1:] if argv is None else argv)
  try:
    text = table(args.folders)
  except ValueError as error:
    raise SystemExit(str(error))
  if args.out is None:
    print(text, end="")
  else:
    try:
      write_text_atomic(args.out, text, "the table")
    except ValueError as error:
      raise SystemExit(f"report: {error}")
  return 0


def console_main() -> None:
  """The installed command `diffpool-report`."""
  sys.exit(main())


if __name__ == "__main__":
  console_main()
