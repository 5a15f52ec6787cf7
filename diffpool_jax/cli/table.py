"""diffpool-table: poolers x data sets -> one fair comparison.

  diffpool-table --datasets ENZYMES ogbg-molbace \
      --data-root ../shared/data/tu ../shared/data/ogb \
      --splits ../shared/data/splits --poolers all --out runs/table

Each cell (one pooler on one data set) is an ordinary run folder,
OUT/DATASET/POOLER, trained by the train command in a child process, so a
stopped table continues where it stopped (a finished cell is read, a
started one resumed with --resume) and a cell that fails is reported in
the table, not fatal to the others. A finished cell whose inputs changed
since it trained (its data set's graphs, labels or features, its split
file) is reported as failed, not read as if it still stood; so is a
cell of a set that changed while the table ran (every cell is checked
again at the end). Cells follow the data set's own
protocol (fair on TU sets, with NAME_splits.json from --splits where it
is there, and a line at the start names each set it is not there for;
fixed over 10 seeds on OGB sets). A folder, file or count that every
cell would read wrongly stops the table before its first cell. The flat
baseline (no pooling) is always a row. Two modes, fixed before any
result is seen:

  --backbone shared   every pooler in one network (--preset, default
                      `paper`): only the pooling operator differs, each
                      with its own losses at its operator's default
                      weights (1 unless its paper sets another); the
                      flat row is that network without pooling levels.
  --backbone own      each pooler's own preset (the one of its name;
                      DiffPool's is `paper`); the flat row is `flat`.

Writes OUT/table.md, OUT/table.csv (per cell: the score as mean ± std in
the data set's metric, compile seconds, median epoch seconds, peak memory
of its process, the commit and the command) and OUT/table.png.
"""

from __future__ import annotations

import argparse
import csv
import ctypes
import functools
import hashlib
import io
import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from diffpool_jax import plots
from diffpool_jax.cli import options
from diffpool_jax.cli.report import read_results
from diffpool_jax.datasets.readers import READERS, find_format
from diffpool_jax.cli.errors import command_message
from diffpool_jax.run.store import (RUN_OUTPUTS, input_change,
                                    read_intact_run, write_text_atomic)
from diffpool_jax.tasks import METRICS, shown

FLAT = "flat"
# A pooler's own preset where its name is not one (DiffPool's network is
# the paper's).
OWN_PRESET = {"diffpool": "paper"}
COLUMNS = ("dataset", "pooler", "status", "metric", "score", "std",
           "compile_s", "epoch_s", "peak_gib", "epochs_run", "commit",
           "command")
CELL_FILE = "table_cell.json"
GIB = 2**30


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
  parser = argparse.ArgumentParser(
      prog="diffpool-table", description=__doc__.splitlines()[0],
      formatter_class=argparse.ArgumentDefaultsHelpFormatter)
  parser.add_argument("--datasets", nargs="+", required=True,
                      help="data set names (TU, OGB, synthetic, yours)")
  parser.add_argument("--poolers", nargs="+", default=["all"],
                      help="pooling operators (names in pooling.POOLING) or "
                      "'all'; the flat baseline is always a row")
  parser.add_argument("--data-root", nargs="+", default=[],
                      help="folders holding the data sets; each set is read "
                      "from the one that holds it (none: the download "
                      "cache)")
  parser.add_argument("--splits", default=None,
                      help="a folder of split files NAME_splits.json "
                      "(Errica et al.'s), used where one is there")
  parser.add_argument("--backbone", choices=("shared", "own"),
                      default="shared", help="one network for every pooler, "
                      "or each pooler's own preset")
  parser.add_argument("--preset", default="paper",
                      help="the shared backbone's network")
  parser.add_argument("--out", default="runs/table", help="the table folder")
  parser.add_argument("--epochs", type=int, default=None,
                      help="training epochs of every cell (None: the run "
                      "default)")
  parser.add_argument("--patience", type=int, default=None,
                      help="early-stopping patience of every cell")
  parser.add_argument("--config", default=None,
                      help="a JSON file of RunConfig fields every cell "
                      "starts from")
  parser.add_argument("--import", dest="imports", action="append",
                      default=[], metavar="MODULE",
                      help="a module (or .py file) to import first in the "
                      "table and in every cell, e.g. one registering a "
                      "pooling operator")
  parser.add_argument("--quiet", action="store_true",
                      help="no line per cell")
  args = parser.parse_args(list(argv))
  options.import_extensions(args.imports)
  return args


