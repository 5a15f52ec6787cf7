"""Hyper-parameter sweeps: scalar points side by side, shape points one
after another, and model selection over the whole grid.

  diffpool-sweep --grid sweep_small          # a shipped grid, by name
  diffpool-sweep --grid sweep_diffpool \
      --dataset ENZYMES --data-root ../shared/data/tu \
      --splits ../shared/data/splits/ENZYMES_splits.json

A grid file is JSON with three parts::

  "run":    RunConfig fields shared by every point (dataset, protocol, ...);
  "scalar": {axis: values} for "lr" and RunConfig.grid axes ("clip",
            "weight_decay", "dropout", "aux.NAME"): they change no array
            shape, so all their combinations train as members of one
            compiled program;
  "shape":  {field: values} for choices that change shapes ("preset",
            "batch_size", "features", "max_buckets", "cluster_reference",
            "first_level" and "model.FIELD"): each combination is its own
            program, run one after another on the same data and folds.

Every RunConfig field is an option (--epochs, --dataset, ...; the model's
fields --model.FIELD), generated from the dataclasses (cli.options): each
replaces the grid's "run" value. The protocol ("fair", the default, or "errica")
selects among all points at once on validation; "paper", which would
choose on the test folds, refuses a grid of more than one point.
Writes into --out: one run folder per shape point (shape_00, ...), and
sweep.json, sweep.csv (one row per grid point) and sweep.png.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import itertools
import json
import os
import sys
from pathlib import Path
from typing import Dict, List, NamedTuple

import numpy as np

from diffpool_jax import plots, tasks
from diffpool_jax.cli import options, processes, shipped_config, shipped_names
from diffpool_jax.cli.errors import command_message
from diffpool_jax.engine import compile_cache, hosts
from diffpool_jax.protocols import PROTOCOLS
from diffpool_jax.run import (Run, RunConfig, RunFolderError, load_dataset,
                              make_folds, write_json_atomic)
from diffpool_jax.run.members import input_fingerprints
from diffpool_jax.run.store import check_inputs, delete_outputs

SHAPE_FIELDS = ("preset", "batch_size", "features", "max_buckets",
                "cluster_reference", "first_level")
SWEEP_OUTPUTS = ("grid.json", "sweep.json", "sweep.csv", "sweep.png")
TABLE_KEYS = ("val_score", "val_loss", "test_score")


class Grid(NamedTuple):
  """A parsed grid file: shared run fields, scalar axes, shape axes."""
  run: Dict[str, object]
  scalar: Dict[str, list]
  shape: Dict[str, list]

  def shape_points(self) -> List[Dict[str, object]]:
    """Every combination of the shape axes (one program each)."""
    return [dict(zip(self.shape, values))
            for values in itertools.product(*self.shape.values())]

  def run_config(self, shape_point: Dict[str, object]) -> RunConfig:
    """The RunConfig of one shape point, with every scalar point in it."""
    values = json.loads(json.dumps(self.run))
    values["grid"] = {k: v for k, v in self.scalar.items() if k != "lr"}
    if "lr" in self.scalar:
      values["lr"] = self.scalar["lr"]
    for field, value in shape_point.items():
      if field.startswith("model."):
        values.setdefault("model", {})[field[len("model."):]] = value
      else:
        values[field] = value
    return RunConfig(**values)


def grid_path(name: str | os.PathLike) -> Path:
  """A grid file: the path itself, or else the shipped grid of that name
  (diffpool_jax/configs/NAME.json)."""
  path = Path(name)
  if path.exists() or not shipped_config(str(name)).is_file():
    return path
  return shipped_config(str(name))


def read_grid_file(path: str | os.PathLike) -> Dict[str, dict]:
  """A grid file's parts {"run", "scalar", "shape"} (each an object, missing
  ones empty); ValueError naming the file (and line) at fault."""
  path = grid_path(path)
  try:
    values = json.loads(Path(path).read_text())
  except OSError as error:
    raise ValueError(f"--grid {path}: {error.strerror}") from None
  except json.JSONDecodeError as error:
    raise ValueError(f"--grid {path}: line {error.lineno}: {error.msg}"
                     ) from None
  if not isinstance(values, dict):
    raise ValueError(f"--grid {path}: expected a JSON object with 'run', "
                     "'scalar' and 'shape'")
  unknown = sorted(set(values) - {"run", "scalar", "shape"})
  if unknown:
    raise ValueError(f"--grid {path}: unknown parts {unknown}; expected "
                     "'run', 'scalar' and 'shape'")
  parts = {}
  for part in ("run", "scalar", "shape"):
    parts[part] = values.get(part, {})
    if not isinstance(parts[part], dict):
      raise ValueError(f"--grid {path}: '{part}' must be an object")
  return parts


def load_grid(path: str | os.PathLike, overrides: Dict[str, object]) -> Grid:
  """Reads and checks a grid file (or a shipped grid by name, see
  `grid_path`); `overrides` replace its "run" fields. ValueError naming
  the file (and line, or part and field) at fault."""
  parts = read_grid_file(path)
  path = grid_path(path)
  for part in ("scalar", "shape"):
    for field, values in parts[part].items():
      if not isinstance(values, list) or not values:
        raise ValueError(f"--grid {path}: {part}.{field} must be a "
                         "non-empty list of values")
  for field in parts["shape"]:
    if field not in SHAPE_FIELDS and not field.startswith("model."):
      raise ValueError(f"--grid {path}: shape.{field} is not a shape field; "
                       f"expected one of {SHAPE_FIELDS} or model.FIELD")
  known = {f.name for f in dataclasses.fields(RunConfig)}
  bad = sorted(set(parts["run"]) - known)
  if bad:
    raise ValueError(f"--grid {path}: run: unknown fields {bad}")
  swept = sorted(set(parts["run"]) & ({"lr", "grid"} | set(parts["shape"])))
  if swept:
    raise ValueError(f"--grid {path}: run.{swept[0]} is also swept; give "
                     "it in 'scalar' or 'shape' only")
  grid = Grid({**parts["run"], **overrides}, parts["scalar"], parts["shape"])
  points = int(np.prod([len(v) for v in {**grid.scalar, **grid.shape}
                        .values()]))
  if grid.run.get("protocol") == "paper" and points > 1:
    raise ValueError(f"--grid {path}: protocol 'paper' with {points} grid "
                     "points would choose the point on the test folds; "
                     "select on validation with protocol 'fair' or "
                     "'errica'")
  for point in grid.shape_points():
    try:
      grid.run_config(point)
    except (TypeError, ValueError) as error:
      where = ", ".join(f"{k}={v!r}" for k, v in point.items())
      raise ValueError(f"--grid {path}: {where or 'run'}: {error}"
                       ) from None
  return grid


def tables_from_metrics(path: Path, epochs: int, shape,
                        metric: str = "accuracy") -> Dict[str, np.ndarray]:
  """[E, F, S, P] tables of TABLE_KEYS from a run's metrics.jsonl, the
  scores being the run's `metric` (epochs not run, and values not
  recorded, are NaN)."""
  score = tasks.score_key(metric)
  columns = {"val_score": f"val_{score}", "val_loss": "val_loss",
             "test_score": f"test_{score}"}
  tables = {key: np.full((epochs, *shape), np.nan) for key in TABLE_KEYS}
  for line in path.read_text().splitlines():
    row = json.loads(line)
    where = (row["epoch"], row["fold"], row["seed"], row["point"])
    for key, column in columns.items():
      if column in row:
        tables[key][where] = row[column]
  return tables


def claim_sweep_folder(out: Path, grid: Grid, resume: bool,
                       overwrite: bool, remove: bool = True) -> None:
  """Makes `out` this sweep's folder: another sweep there is refused unless
  `resume` (same grid) or `overwrite` (its outputs and shape runs go;
  deleted only when `remove`: with several processes, by process 0)."""
  if out.exists() and not out.is_dir():
    raise RunFolderError(f"{{out}} {out} is a file, not a folder", "out")
  saved = out / "grid.json"
  found = [n for n in SWEEP_OUTPUTS if (out / n).exists()]
  found += sorted(p.name for p in out.glob("shape_*")) if out.is_dir() else []
  if not found:
    return
  if resume and overwrite:
    raise RunFolderError("{resume} and {overwrite} exclude each other",
                         "resume", "overwrite")
  if overwrite:
    if remove:
      delete_outputs(out, found)
    return
  if not resume:
    raise RunFolderError(f"{{out}} {out} already holds a sweep "
                         f"({', '.join(found[:4])}); pass {{resume}} to "
                         "continue it or {overwrite} to replace it",
                         "out", "resume", "overwrite")
  if not saved.exists() or (comparable(json.loads(saved.read_text()))
                            != comparable(grid._asdict())):
    raise RunFolderError(f"{{resume}}: {saved} holds another grid (or "
                         "none); use another {out} or {overwrite}",
                         "resume", "out", "overwrite")


def comparable(grid: dict) -> dict:
  """A grid as JSON, without the machine's data folder (for --resume)."""
  grid = json.loads(json.dumps(grid))
  grid["run"].pop("data_root", None)
  return grid


