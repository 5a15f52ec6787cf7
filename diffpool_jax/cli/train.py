"""Cross-validated DiffPool training: the main job.

  diffpool-train                       # built-in synthetic set (the main job)
  diffpool-train --dataset ENZYMES --data-root ../shared/data/tu \
      --splits ../shared/data/splits/ENZYMES_splits.json

(`python -m diffpool_jax.cli.train`, or `python -m experiments.train` in a
checkout.) Every RunConfig field is an option (--epochs, --lr, ...) and
every DiffPoolConfig field of the model one (--model.hidden-dim, ...),
generated from the dataclasses (cli.options); they override the values of
--config FILE (JSON with RunConfig fields; with no --config, the shipped
diffpool_jax/configs/<dataset>.json when present), which override the
preset's. `--import MODULE` loads a module that registers operators,
presets, protocols or readers first.
Writes config.json, metrics.jsonl, results.json, plots and checkpoints
into --out.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shlex
import sys
import time
from pathlib import Path
from typing import Optional

import jax
import numpy as np

from diffpool_jax import plots, tasks
from diffpool_jax.cli import options, processes, shipped_config
from diffpool_jax.cli.errors import command_message
from diffpool_jax.engine import compile_cache, hosts
from diffpool_jax.errors import InputError
from diffpool_jax.models.pooling import POOLING
from diffpool_jax.models.presets import PRESETS
from diffpool_jax.run import assignments, Run, RunConfig, write_json_atomic
from diffpool_jax.run.config import check_value_shapes



def command_parser() -> argparse.ArgumentParser:
  """The command's own flags and the shorthands for mapping fields; the
  configuration's options are generated (see cli.options)."""
  parser = options.command_parser(
      "diffpool-train", "Cross-validated DiffPool training (see README).")
  parser.add_argument("--config", help="JSON file with RunConfig fields "
                      "(None: the shipped config of --dataset, if any)")
  parser.add_argument("--out", help="output folder (None: "
                      "runs/DATASET_PRESET_PROTOCOL)")
  parser.add_argument("--resume", action="store_true",
                      help="continue the run in --out from its last "
                      "checkpoint (same settings; --epochs may grow)")
  parser.add_argument("--overwrite", action="store_true",
                      help="replace the run in --out (deletes its outputs)")
  parser.add_argument("--baseline", help="also train this preset on the "
                      "same folds and show both (e.g. flat)")
  parser.add_argument("--compile-cache", metavar="DIR|off",
                      help="JAX's persistent compilation cache folder, or "
                      "off (None: $DIFFPOOL_JAX_COMPILE_CACHE, else "
                      "~/.cache/diffpool_jax/xla)")
  parser.add_argument("--no-plots", action="store_true",
                      help="no learning curves or assignment pictures")
  parser.add_argument("--quiet", action="store_true", help="no progress bar")
  short = parser.add_argument_group(
      "shorthands (mapping fields and two-field settings)")
  short.add_argument("--hidden-dim", type=int,
                     help="width of every GNN layer: --model.hidden-dim and "
                     "--model.embed-dim")
  short.add_argument("--aux-weight", nargs="+", metavar="NAME=WEIGHT",
                     help="model.aux_weights by name (" + "; ".join(
                         f"{name}: {' '.join(op.aux_names)}"
                         for name, op in POOLING.items())
                     + "); None: the preset's")
  short.add_argument("--link-weight", type=float,
                     help="the same as --aux-weight link=WEIGHT")
  short.add_argument("--entropy-weight", type=float,
                     help="the same as --aux-weight entropy=WEIGHT")
  short.add_argument("--pool-option", nargs="+", metavar="NAME=VALUE",
                     help="model.pool_options: the operator's own options ("
                     + "; ".join(f"{name}: {' '.join(op.options) or 'none'}"
                                 for name, op in POOLING.items())
                     + "); VALUE is read as JSON, else as text")
  short.add_argument("--grid", nargs="+", metavar="AXIS=V1,V2",
                     help="grid: scalar axes trained side by side as more "
                     "points, e.g. dropout=0,0.2 aux.link=1,0.1 (axes: "
                     "clip, weight_decay, dropout, aux.NAME; see "
                     "diffpool-sweep for shape axes)")
  short.add_argument("--exact-buckets", action="store_true",
                     help="the same as --no-bucket-ladder")
  processes.add_flags(parser)
  return parser