def check_inputs(args: argparse.Namespace) -> None:
  """SystemExit naming the flag when a folder or file that every cell
  would read is not there or not valid, or an epoch count is out of
  range: every cell would fail the same way (a bad --config, a count) or
  silently do without it (a --data-root or --splits folder); then
  `check_names`. Keeps the --config file's RunConfig values in
  `args.config_values`."""
  from diffpool_jax.cli.train import file_values
  from diffpool_jax.run import RunConfig
  for flag, folders in (("--data-root", args.data_root),
                        ("--splits", [args.splits] if args.splits else [])):
    for folder in folders:
      if not Path(folder).is_dir():
        raise SystemExit(f"{flag} {folder} is not a folder (mistyped?)")
  args.config_values = {}
  if args.config is not None:
    args.config_values, baseline = file_values(
        argparse.Namespace(config=args.config), "")
    if baseline is not None:
      raise SystemExit(f"--config {args.config}: drop 'baseline' (the "
                       "table's flat row is the baseline; each cell would "
                       "train it again)")
  for flag in ("epochs", "patience"):
    if getattr(args, flag) is not None:
      try:
        RunConfig(**{flag: getattr(args, flag)})
      except ValueError as error:
        raise SystemExit(f"--{flag}: {error}") from None
  check_names(args)


def check_names(args: argparse.Namespace) -> None:
  """SystemExit naming the flag when a set, pooler or root is named twice,
  or a set's copy is not clear: two --data-root folders hold it, or its
  folder (the download cache where no root holds it) holds one of its
  tables twice (the reader's message)."""
  roots = [str(Path(root).resolve()) for root in args.data_root]
  for flag, names in (("--datasets", args.datasets),
                      ("--poolers", args.poolers), ("--data-root", roots)):
    twice = sorted({name for name in names if names.count(name) > 1})
    if twice:
      raise SystemExit(f"{flag}: {', '.join(twice)} named more than once")
  for name in args.datasets:
    try:
      holding = roots_holding(name, args.data_root)
      if not holding:
        find_format(name, None, args.config_values.get("format", "auto"))
    except (OSError, ValueError) as error:
      raise SystemExit(f"--data-root: {name}: {error}") from None
    if len(holding) > 1:
      raise SystemExit(f"--data-root: {name} is in both {holding[0]} and "
                       f"{holding[1]}; give one root that holds it (which "
                       "copy the cells should read is not clear)")


def pooler_names(requested: Sequence[str]) -> List[str]:
  """The poolers of the table's rows: every registered one for "all",
  else the names given (checked), then the flat baseline."""
  from diffpool_jax.models.pooling import POOLING
  names = list(POOLING) if list(requested) == ["all"] else list(requested)
  unknown = [n for n in names if n not in POOLING and n != FLAT]
  if unknown:
    raise SystemExit(f"--poolers: unknown {unknown}; expected 'all' or "
                     f"names in {tuple(POOLING)}")
  return [n for n in names if n != FLAT] + [FLAT]


def roots_holding(name: str, roots: Sequence[str]) -> List[str]:
  """The folders of `roots` that hold set `name` in some registered
  format."""
  return [root for root in roots
          if any(reader.holds(root, name) for reader in READERS.values())]


def data_root(name: str, roots: Sequence[str]) -> Optional[str]:
  """The folder of `roots` holding set `name` (None when none holds it:
  the reader's download cache, or a set no folder holds, as the built-in
  synthetic one); check_inputs refuses a set that two hold."""
  holding = roots_holding(name, roots)
  return holding[0] if holding else None


def split_file(name: str, folder: Optional[str]) -> Optional[Path]:
  """folder/NAME_splits.json when it is there."""
  if folder is None:
    return None
  path = Path(folder) / f"{name}_splits.json"
  return path if path.is_file() else None