def compute_line(grid: Grid, configs: List[RunConfig]) -> str:
  """What the sweep will train, before it starts."""
  first = configs[0]
  members = len(first.points()) * first.seeds * first.folds
  return (f"sweep: {len(configs)} program(s) (shape points) x "
          f"{len(first.points())} scalar point(s) side by side; each "
          f"program trains {first.folds} folds x {first.seeds} seeds x "
          f"{len(first.points())} points = {members} members for up to "
          f"{first.epochs} epochs: {members * first.epochs * len(configs)} "
          "member-epochs in all")


def run_sweep(grid: Grid, out: Path, resume: bool = False,
              overwrite: bool = False, progress: bool = True) -> dict:
  """Trains every shape point (resuming finished or checkpointed ones when
  asked), then scores every grid point and selects by the protocol;
  writes sweep.json, sweep.csv and sweep.png; returns sweep.json's
  content."""
  shape_points = grid.shape_points()
  configs = [grid.run_config(p) for p in shape_points]
  protocol, patience = configs[0].protocol, configs[0].patience
  if len({c.epochs for c in configs}) > 1:
    raise ValueError("every shape point must train the same epochs")
  claim_sweep_folder(out, grid, resume, overwrite, remove=hosts.is_writer())
  hosts.barrier("sweep folder claimed")
  # Data and folds first: a bad data set or split file stops the sweep
  # before anything is written.
  datasets, num_folds = {}, []
  for config in configs:
    key = (config.dataset, config.features)
    if key not in datasets:
      datasets[key] = load_dataset(config)
      if progress and datasets[key].origin:
        print(f"{config.dataset}: {datasets[key].origin}", flush=True)
    num_folds.append(len(make_folds(config, datasets[key])))
  if hosts.is_writer():
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out / "grid.json", grid._asdict())
  hosts.barrier("sweep folder written")
  if progress:
    print(compute_line(grid, configs), flush=True)
  tables, rows = [], []
  for i, (shape_point, config) in enumerate(zip(shape_points, configs)):
    folder = out / f"shape_{i:02d}"
    where = ", ".join(f"{k}={v}" for k, v in shape_point.items())
    if progress:
      print(f"[{i + 1}/{len(configs)}] {where or 'one shape'}: "
            f"{len(config.points())} point(s) side by side", flush=True)
    dataset = datasets[(config.dataset, config.features)]
    if resume and (folder / "results.json").exists():
      # finished: read back, once its inputs are known to be the same
      saved = json.loads((folder / "config.json").read_text())
      check_inputs(folder, saved.get("inputs") or {},
                   input_fingerprints(config, dataset))
      results = json.loads((folder / "results.json").read_text())
    else:
      results = Run(config, folder, dataset=dataset).fit(resume=resume,
                                                         progress=progress)
    metric = results["metric"]
    higher = tasks.METRICS[metric][1]
    points = config.points()
    table = tables_from_metrics(folder / "metrics.jsonl", config.epochs,
                                (num_folds[i], config.seeds, len(points)),
                                metric)
    tables.append(table)
    scores = PROTOCOLS[protocol].point_scores(table, patience, higher)
    for point, score in zip(points, scores):
      rows.append({"shape_point": i, **shape_point, **point, **score})
  combined = {key: np.concatenate([t[key] for t in tables], axis=-1)
              for key in TABLE_KEYS}
  selection = PROTOCOLS[protocol].summary(combined, patience, higher)
  chosen = np.atleast_1d(selection.get("selected_points",
                                       selection.get("point")))
  for index, row in enumerate(rows):
    row["selected_folds"] = int(np.sum(chosen == index))
  result = {"grid": grid._asdict(), "protocol": protocol, "metric": metric,
            "rows": rows, "selection": selection}
  if hosts.is_writer():
    write_json_atomic(out / "sweep.json", result)
    write_csv_atomic(out / "sweep.csv", rows)
    plots.plot_sweep(rows, out / "sweep.png", PROTOCOLS[protocol].ranked_by,
                     metric)
  return result