def parse_aux_weights(args) -> dict:
  """{name: weight} from --aux-weight NAME=WEIGHT ... and its aliases."""
  weights = {}
  for item in args.aux_weight or ():
    name, sep, text = item.partition("=")
    try:
      weight = float(text)
    except ValueError:
      weight = None
    if not sep or not name or weight is None:
      raise SystemExit(f"--aux-weight {item!r}: expected NAME=WEIGHT, for "
                       "example link=1")
    weights[name] = weight
  for name, value in (("link", args.link_weight),
                      ("entropy", args.entropy_weight)):
    if value is not None:
      weights[name] = value
  return weights


def parse_pool_options(items) -> dict:
  """{name: value} from --pool-option NAME=VALUE ... (VALUE as JSON when
  it parses, else the text)."""
  options = {}
  for item in items or ():
    name, sep, text = item.partition("=")
    if not sep or not name or not text:
      raise SystemExit(f"--pool-option {item!r}: expected NAME=VALUE, for "
                       "example link_loss=pyg")
    try:
      options[name] = json.loads(text)
    except json.JSONDecodeError:
      options[name] = text
  return options


def parse_grid(items) -> dict:
  """{axis: [values]} from --grid AXIS=V1,V2 ..."""
  grid = {}
  for item in items or ():
    axis, sep, text = item.partition("=")
    try:
      values = [float(v) for v in text.split(",")]
    except ValueError:
      values = None
    if not sep or not axis or not values:
      raise SystemExit(f"--grid {item!r}: expected AXIS=V1,V2,..., for "
                       "example dropout=0,0.2")
    grid[axis] = values
  return grid



def file_values(args, dataset: str) -> tuple[dict, Optional[str]]:
  """The config file's RunConfig values (--config, else the shipped config
  of `dataset` if any) and its baseline; unknown fields name the valid
  ones."""
  path = Path(args.config) if args.config else shipped_config(dataset)
  if not (args.config or path.is_file()):
    return {}, None
  try:
    values = json.loads(path.read_text())
  except (OSError, json.JSONDecodeError) as error:
    raise SystemExit(f"--config {path}: {error}")
  if not isinstance(values, dict):
    raise SystemExit(f"--config {path}: expected a JSON object of "
                     "RunConfig fields")
  baseline = values.pop("baseline", None)
  known = [f.name for f in dataclasses.fields(RunConfig)]
  unknown = sorted(set(values) - set(known))
  if unknown:
    raise SystemExit(f"--config {path}: unknown fields {unknown}; RunConfig "
                     f"has {known} (and 'baseline')")
  try:
    check_value_shapes(values, f"--config {path}")
  except ValueError as error:
    raise SystemExit(str(error))
  return values, baseline


def apply_shorthands(args, values: dict) -> dict:
  """`values` with the shorthand flags' fields set (see command_parser)."""
  model = dict(values.get("model", {}))
  if args.hidden_dim is not None:
    model.update(hidden_dim=args.hidden_dim, embed_dim=args.hidden_dim)
  if args.pool_option:
    model["pool_options"] = {**dict(model.get("pool_options", {})),
                             **parse_pool_options(args.pool_option)}
  weights = parse_aux_weights(args)
  if weights:
    model["aux_weights"] = {**dict(model.get("aux_weights", {})), **weights}
  values = {**values, "model": model}
  if args.grid:
    values["grid"] = {**values.get("grid", {}), **parse_grid(args.grid)}
  if args.exact_buckets:
    values["bucket_ladder"] = False
  return values


def parse_args(argv):
  """The command's flags (a Namespace) with `values`: the RunConfig
  fields from the config file, the shorthands and the generated options;
  and `baseline`. --help prints both parts, every default included."""
  parser = command_parser()
  args, rest = parser.parse_known_args(list(argv))
  options.import_extensions(args.imports)
  if {"-h", "--help"} & set(rest):    # after --import: its operators too
    print(command_parser().format_help())
  dataset = options.scan_option(rest, "--dataset") or "synthetic"
  values, baseline = file_values(args, dataset)
  args.baseline = args.baseline or baseline
  args.values = options.parse_config_options(
      rest, apply_shorthands(args, values), prog="diffpool-train",
      description="The configuration's options (generated from RunConfig "
      "and the preset's DiffPoolConfig).", run_class=RunConfig)
  return args