def without_split_file(datasets: Sequence[str], roots: Sequence[str],
                       folder: Optional[str], config: Dict) -> List[str]:
  """The sets that --splits gives no split file for although their cells
  split them themselves: the protocol (--config's, else the format's that
  a cell reads them with) is not "fixed", and --config names no split
  file of its own."""
  if folder is None or config.get("splits"):
    return []
  missing = []
  for name in datasets:
    protocol = config.get("protocol", "auto")
    if protocol == "auto":
      protocol = READERS[find_format(name, data_root(name, roots),
                                     config.get("format", "auto"))].protocol
    if protocol != "fixed" and split_file(name, folder) is None:
      missing.append(name)
  return missing


def cell_arguments(args: argparse.Namespace, dataset: str, pooler: str,
                   folder: Path) -> List[str]:
  """The train command's arguments of one cell (see the module docstring
  for what each mode trains)."""
  if args.backbone == "shared":
    model = (["--model.pool-ratios"] if pooler == FLAT
             else ["--pooling", pooler])
    argv = ["--preset", args.preset, *model]
  else:
    argv = ["--preset", FLAT if pooler == FLAT else OWN_PRESET.get(pooler,
                                                                   pooler)]
  argv = ["--dataset", dataset, *argv, "--out", str(folder), "--quiet",
          "--no-plots"]
  for module in args.imports:
    argv = ["--import", module, *argv]
  if args.config:
    argv += ["--config", args.config]
  root = data_root(dataset, args.data_root)
  if root is not None:
    argv += ["--data-root", root]
  splits = split_file(dataset, args.splits)
  if splits is not None:
    argv += ["--splits", str(splits)]
  for flag in ("epochs", "patience"):
    if getattr(args, flag) is not None:
      argv += [f"--{flag}", str(getattr(args, flag))]
  return argv


def child_setup():
  """What a cell's child runs before the train command: end with the
  table's process (Linux: PR_SET_PDEATHSIG), so that a killed table
  leaves no cell training on into its folder; elsewhere nothing."""
  try:
    libc = ctypes.CDLL("libc.so.6", use_errno=True)      # in the parent
  except OSError:
    return None
  table_pid = os.getpid()

  def setup():
    libc.prctl(1, signal.SIGKILL)
    if os.getppid() != table_pid:       # the table ended before prctl
      os._exit(1)
  return setup


def run_cell(argv: List[str]) -> Dict[str, object]:
  """Runs the train command with `argv` in a child process: its exit code,
  the last line it wrote to stderr and its peak resident memory (GiB, of
  that process alone)."""
  command = [sys.executable, "-m", "diffpool_jax.cli.train", *argv]
  child = subprocess.Popen(command, stdout=subprocess.DEVNULL,
                           stderr=subprocess.PIPE, text=True,
                           errors="replace", preexec_fn=child_setup())
  try:
    errors = child.stderr.read()
  finally:
    child.stderr.close()
    _, status, usage = os.wait4(child.pid, 0)
  child.returncode = code = os.waitstatus_to_exitcode(status)
  lines = [line for line in errors.splitlines() if line.strip()]
  error = (f"killed by signal {-code}" if code < 0
           else lines[-1] if lines else f"exit code {code}")
  return {"code": code, "error": error,
          "peak_gib": usage.ru_maxrss * 1024 / GIB}


def cell_row(dataset: str, pooler: str, folder: Path, argv: List[str],
             outcome: Optional[dict]) -> Dict[str, object]:
  """One row of the table: the cell's results.json figures, or its
  failure."""
  command = shlex.join(["diffpool-train", *argv])
  row = {"dataset": dataset, "pooler": pooler, "command": command}
  results_file = folder / "results.json"
  if outcome is not None and outcome["code"] not in (0, 3):
    return {**row, "status": f"failed: {outcome['error']}"}
  try:
    results = read_results(results_file)
  except ValueError as error:
    return {**row, "status": f"failed: {error}"}
  saved = json.loads((folder / CELL_FILE).read_text())
  return {**row, "status": "diverged" if results.get("diverged_members")
          else "ok", "metric": results["metric"], "score": results["score"],
          "std": results["std"], "compile_s": results.get("compile_seconds"),
          "epoch_s": results.get("median_epoch_seconds"),
          "peak_gib": saved.get("peak_gib"),
          "epochs_run": results.get("epochs_run"),
          "commit": trained_at(results)}