def write_csv_atomic(path: Path, rows: List[dict]) -> None:
  """One CSV row per grid point (columns: the union of the rows' keys)."""
  columns = list(dict.fromkeys(k for row in rows for k in row))
  temporary = path.with_name(path.name + ".tmp")
  with open(temporary, "w", newline="") as handle:
    writer = csv.DictWriter(handle, columns)
    writer.writeheader()
    writer.writerows(rows)
  os.replace(temporary, path)


def describe(row: dict, grid: Grid) -> str:
  """The swept values of a grid point, e.g. "lr=0.001 model.hidden_dim=32"."""
  axes = list(grid.shape) + list(grid.scalar)
  return " ".join(f"{axis}={row[axis]:g}" if isinstance(row[axis], float)
                  else f"{axis}={row[axis]}" for axis in axes)


def print_summary(result: dict, grid: Grid) -> None:
  """Per grid point scores, then the protocol's selected result (scores
  in the sweep's metric: accuracy, ROC-AUC and AP in percent)."""
  shown = PROTOCOLS[result["protocol"]].ranked_by
  metric = result["metric"]
  value = lambda v: tasks.shown(metric, v)
  print(f"\n{'point':>5}  {'val ' + metric:>15}  {'test ' + metric:>15}  "
        "epochs  chosen  values")
  for index, row in enumerate(result["rows"]):
    cell = lambda m, s: ("—" if row[m] is None
                         else f"{value(row[m])} ± {value(row[s])}")
    print(f"{index:5d}  {cell('val_mean', 'val_std'):>15}  "
          f"{cell('test_mean', 'test_std'):>15}  {row['epochs']:6.1f}  "
          f"{row['selected_folds']:6d}  {describe(row, grid)}")
  selection = result["selection"]
  print(f"\nselected by {result['protocol']} ({selection['note']}; ranked by "
        f"{shown}): test {metric} {value(selection['score'])} ± "
        f"{value(selection['std'])}")