def build_config(args) -> tuple[RunConfig, Optional[str]]:
  """The RunConfig of parsed `args`, and the baseline preset."""
  try:
    config = RunConfig(**args.values)
  except (TypeError, ValueError) as error:
    raise SystemExit(f"bad configuration: {command_message(error)}")
  return config, args.baseline


def member_variables(states, member: int) -> dict:
  """One member's variables from the members' states on the host."""
  state = jax.tree_util.tree_map(lambda leaf: leaf[member], states)
  return {"params": state.params, "batch_stats": state.batch_stats}


def make_plots(run: Run, states) -> dict:
  """Learning curves, assignment heat maps, a hierarchy drawing and, on the
  synthetic set, the NMI of learned clusters; returns the extra results."""
  epochs = int(np.sum(~np.isnan(run.history["train_loss"][:, 0])))
  curves = {name.replace("_", " "): run.history[name][:epochs]
            for name in ("train_loss", "train_acc", f"val_{run.score}",
                         f"test_{run.score}")
            if name in run.history
            and not np.all(np.isnan(run.history[name][:epochs]))}
  plots.plot_learning_curves(curves, run.out / "learning_curves.png")
  if run.model_config.num_levels == 0:
    return {}
  variables = member_variables(states, 0)
  test = run.test_graphs[0]
  shown = test[:4]
  levels = assignments.level_one_assignments(run.session.model, variables,
                                            run.dataset, shown)
  plots.plot_assignments([s for s, _ in levels], run.out / "assignments.png",
                         [f"graph {g}" for g in shown])
  plots.plot_hierarchy(run.dataset.edges[shown[0]], levels[0][0],
                       levels[0][1], run.out / "hierarchy.png",
                       f"graph {shown[0]} coloured by level-1 cluster")
  if run.dataset.communities is None:
    return {}
  scores = []
  for fold in range(len(run.folds)):
    member = int(np.flatnonzero(run.members.fold == fold)[0])
    graphs = run.test_graphs[member]
    assigned = assignments.level_one_assignments(
        run.session.model, member_variables(states, member), run.dataset, graphs)
    scores.append(assignments.assignment_nmi(
        [s for s, _ in assigned],
        [run.dataset.communities[g] for g in graphs]))
  return {"assignment_nmi": float(np.mean(scores))}


def train_one(config: RunConfig, out: Path, args) -> dict:
  """Trains one configuration into `out` (results.json also records the
  command and its seconds from reading the data to the results)."""
  started = time.perf_counter()
  try:
    run = Run(config, out)
  except (ValueError, OSError) as error:   # data, splits, model settings
    raise SystemExit(f"{config.dataset}: {command_message(error)}")
  if run.dataset.origin and not args.quiet:
    print(f"{config.dataset}: {run.dataset.origin}", flush=True)
  if not args.quiet:
    print(f"{config.dataset}: task "
          f"{tasks.describe(run.task, run.session.task_source)}", flush=True)
  try:
    results = run.fit(resume=args.resume, progress=not args.quiet,
                      overwrite=args.overwrite)
  except (MemoryError, InputError) as error:   # RunFolderError is one
    raise SystemExit(f"{config.dataset}: {command_message(error)}")
  if not args.no_plots:
    states = hosts.fetch(run.session.states)   # every process takes part
    if hosts.is_writer():
      results.update(make_plots(run, states))
  # What diffpool-report shows beside the figures.
  results.update(command=args.command,
                 command_seconds=time.perf_counter() - started)
  if hosts.is_writer():
    write_json_atomic(out / "results.json", results)
  return results