def trained_at(results: dict) -> Optional[str]:
  """The commit(s) a cell's run trained at: "a" or, resumed across
  commits, "a→b" (from results.json's segments; "?" for an unknown one)."""
  commits = [segment.get("commit") or "?"
             for segment in results.get("segments") or []]
  distinct = [c for i, c in enumerate(commits) if c not in commits[:i]]
  if len(distinct) > 1:
    return "→".join(distinct)
  return results.get("commit")


def input_digests(argv: List[str]) -> Dict[str, str]:
  """The sha256 of each file a cell's command reads by name (--config,
  --splits, --import FILE.py): a cell whose files changed is not done
  (its --resume then checks the data itself, see run.store)."""
  digests = {}
  for flag, value in zip(argv, argv[1:]):
    if flag in ("--config", "--splits", "--import") and Path(value).is_file():
      digests[f"{flag} {value}"] = hashlib.sha256(
          Path(value).read_bytes()).hexdigest()
  return digests


@functools.lru_cache(maxsize=None)
def fingerprints_now(fields: str) -> Dict[str, str]:
  """The input fingerprints (run.members.input_fingerprints) of the data
  set and split file that `fields`, a JSON object of
  run.members.INPUT_FIELDS, name, read now; once per data set in a
  table."""
  from diffpool_jax.run import RunConfig
  from diffpool_jax.run.members import input_fingerprints, load_dataset
  config = RunConfig(**json.loads(fields))
  return input_fingerprints(config, load_dataset(config))


def changed_input(folder: Path) -> Optional[str]:
  """Why a finished cell's results no longer stand, or None: its
  config.json cannot be read or was edited (store.read_intact_run), its
  data set cannot be read, or an input it read (store.INPUT_NAMES) has
  another fingerprint now than the one its run recorded. A cell written
  by another version is checked on the INPUT_FIELDS and inputs it has."""
  from diffpool_jax.run.members import INPUT_FIELDS
  try:
    saved = read_intact_run(folder)
    fields = {name: saved["run"][name] for name in INPUT_FIELDS
              if name in saved["run"]}
    now = fingerprints_now(json.dumps(fields, sort_keys=True))
    change = input_change(saved.get("inputs") or {}, now,
                          "this cell trained")
  except Exception as error:      # noqa: BLE001 (any reader's error)
    change = (f"cannot check the cell's inputs: {command_message(error)} "
              f"({type(error).__name__})")
  if change is None:
    return None
  return f"{change}; restore them, or delete {folder} to train the cell again"


def train_cell(args, dataset: str, pooler: str, folder: Path
               ) -> Dict[str, object]:
  """Trains one cell unless it is done (results.json of this command,
  its inputs unchanged: else the row says what changed): fresh, or with
  --resume where the folder holds a run; then its row."""
  argv = cell_arguments(args, dataset, pooler, folder)
  inputs = input_digests(argv)
  record = folder / CELL_FILE
  saved = json.loads(record.read_text()) if record.is_file() else {}
  done = (folder / "results.json").is_file() and (
      (saved.get("argv"), saved.get("inputs")) == (argv, inputs))
  if done:
    changed = changed_input(folder)
    return cell_row(dataset, pooler, folder, argv,
                    None if changed is None else {"code": 1,
                                                  "error": changed})
  started = any((folder / name).exists() for name in RUN_OUTPUTS)
  outcome = run_cell(argv + (["--resume"] if started else []))
  if outcome["code"] in (0, 3):
    write_text_atomic(record, json.dumps(
        {"argv": argv, "inputs": inputs, "peak_gib": outcome["peak_gib"]},
        indent=2), "the table's record of this cell")
  return cell_row(dataset, pooler, folder, argv, outcome)