def command_parser() -> argparse.ArgumentParser:
  """The command's own flags; the grid's run fields are generated options
  (see cli.options)."""
  parser = options.command_parser(
      "diffpool-sweep", "Hyper-parameter sweep (see the module docstring); "
      "the options replace the grid's 'run' values.")
  parser.add_argument("--grid", required=True,
                      help="grid file (JSON), or the name of a shipped "
                      f"grid: {', '.join(n for n in shipped_names() if n.startswith('sweep'))}")
  parser.add_argument("--out", help="output folder (None: runs/sweep_"
                      "<grid name>_<dataset>)")
  parser.add_argument("--resume", action="store_true",
                      help="continue the sweep in --out")
  parser.add_argument("--overwrite", action="store_true",
                      help="replace the sweep in --out")
  parser.add_argument("--compile-cache", default=None,
                      help="persistent XLA cache folder or 'off'")
  parser.add_argument("--quiet", action="store_true", help="no progress bar")
  processes.add_flags(parser)
  return parser


def parse_args(argv):
  """The command's flags (a Namespace) with `overrides`: the run fields
  the options change against the grid file's "run" part."""
  if {"-h", "--help"} & set(argv) and "--grid" not in argv:
    argv = [*argv, "--grid", "sweep_small"]   # its defaults in the help
  parser = command_parser()
  args, rest = parser.parse_known_args(list(argv))
  options.import_extensions(args.imports)
  if {"-h", "--help"} & set(rest):
    print(command_parser().format_help())
  try:
    run = read_grid_file(args.grid)["run"]
  except ValueError as error:
    raise SystemExit(command_message(error))
  values = options.parse_config_options(
      rest, run, prog="diffpool-sweep", description="The configuration's "
      "options: each replaces the grid's 'run' value (generated from "
      "RunConfig and the preset's DiffPoolConfig).")
  given = options.run_defaults(run)
  args.overrides = {name: value for name, value in values.items()
                    if name == "model" and value != run.get("model", {})
                    or name != "model" and value != given.get(name)}
  return args


def main(argv=None) -> int:
  args = parse_args(sys.argv[1:] if argv is None else argv)
  processes.start(args)
  try:
    compile_cache.enable(args.compile_cache)
    grid = load_grid(args.grid, args.overrides)
  except ValueError as error:
    raise SystemExit(command_message(error))
  dataset = grid.run.get("dataset", "synthetic")
  out = Path(args.out or f"runs/sweep_{Path(args.grid).stem}_{dataset}")
  try:
    result = run_sweep(grid, out, args.resume, args.overwrite,
                       progress=not args.quiet)
  except (MemoryError, RunFolderError, ValueError, OSError) as error:
    raise SystemExit(f"sweep: {command_message(error)}")
  if hosts.is_writer():
    print_summary(result, grid)
    print(f"\nresults in {out}/sweep.json, sweep.csv, sweep.png")
  return 0


def console_main() -> None:
  """The installed command `diffpool-sweep`."""
  processes.finish(processes.run_command(main))


if __name__ == "__main__":
  console_main()