def print_table(rows: list[dict]) -> None:
  """Per-fold (or per-seed) and mean ± std score of each trained preset."""
  for results in rows:
    metric = results["metric"]
    print(f"\n{results['dataset']} / {results['preset']} / "
          f"protocol {results['protocol']} ({results['note']})")
    # the fixed-split protocol reports over seeds, the others over folds
    unit = "seed" if "seed_scores" in results else "fold"
    scores = results[f"{unit}_scores"]
    print(f"  {unit:<9}" + " ".join(f"{i:>7d}" for i in range(len(scores))))
    print(f"  {metric:<9}" + " ".join(f"{tasks.shown(metric, a):>7}"
                                      for a in scores))
    unit_shown = " %" if tasks.METRICS[metric][1] else ""
    line = (f"  mean {metric} {tasks.shown(metric, results['score'])} ± "
            f"{tasks.shown(metric, results['std'])}{unit_shown}")
    if "assignment_nmi" in results:
      line += f"   level-1 NMI vs true communities {results['assignment_nmi']:.3f}"
    print(line + f"   ({results['wall_seconds']:.0f} s training, "
          f"{results['compile_seconds']:.0f} s compiling, "
          f"{results['graphs_per_second']:.0f} graphs/s)")
  if len(rows) == 2:
    metric = rows[0]["metric"]
    gap = rows[0]["score"] - rows[1]["score"]
    gap = f"{100 * gap:+.2f} points" if tasks.METRICS[metric][1] else (
        f"{gap:+.3f} {metric}")
    print(f"\n{rows[0]['preset']} vs {rows[1]['preset']}: {gap}")


# Model fields a baseline shares with the main model (its GNN stack and
# head); pooling fields stay the baseline preset's own.
SHARED_MODEL_FIELDS = ("conv", "hidden_dim", "embed_dim", "num_layers",
                       "l2_normalize", "batch_norm", "bn_affine", "concat",
                       "activate_last", "dropout", "mlp_hidden")


def main(argv=None) -> int:
  """The train command: parses `argv`, trains the run (and its baseline)
  and reports; returns the exit code (3 when a member diverged)."""
  argv = sys.argv[1:] if argv is None else argv
  args = parse_args(argv)
  args.command = shlex.join(["diffpool-train", *argv])
  processes.start(args)
  config, baseline = build_config(args)
  prepare(args, baseline)
  out = Path(args.out or f"runs/{config.dataset}_{config.preset}_"
             f"{config.protocol}")
  rows = [train_one(config, out, args)]
  if baseline:
    rows.append(train_one(baseline_config(config, baseline),
                          out / f"baseline_{baseline}", args))
  diverged = [(r["preset"], r["diverged_members"]) for r in rows
              if r.get("diverged_members")]
  if hosts.is_writer():                # process 0 reports
    report(rows, out, diverged)
  return 3 if diverged else 0


def prepare(args, baseline: Optional[str]) -> None:
  """Before training: the compilation cache on, the baseline preset
  checked, plotting imported in the background (SystemExit naming the
  flag at fault)."""
  try:
    compile_cache.enable(args.compile_cache)
  except ValueError as error:
    raise SystemExit(command_message(error))
  if baseline and baseline not in PRESETS:
    raise SystemExit(f"--baseline {baseline!r}: expected one of "
                     f"{tuple(PRESETS)}")
  if not args.no_plots:
    plots.import_in_background()


def baseline_config(config: RunConfig, baseline: str) -> RunConfig:
  """The baseline's run: preset `baseline` with the model fields every
  preset shares (SHARED_MODEL_FIELDS) and the grid without the main
  model's auxiliary-loss axes (the baseline's own losses keep their
  weights)."""
  shared = {k: v for k, v in config.model.items()
            if k in SHARED_MODEL_FIELDS}
  grid = {axis: values for axis, values in config.grid.items()
          if not axis.startswith("aux.")}
  return dataclasses.replace(config, preset=baseline, model=shared,
                             grid=grid)


def report(rows, out: Path, diverged) -> None:
  """The per-fold table of every run, where results are, and a warning
  per preset whose members diverged."""
  print_table(rows)
  print(f"\nresults in {out}/results.json")
  for name, members in diverged:
    print(f"WARNING: {name}: {len(members)} member(s) diverged (loss or "
          "parameters not finite; member: first such epoch "
          f"{members}); their epochs from then on were excluded from "
          "selection and a fold without any other run reports nan. Try a "
          "lower --lr or --clip.", file=sys.stderr)


def console_main() -> None:
  """The installed command `diffpool-train`."""
  processes.finish(processes.run_command(main))


if __name__ == "__main__":
  console_main()