def rechecked(rows: List[dict], out: Path) -> List[dict]:
  """The rows with every cell that did not fail checked again against its
  data set as it is at the end of the table (`changed_input`): a set that
  changed while the table ran leaves no cell of the old data reported as
  if it stood beside cells of the new."""
  fingerprints_now.cache_clear()
  checked = []
  for row in rows:
    changed = (None if row["status"].startswith("failed") else
               changed_input(out / row["dataset"] / row["pooler"]))
    checked.append(row if changed is None else {
        **{k: row[k] for k in ("dataset", "pooler", "command")},
        "status": f"failed: {changed}"})
  return checked


def markdown(rows: List[dict]) -> str:
  """The table as Markdown: one row per cell."""
  header = ("| data set | pooler | score (mean ± std) | compile s | "
            "epoch s | peak GiB | epochs | commit | command |")
  lines = [header, "|" + "---|" * 9]
  for r in rows:
    if r["status"].startswith("failed"):
      score = r["status"]
    else:
      unit = " %" if METRICS[r["metric"]][1] else ""
      score = (f"{r['metric']} {shown(r['metric'], r['score'])} ± "
               f"{shown(r['metric'], r['std'])}{unit}"
               + (" (diverged members)" if r["status"] == "diverged"
                  else ""))
    figures = [f"{r[k]:.1f}" if isinstance(r.get(k), (int, float)) else "—"
               for k in ("compile_s", "epoch_s")]
    peak = (f"{r['peak_gib']:.2f}" if isinstance(r.get("peak_gib"), float)
            else "—")
    values = (r["dataset"], r["pooler"], score, *figures, peak,
              r.get("epochs_run", "—"), r.get("commit") or "—",
              f"`{r['command']}`")
    lines.append("| " + " | ".join(str(v).replace("|", "\\|")
                                     for v in values) + " |")
  return "\n".join(lines) + "\n"


def csv_text(rows: List[dict]) -> str:
  """The table as CSV, one row per cell, COLUMNS."""
  buffer = io.StringIO()
  writer = csv.DictWriter(buffer, COLUMNS, extrasaction="ignore",
                          lineterminator="\n")
  writer.writeheader()
  writer.writerows(rows)
  return buffer.getvalue()


def main(argv=None) -> int:
  """The table command; returns 0, or 1 when a cell failed."""
  argv = sys.argv[1:] if argv is None else argv
  fingerprints_now.cache_clear()       # the data as it is now
  args = parse_args(argv)
  check_inputs(args)
  poolers = pooler_names(args.poolers)
  out = Path(args.out)
  cells = [(d, p) for d in args.datasets for p in poolers]
  for name in without_split_file(args.datasets, args.data_root, args.splits,
                                 args.config_values):
    print(f"{name}: no {name}_splits.json in --splits {args.splits}; its "
          "cells make stratified folds of their own", file=sys.stderr,
          flush=True)
  rows = []
  for index, (dataset, pooler) in enumerate(cells, start=1):
    if not args.quiet:
      print(f"[{index}/{len(cells)}] {dataset} x {pooler} ...", end=" ",
            flush=True)
    started = time.perf_counter()
    row = train_cell(args, dataset, pooler, out / dataset / pooler)
    rows.append(row)
    if not args.quiet:
      print(f"{row['status']} ({time.perf_counter() - started:.0f} s)",
            flush=True)
    write_text_atomic(out / "table.md", markdown(rows), "the table")
    write_text_atomic(out / "table.csv", csv_text(rows), "the table")
  rows = rechecked(rows, out)
  write_text_atomic(out / "table.md", markdown(rows), "the table")
  write_text_atomic(out / "table.csv", csv_text(rows), "the table")
  plots.plot_table(rows, out / "table.png")
  print(markdown(rows), end="")
  print(f"\ntable in {out}/table.md, table.csv and table.png")
  return 1 if any(r["status"].startswith("failed") for r in rows) else 0


def console_main() -> None:
  """The installed command `diffpool-table`."""
  sys.exit(main())


if __name__ == "__main__":
  console_main()
