"""A cross-validated training run: data, folds, members, epochs, metrics,
checkpoints and exact resume. The command line lives in experiments/train.py.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any, Dict, List, NamedTuple, Optional, Tuple

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
from jax.sharding import Mesh
from tqdm import tqdm

from diffpool_jax import memory, pipeline, training
from diffpool_jax.datasets import (GraphDataset, bucket_entry_slots,
                                   choose_buckets, load_split_file, load_tu,
                                   padded_graph_cost,
                                   sparse_by_cost, stratified_folds,
                                   synthetic_hierarchical)
from diffpool_jax.protocols import PROTOCOLS
from diffpool_jax.datasets.features import split_kind
from diffpool_jax.model import DiffPool, DiffPoolConfig, preset

def history_keys(aux_names) -> Tuple[str, ...]:
  """Per-epoch, per-member values a run records: losses and accuracies of
  each split, and the training mean of each auxiliary loss
  ("train_<name>")."""
  return (("train_loss", "train_acc")
          + tuple(f"train_{name}" for name in aux_names)
          + ("val_loss", "val_acc", "test_loss", "test_acc"))

# What a run writes into its folder; --overwrite removes these and only these.
RUN_OUTPUTS = ("config.json", "metrics.jsonl", "results.json", "checkpoints",
               "learning_curves.png", "assignments.png", "hierarchy.png")
# RunConfig fields that may change when a run is resumed (epochs may only
# grow); any other difference is refused.
RESUMABLE_FIELDS = ("epochs", "patience", "checkpoint_every",
                    "members_per_program", "memory_gib", "data_root")


class RunFolderError(ValueError):
  """The output folder holds another run, or one that cannot be resumed."""


@dataclasses.dataclass
class RunConfig:
  """Everything a run depends on (written to config.json).

  Attributes:
    dataset: a TU name, or "synthetic" for the built-in set.
    data_root: folder holding NAME/NAME_A.txt...; None: the download cache.
    preset: model preset; model: overrides of its DiffPoolConfig fields
      ("aux_weights" may be a {name: weight} mapping; it updates the
      preset's weights name by name).
    protocol: a name in `protocols.PROTOCOLS`: "paper" (max over epochs of
      the mean test-fold accuracy, optimistic), "fair" (Errica et al.: inner
      validation holdout) or "errica" (half the seeds select a point on
      validation, the other half retrain it for the test score).
    folds, seeds: outer folds and seeds per fold; members = folds x seeds x
      points, where the points are every combination of the learning rates
      `lr` and the values of each `grid` axis (see `points`). seeds None:
      the protocol's `default_seeds` (1; "errica" 6: 3 select, 3 retrain).
    batch_size, clip, weight_decay: graphs per step, the global
      gradient-norm clip and the L2 weight decay added to the gradient
      (torch's Adam(weight_decay=...)), the same for every member.
    splits: a split file (Errica et al. format) replacing stratified folds.
    patience: early-stopping patience of the fair protocol.
    features: node feature kind (see datasets.node_features).
    max_buckets: at most this many padded sizes.
    min_bucket_gain: a further size bucket (one more compiled branch) is
      added only while it cuts the modelled epoch cost by at least this
      fraction (0: always max_buckets).
    cluster_reference: None keeps the preset's cluster counts (per graph
      for "paper": each graph pools to the ratio of its own nodes, capped
      at the model's max_clusters; the largest graph for the fixed counts
      of "pyg" and "original"). Given, every graph gets the same fixed
      counts from this node count: "max" (the largest graph, as PyG and
      Errica et al.), "mean", "median", "pNN" (the NN-th percentile of
      graph sizes) or an integer.
    grid: more scalar hyper-parameters swept side by side, {axis: values},
      axes from SCALAR_AXES: "clip", "weight_decay", "dropout" and
      "aux.NAME" (the weight of auxiliary loss NAME). An axis replaces the
      single value given elsewhere (clip, weight_decay, model dropout and
      aux_weights); none of them changes array shapes, so every point
      trains in the same compiled program.
    synthetic: keyword arguments of synthetic_hierarchical.
    checkpoint_every: epochs between checkpoints (0: never).
    first_level: adjacency of the first level, "dense" ([B,N,N]), "sparse"
      (an EdgeList: no N x N matrix) or "auto": per size bucket, by cost
      (`datasets.sparse_by_cost`: the edge list when N^2 is more than
      SPARSE_ENTRY_COST times the bucket's entry slots), so dense graphs
      stay dense and large sparse graphs need no N x N matrix. The "bce"
      link loss needs the dense form.
    members_per_program: members trained side by side in one compiled
      program; the rest run one program after another. 0 (auto): all of
      them if XLA's memory estimate fits `memory_gib`, else the most that
      fit (a divisor of the member count).
    memory_gib: memory the training programs may use (None: on a GPU or
      TPU 80 % of the device memory JAX may use, on the CPU 60 % of the
      host memory available when the run starts; see memory.budget). A
      run whose single member does not fit is refused before training.
    matmul_precision: precision of the float32 matrix products in the
      epoch programs, one of training.MATMUL_PRECISIONS: "float32" (full
      float32 on every backend, the default), "tensorfloat32" (TF32
      tensor cores on NVIDIA GPUs), "bfloat16" or "default" (the
      backend's choice: TF32 on recent NVIDIA GPUs). No effect on the CPU.
  """
  dataset: str = "synthetic"
  data_root: Optional[str] = None
  preset: str = "paper"
  model: Dict[str, object] = dataclasses.field(default_factory=dict)
  protocol: str = "paper"
  folds: int = 10
  seeds: Optional[int] = None
  epochs: int = 100
  batch_size: int = 20
  lr: Tuple[float, ...] = (1e-3,)
  clip: float = 2.0
  weight_decay: float = 0.0
  patience: int = 50
  splits: Optional[str] = None
  features: str = "default"
  max_buckets: int = 5
  min_bucket_gain: float = 0.1
  cluster_reference: object = None
  first_level: str = "auto"
  members_per_program: int = 0
  memory_gib: Optional[float] = None
  matmul_precision: str = "float32"
  split_seed: int = 0
  grid: Dict[str, Tuple[float, ...]] = dataclasses.field(default_factory=dict)
  synthetic: Dict[str, object] = dataclasses.field(default_factory=dict)
  checkpoint_every: int = 10

  INTEGER_FIELDS = ("folds", "seeds", "epochs", "batch_size", "patience",
                    "max_buckets", "split_seed", "checkpoint_every",
                    "members_per_program")
  NUMBER_FIELDS = ("clip", "weight_decay", "min_bucket_gain")

  def __post_init__(self):
    if not isinstance(self.protocol, str) or self.protocol not in PROTOCOLS:
      raise ValueError(f"protocol={self.protocol!r}; expected one of "
                       f"{tuple(PROTOCOLS)}")
    if self.seeds is None:
      self.seeds = PROTOCOLS[self.protocol].default_seeds
    for name in self.INTEGER_FIELDS:
      value = getattr(self, name)
      if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name}={value!r}; must be an integer")
    for name in self.NUMBER_FIELDS:
      if not is_number(getattr(self, name)):
        raise ValueError(f"{name}={getattr(self, name)!r}; must be a number")
    lrs = np.atleast_1d(np.asarray(self.lr, dtype=object))
    if lrs.ndim != 1 or not all(map(is_number, lrs)):
      raise ValueError(f"lr={self.lr!r}; expected a number or a list of "
                       "numbers")
    self.lr = tuple(float(v) for v in lrs)
    split_kind(self.features)               # raises on a bad feature kind
    PROTOCOLS[self.protocol].check(self.seeds)
    for name in ("folds", "seeds", "epochs", "batch_size"):
      if getattr(self, name) < 1:
        raise ValueError(f"{name}={getattr(self, name)}; must be >= 1")
    if self.folds < 2 and self.splits is None:
      raise ValueError(f"folds={self.folds}; stratified folds need at least "
                       "2 (or a split file)")
    for value in self.lr:
      if not (np.isfinite(value) and value > 0):
        raise ValueError(f"lr={value}; every learning rate must be "
                         "finite and > 0")
    if not (np.isfinite(self.clip) and self.clip > 0):
      raise ValueError(f"clip={self.clip}; must be finite and > 0")
    if not (np.isfinite(self.weight_decay) and self.weight_decay >= 0):
      raise ValueError(f"weight_decay={self.weight_decay}; must be finite "
                       "and >= 0")
    if not 0 <= self.min_bucket_gain < 1:
      raise ValueError(f"min_bucket_gain={self.min_bucket_gain}; must be in "
                       "[0, 1) (0: always max_buckets)")
    if self.patience < 0:
      raise ValueError(f"patience={self.patience}; must be >= 0")
    if self.first_level not in ("auto", "dense", "sparse"):
      raise ValueError(f"first_level={self.first_level!r}; expected 'auto', "
                       "'dense' or 'sparse'")
    if self.members_per_program < 0:
      raise ValueError(f"members_per_program={self.members_per_program}; "
                       "must be >= 0 (0: as many as fit in memory)")
    if self.memory_gib is not None and not (is_number(self.memory_gib)
                                            and self.memory_gib > 0):
      raise ValueError(f"memory_gib={self.memory_gib!r}; must be a number > 0")
    training.precision_context(self.matmul_precision)  # raises if unknown
    if self.cluster_reference is not None:
      self.reference_nodes(np.array([1]))    # raises on a bad reference
    self.grid = {axis: check_axis(axis, values)
                 for axis, values in sorted(dict(self.grid).items())}
    aux_names = self.model_config().aux_names  # raises on a bad model field
    for axis in self.grid:
      if axis.startswith("aux.") and axis[4:] not in aux_names:
        raise ValueError(f"grid: {axis!r} names no auxiliary loss of this "
                         f"model; its losses are {list(aux_names)} "
                         f"(axes {[f'aux.{n}' for n in aux_names]})")

  def points(self) -> List[Dict[str, float]]:
    """Every combination of `lr` and the grid axes (lr varies slowest,
    then the axes in name order): the hyper-parameter points trained side
    by side, each a {axis: value} dict with "lr" and every grid axis."""
    axes = {"lr": self.lr, **self.grid}
    return [dict(zip(axes, values))
            for values in itertools.product(*axes.values())]

  def member_hyperparameters(self, point: Dict[str, float]
                             ) -> Dict[str, float]:
    """Every scalar hyper-parameter of a member at `point`: "lr", "clip",
    "weight_decay", "dropout" and "aux.NAME" for each auxiliary loss."""
    model = self.model_config()
    values = {"lr": self.lr[0], "clip": self.clip,
              "weight_decay": self.weight_decay, "dropout": model.dropout,
              **{f"aux.{name}": weight
                 for name, weight in model.weights.items()}}
    values.update(point)
    return values

  def sparse_buckets(self, bucket_sizes, entry_slots) -> List[bool]:
    """Per bucket, whether its first level runs on an EdgeList.

    Args:
      bucket_sizes: [K] padded node counts.
      entry_slots: [K] adjacency entries per graph of each bucket.
    """
    if self.first_level != "auto":
      return [self.first_level == "sparse"] * len(bucket_sizes)
    if self.model_config().link_loss == "bce":
      return [False] * len(bucket_sizes)
    return sparse_by_cost(bucket_sizes, entry_slots)

  def model_config(self):
    """The preset with this run's overrides (JSON lists become tuples;
    aux_weights update the preset's by name); a cluster reference makes the
    counts fixed."""
    overrides = {k: tuple(v) if isinstance(v, list) else v
                 for k, v in self.model.items()}
    known = {f.name for f in dataclasses.fields(DiffPoolConfig)}
    unknown = sorted(set(overrides) - known)
    if unknown:
      raise ValueError(f"model: unknown fields {unknown}; DiffPoolConfig "
                       f"has {sorted(known)}")
    if self.cluster_reference is not None:
      overrides["cluster_mode"] = "fixed"
    if max(self.grid.get("dropout", ()), default=0) > 0:
      # Dropout on in the model; each member passes its own rate.
      overrides["dropout"] = max(self.grid["dropout"])
    if "aux_weights" in overrides:
      base = dict(preset(self.preset).aux_weights)
      base.update(weight_pairs(overrides["aux_weights"]))
      overrides["aux_weights"] = tuple(sorted(base.items()))
    return preset(self.preset, **overrides)

  def model_nodes(self, n_node: np.ndarray) -> int:
    """The model's `max_nodes`: the largest graph for per-graph counts,
    the reference size for fixed counts."""
    if self.model_config().per_graph:
      return int(np.max(n_node))
    return self.reference_nodes(n_node)

  def reference_nodes(self, n_node: np.ndarray) -> int:
    """The node count that fixed level-1 cluster ratios apply to."""
    ref = "max" if self.cluster_reference is None else self.cluster_reference
    if isinstance(ref, (int, np.integer)) and ref >= 1:
      return int(ref)
    if ref == "max":
      return int(n_node.max())
    if ref == "mean":
      return int(np.ceil(n_node.mean()))
    if ref == "median":
      return int(np.ceil(np.median(n_node)))
    if (isinstance(ref, str) and ref[:1] == "p" and ref[1:].isdigit()
        and int(ref[1:]) <= 100):
      return int(np.ceil(np.percentile(n_node, int(ref[1:]))))
    raise ValueError(f"cluster_reference={ref!r}; expected 'max', 'mean', "
                     "'median', 'pNN' (NN at most 100) or a positive "
                     "integer")


SCALAR_AXES = ("clip", "weight_decay", "dropout", "aux.NAME")


def is_number(value) -> bool:
  """Whether `value` is a real number (not a bool, string or None)."""
  return (isinstance(value, (int, float, np.integer, np.floating))
          and not isinstance(value, (bool, np.bool_)))


def check_axis(axis: str, values) -> Tuple[float, ...]:
  """A grid axis's values as floats; ValueError naming the axis unless it
  is one of SCALAR_AXES with a non-empty list of values in its range."""
  ranges = {"clip": ("> 0", lambda v: v > 0),
            "weight_decay": (">= 0", lambda v: v >= 0),
            "dropout": ("in [0, 1)", lambda v: 0 <= v < 1)}
  if axis == "lr":
    raise ValueError("grid: 'lr' is not a grid axis; give learning rates "
                     "as lr (a list)")
  if axis not in ranges and not (axis.startswith("aux.") and len(axis) > 4):
    raise ValueError(f"grid: unknown axis {axis!r}; expected one of "
                     f"{SCALAR_AXES}")
  rule, ok = ranges.get(axis, (">= 0", lambda v: v >= 0))
  if isinstance(values, (str, bytes)) or not np.ndim(values) == 1 or \
      not len(values):
    raise ValueError(f"grid: {axis}={values!r}; expected a non-empty list "
                     "of numbers")
  try:
    numbers = tuple(float(v) for v in values)
  except (TypeError, ValueError):
    raise ValueError(f"grid: {axis}={list(values)!r}; expected numbers"
                     ) from None
  for value in numbers:
    if not (np.isfinite(value) and ok(value)):
      raise ValueError(f"grid: {axis}={value}; every value must be finite "
                       f"and {rule}")
  if len(set(numbers)) < len(numbers):
    raise ValueError(f"grid: {axis}={list(numbers)} repeats a value")
  return numbers


def weight_pairs(weights) -> Dict[str, object]:
  """{name: weight} from a mapping or a sequence of (name, weight) pairs."""
  if isinstance(weights, dict):
    return dict(weights)
  try:
    return {name: weight for name, weight in weights}
  except (TypeError, ValueError):
    raise ValueError(f"model.aux_weights={weights!r}; expected a mapping "
                     "{name: weight} or (name, weight) pairs") from None


def concatenate_members(trees: List):
  """One tree from per-program trees [m, ...] along the member axis."""
  if len(trees) == 1:
    return trees[0]
  return jax.tree_util.tree_map(lambda *parts: jnp.concatenate(parts),
                                *trees)


def finite_or_none(value):
  """`value` with every non-finite float replaced by None (valid JSON)."""
  if isinstance(value, dict):
    return {k: finite_or_none(v) for k, v in value.items()}
  if isinstance(value, (list, tuple)):
    return [finite_or_none(v) for v in value]
  if isinstance(value, (float, np.floating)) and not np.isfinite(value):
    return None
  return value


def write_json_atomic(path: Path, value) -> None:
  """Writes JSON (non-finite numbers as null) to a temporary file, then
  renames it over `path`."""
  path.parent.mkdir(parents=True, exist_ok=True)
  temporary = path.with_name(path.name + ".tmp")
  temporary.write_text(json.dumps(finite_or_none(value), indent=2,
                                  default=_to_builtin, allow_nan=False))
  os.replace(temporary, path)


def write_lines_atomic(path: Path, rows: List[dict]) -> None:
  """Writes one JSON object per line, atomically."""
  temporary = path.with_name(path.name + ".tmp")
  temporary.write_text("".join(json.dumps(r, default=_to_builtin) + "\n"
                               for r in rows))
  os.replace(temporary, path)


def _to_builtin(value):
  if isinstance(value, np.generic):
    return value.item()
  if isinstance(value, np.ndarray):
    return value.tolist()
  raise TypeError(f"not JSON serialisable: {type(value)}")


def claim_folder(out: Path, config: RunConfig, resume: bool,
                 overwrite: bool) -> Optional[dict]:
  """Makes `out` this run's own folder before anything is written.

  A folder holding another run's outputs is refused unless `overwrite`
  (which deletes those outputs, and nothing else) or `resume` (whose saved
  configuration must match, but for RESUMABLE_FIELDS).

  Returns:
    The saved run configuration (a dict) when resuming an existing run,
    else None.
  """
  if out.exists() and not out.is_dir():
    raise RunFolderError(f"--out {out} is a file, not a folder")
  found = [name for name in RUN_OUTPUTS if (out / name).exists()]
  if not found:
    return None
  if overwrite:
    for name in found:
      path = out / name
      shutil.rmtree(path) if path.is_dir() else path.unlink()
    return None
  if not resume:
    raise RunFolderError(
        f"--out {out} already holds a run ({', '.join(found)}); pass "
        "--resume to continue it or --overwrite to replace it")
  saved_path = out / "config.json"
  try:
    saved = json.loads(saved_path.read_text())["run"]
  except (OSError, ValueError, KeyError, TypeError) as error:
    raise RunFolderError(f"--resume: cannot read the run in {saved_path}: "
                         f"{error}") from None
  current = json.loads(json.dumps(dataclasses.asdict(config),
                                  default=_to_builtin))
  for field in sorted(set(saved) | set(current)):
    if field in RESUMABLE_FIELDS or saved.get(field) == current.get(field):
      continue
    raise RunFolderError(
        f"--resume: {field} was {saved.get(field)!r} in the run in {out}, "
        f"now {current.get(field)!r}; only {', '.join(RESUMABLE_FIELDS)} "
        "may change on resume (or use another --out)")
  if current["epochs"] < saved.get("epochs", 0):
    raise RunFolderError(
        f"--resume: epochs was {saved['epochs']} in the run in {out}, now "
        f"{current['epochs']}; epochs may only grow on resume")
  return saved


def load_dataset(config: RunConfig) -> GraphDataset:
  """The run's data set with its node features."""
  if config.dataset == "synthetic":
    return synthetic_hierarchical(**config.synthetic)
  return load_tu(config.dataset, root=config.data_root,
                 features=config.features)


def make_folds(config: RunConfig, dataset: GraphDataset):
  """Outer folds: from the split file, or stratified with a seed (with a
  the protocol's inner validation holdout, 10 % for "fair")."""
  if config.splits is not None:
    folds = load_split_file(config.splits, dataset.num_graphs)
    if len(folds) < config.folds:
      raise ValueError(f"--splits {config.splits} holds {len(folds)} folds, "
                       f"fewer than folds={config.folds}; pass --folds "
                       f"{len(folds)} or another split file")
    return folds[:config.folds]
  holdout = PROTOCOLS[config.protocol].holdout
  return stratified_folds(dataset.labels, config.folds, config.split_seed,
                          holdout)


@dataclasses.dataclass
class Members:
  """The runs trained side by side: member m has fold[m], seed[m], point[m]
  and hyper[axis][m] for every scalar hyper-parameter axis (see
  RunConfig.member_hyperparameters)."""
  fold: np.ndarray
  seed: np.ndarray
  point: np.ndarray
  hyper: Dict[str, np.ndarray]

  @classmethod
  def grid(cls, num_folds: int, num_seeds: int,
           points: List[Dict[str, float]]):
    """Members folds x seeds x points; `points` [P] of {axis: value} with
    the same axes."""
    combos = list(itertools.product(range(num_folds), range(num_seeds),
                                    range(len(points))))
    fold, seed, point = (np.array(c) for c in zip(*combos))
    hyper = {axis: np.array([points[p][axis] for p in point], np.float64)
             for axis in points[0]}
    return cls(fold, seed, point, hyper)

  def __len__(self):
    return len(self.fold)

  def table(self, values: np.ndarray, shape) -> np.ndarray:
    """Reshapes [E, M] member values to [E, folds, seeds, points]."""
    return values.reshape(values.shape[0], *shape)


class Programs(NamedTuple):
  """A run's compiled epoch programs for `size` members per program.

  Attributes:
    size: members per program (the run's members go program by program).
    mesh: device mesh of the programs (None: one device).
    buckets: the padded data set placed for the mesh.
    train: compiled training epoch (see training.compile_epochs).
    evaluators: split ("val", "test") -> (compiled evaluation epoch, its
      fixed schedule).
    steps_per_epoch: optimizer steps in one training epoch.
    train_bytes: XLA's memory estimate of the training program.
    stages: program ("train", "evaluation") -> seconds of "trace", "lower"
      and "compile".
  """
  size: int
  mesh: Optional[Mesh]
  buckets: Tuple
  train: Any
  evaluators: Dict[str, Tuple[Any, pipeline.Schedule]]
  steps_per_epoch: int
  train_bytes: int
  stages: Dict[str, Dict[str, float]]


class Run:
  """A cross-validated run in `out_dir`; `fit()` trains it (resuming from
  the last checkpoint when asked) and returns the results."""

  def __init__(self, config: RunConfig, out_dir: str | os.PathLike,
               dataset: Optional[GraphDataset] = None):
    start = time.perf_counter()
    self.config = config
    self.out = Path(out_dir)
    self.dataset = dataset if dataset is not None else load_dataset(config)
    self.protocol = PROTOCOLS[config.protocol]
    self.folds = make_folds(config, self.dataset)
    self.points = config.points()
    self.members = Members.grid(
        len(self.folds), config.seeds,
        [config.member_hyperparameters(p) for p in self.points])
    self.grid_shape = (len(self.folds), config.seeds, len(self.points))
    model_config = config.model_config()
    self.model_config = model_config
    self.model = DiffPool(model_config, self.dataset.num_classes,
                          config.model_nodes(self.dataset.n_node))
    self.buckets = choose_buckets(self.dataset.n_node, config.max_buckets,
                                  min_gain=config.min_bucket_gain,
                                  cost=self.padded_graph_cost)
    self.sparse = config.sparse_buckets(
        self.buckets, bucket_entry_slots(self.dataset.edges,
                                         self.dataset.n_node, self.buckets))
    self.data = pipeline.device_data(self.dataset, self.buckets, self.sparse)
    fold_of = lambda m: self.folds[self.members.fold[m]]
    self.train_graphs = [fold_of(m).train for m in range(len(self.members))]
    self.val_graphs = [fold_of(m).validation
                       for m in range(len(self.members))]
    self.test_graphs = [fold_of(m).test for m in range(len(self.members))]
    num = len(self.members)
    sample = training.gather_batch(self.data.buckets[0],
                                   jnp.arange(config.batch_size))
    hyper = self.members.hyper
    self.states = training.init_members(
        self.model, sample, self.members.seed * 1000 + self.members.fold,
        hyper["lr"], hyper["clip"],
        {name: hyper[f"aux.{name}"] for name in model_config.aux_names},
        hyper["weight_decay"], hyper["dropout"])
    self.history = {k: np.full((config.epochs, num), np.nan)
                    for k in history_keys(model_config.aux_names)}
    self.epoch_seconds = np.full(config.epochs, np.nan)
    # Data, buckets and member initialisation, before any epoch program.
    self.setup_seconds = time.perf_counter() - start
    if num % max(config.members_per_program, 1):
      raise ValueError(f"members_per_program={config.members_per_program} "
                       f"does not divide the {num} members (folds x seeds "
                       "x points)")

  def padded_graph_cost(self, sizes: np.ndarray) -> np.ndarray:
    """[U] modelled cost of one graph padded to each size (for buckets)."""
    c, n_node = self.model_config, self.dataset.n_node
    clusters = [(self.model.slot_counts(int(n)) or (0,))[0] for n in sizes]
    entries = sum(len(e) for e in self.dataset.edges) / max(n_node.sum(), 1)
    layers = c.num_layers * (2 if c.num_levels else 1)
    return padded_graph_cost(sizes, c.hidden_dim, clusters, entries, layers)

  def part_states(self, mesh: Optional[Mesh], part: slice
                  ) -> training.TrainState:
    """The states of a program's members, placed for its mesh."""
    states = self.states
    if part != slice(0, len(self.members)):
      states = jax.tree_util.tree_map(lambda leaf: leaf[part], states)
    return training.shard_members(mesh, states)

  def schedule(self, epoch: int) -> pipeline.Schedule:
    """The training schedule of an epoch (deterministic given the epoch):
    each member's graphs are shuffled by its own fold and seed, so a
    member trains on the same batches whatever points train beside it."""
    rng = np.random.default_rng([self.config.split_seed, epoch])
    member_seeds = [[self.config.split_seed, epoch, int(f), int(s)]
                    for f, s in zip(self.members.fold, self.members.seed)]
    return pipeline.make_schedule(self.train_graphs, self.data,
                                  self.config.batch_size, rng, member_seeds)

  def checkpoint_manager(self) -> ocp.CheckpointManager:
    options = ocp.CheckpointManagerOptions(max_to_keep=2,
                                           enable_async_checkpointing=False)
    return ocp.CheckpointManager((self.out / "checkpoints").absolute(),
                                 options=options)

  def checkpoint_tree(self, epoch: int):
    return {"states": self.states, "epoch": np.asarray(epoch),
            "history": self.history, "epoch_seconds": self.epoch_seconds}

  def restore(self, manager: ocp.CheckpointManager,
              saved_epochs: int) -> int:
    """Loads the latest checkpoint of a run planned for `saved_epochs`
    epochs (its history is extended to this run's epochs); returns the
    next epoch to run."""
    step = manager.latest_step()
    if step is None:
      return 0
    template = self.checkpoint_tree(0)
    template["history"] = {k: v[:1].repeat(saved_epochs, axis=0)
                           for k, v in self.history.items()}
    template["epoch_seconds"] = np.zeros(saved_epochs)
    target = jax.tree_util.tree_map(ocp.utils.to_shape_dtype_struct,
                                    template)
    tree = manager.restore(step, args=ocp.args.StandardRestore(target))
    self.states = tree["states"]
    for key, values in tree["history"].items():
      self.history[key][:saved_epochs] = np.asarray(values)
    self.epoch_seconds[:saved_epochs] = np.asarray(tree["epoch_seconds"])
    return int(tree["epoch"]) + 1

  def compile(self, progress: bool = False) -> "Programs":
    """The epoch programs, compiled ahead of time with as many members per
    program as fit in memory (see RunConfig.members_per_program). Raises
    MemoryError when not even one member fits."""
    budget = memory.budget(self.config.memory_gib)
    shared = sum(leaf.nbytes for leaf in
                 jax.tree_util.tree_leaves(self.data.buckets))
    size = self.config.members_per_program or len(self.members)
    while True:
      programs = self.compile_programs(size)
      if programs.train_bytes <= budget.bytes:
        break
      message = self.memory_message(programs, budget)
      if self.config.members_per_program:
        raise MemoryError(message + (
            f". Lower --members-per-program (now "
            f"{self.config.members_per_program}) or let it choose (0)."))
      if size == 1:
        raise MemoryError(message + (
            ". Not even one member fits: lower --batch-size, the widths or "
            "--max-clusters, or raise --memory-gib."))
      # A linear guess from this program; only a compiled single-member
      # program is trusted to refuse the run.
      fit = max(memory.members_that_fit(size, programs.train_bytes, shared,
                                        budget.bytes), 1)
      if fit == size:
        fit = max(d for d in range(1, fit) if fit % d == 0)
      size = fit
    if progress:
      print(self.memory_message(programs, budget), flush=True)
      print(self.compute_message(programs), flush=True)
    return programs

  def compute_message(self, programs: "Programs") -> str:
    """One line on what the run trains: members, epochs, programs."""
    folds, seeds, points = self.grid_shape
    return (f"compute: {folds} folds x {seeds} seeds x {points} points = "
            f"{len(self.members)} members, up to {self.config.epochs} epochs"
            f" of {programs.steps_per_epoch} steps, "
            f"{len(self.member_parts(programs))} program(s) per epoch; "
            f"protocol {self.protocol.name}")

  def compile_programs(self, size: int) -> "Programs":
    """Lowers and compiles the train program and one evaluation program
    per split for `size` members per program (a divisor of all)."""
    mesh = training.make_mesh(size, self.config.batch_size)
    part = slice(0, size)
    schedule = self.schedule(0)
    buckets = training.replicate(mesh, self.data.buckets)
    states = self.part_states(mesh, part)
    precision = self.config.matmul_precision
    train, seconds = training.compile_epoch_program(
        self.model, mesh, "train", states, buckets, schedule.bucket_ids,
        schedule.indices[part], jnp.int32(0), matmul_precision=precision)
    stages = {"train": seconds}
    evaluators = {}
    fixed = self.evaluation_schedules()
    if fixed:
      first = next(iter(fixed.values()))
      evaluate, stages["evaluation"] = training.compile_epoch_program(
          self.model, mesh, "evaluate", states, buckets, first.bucket_ids,
          first.indices[part], matmul_precision=precision)
      evaluators = {split: (evaluate, f) for split, f in fixed.items()}
    return Programs(size, mesh, buckets, train, evaluators,
                    schedule.indices.shape[1], memory.program_bytes(train),
                    stages)

  def evaluation_schedules(self) -> Dict[str, pipeline.Schedule]:
    """The fixed schedules of the splits every member has graphs in ("val",
    "test"), padded to one length so that one program evaluates both."""
    fixed = {split: pipeline.make_schedule(graphs, self.data,
                                           self.config.batch_size)
             for split, graphs in (("val", self.val_graphs),
                                   ("test", self.test_graphs))
             if all(len(g) for g in graphs)}
    steps = max((len(f.bucket_ids) for f in fixed.values()), default=0)
    return {split: pipeline.pad_steps(f, steps) for split, f in fixed.items()}

  def memory_message(self, programs: "Programs",
                     budget: memory.Budget) -> str:
    """One line on the training program's memory against the budget and
    the device it was taken from."""
    form = "edge list" if self.sparse[-1] else "dense"
    return (f"training program: {programs.train_bytes / memory.GIB:.2f} GiB "
            f"(XLA estimate; {programs.size} of {len(self.members)} "
            f"members per program, batch {self.config.batch_size}, largest "
            f"bucket {int(self.buckets[-1])} nodes, {form}); budget "
            f"{budget.bytes / memory.GIB:.1f} GiB: {budget.source}")

  def member_parts(self, programs: "Programs") -> List[slice]:
    """The members of each program, in order."""
    size = programs.size
    return [slice(lo, lo + size) for lo in range(0, len(self.members), size)]

  def train_members(self, programs: "Programs", schedule: pipeline.Schedule,
                    first_step: int) -> training.StepMetrics:
    """One training epoch of every member, program by program; returns
    per-member metric sums [M]."""
    states, totals = [], []
    for part in self.member_parts(programs):
      new, sums = programs.train(
          self.part_states(programs.mesh, part), programs.buckets,
          schedule.bucket_ids, schedule.indices[part], jnp.int32(first_step))
      states.append(new)
      totals.append(sums)
    self.states = concatenate_members(states)
    return concatenate_members(totals)

  def evaluate_members(self, programs: "Programs", split: str
                       ) -> training.StepMetrics:
    """Per-member metric sums [M] of a split ("val" or "test")."""
    evaluate, fixed = programs.evaluators[split]
    return concatenate_members([
        evaluate(self.part_states(programs.mesh, part), programs.buckets,
                 fixed.bucket_ids, fixed.indices[part])
        for part in self.member_parts(programs)])

  def metric_rows(self, epoch: int) -> List[dict]:
    rows = []
    for m in range(len(self.members)):
      row = {"epoch": epoch, "member": m,
             "fold": int(self.members.fold[m]),
             "seed": int(self.members.seed[m]),
             "point": int(self.members.point[m]),
             **{axis: float(self.members.hyper[axis][m])
                for axis in self.points[0]}}
      if np.isnan(self.history["train_loss"][epoch, m]):
        row["diverged"] = True
      for key, values in self.history.items():
        value = values[epoch, m]
        if not np.isnan(value):
          row[key] = float(value)
      rows.append(row)
    return rows

  def all_stopped(self, epoch: int) -> bool:
    """Whether the protocol lets training stop after this epoch (fair:
    every member's early stopping has run out of patience)."""
    seen = slice(0, epoch + 1)
    return self.protocol.stopped(self.history["val_acc"][seen],
                                 self.history["val_loss"][seen],
                                 self.config.patience)

  def fit(self, resume: bool = False, progress: bool = True,
          overwrite: bool = False) -> dict:
    """Trains every member; writes config.json, metrics.jsonl, results.json
    and checkpoints into the output folder; returns the results.

    The folder must not hold another run (RunFolderError): `resume`
    continues the run there from its last checkpoint (same configuration
    but for RESUMABLE_FIELDS; more epochs extend it), `overwrite` deletes
    its outputs first. Resuming a folder without a run starts afresh.
    """
    if resume and overwrite:
      raise RunFolderError("--resume and --overwrite exclude each other")
    saved = claim_folder(self.out, self.config, resume, overwrite)
    self.out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(self.out / "config.json", self.describe())
    manager = self.checkpoint_manager()
    start_epoch = (self.restore(manager, saved["epochs"]) if saved
                   else 0)
    compile_start = time.perf_counter()
    programs = self.compile(progress)
    compile_seconds = time.perf_counter() - compile_start
    rows = [r for e in range(start_epoch) for r in self.metric_rows(e)]
    train_graphs = sum(len(g) for g in self.train_graphs)
    wall_start = time.perf_counter()
    bar = tqdm(range(start_epoch, self.config.epochs), disable=not progress,
               desc=f"{self.config.dataset} {self.config.preset}",
               initial=start_epoch, total=self.config.epochs)
    epoch = start_epoch - 1
    for epoch in bar:
      schedule = self.schedule(epoch)
      start = time.perf_counter()
      totals = self.train_members(programs, schedule,
                                  epoch * programs.steps_per_epoch)
      jax.block_until_ready(self.states)
      self.epoch_seconds[epoch] = time.perf_counter() - start
      self.record(epoch, "train", totals)
      for split in programs.evaluators:
        self.record(epoch, split, self.evaluate_members(programs, split))
      self.mark_diverged(epoch)
      rows.extend(self.metric_rows(epoch))
      write_lines_atomic(self.out / "metrics.jsonl", rows)
      shown = "val_acc" if "val" in programs.evaluators else "test_acc"
      bar.set_postfix(loss=f"{np.mean(self.history['train_loss'][epoch]):.3f}",
                      **{shown: f"{np.mean(self.history[shown][epoch]):.3f}"},
                      graphs_per_s=f"{train_graphs / self.epoch_seconds[epoch]:.0f}")
      every = self.config.checkpoint_every
      if every and (epoch + 1) % every == 0:
        manager.save(epoch, args=ocp.args.StandardSave(
            self.checkpoint_tree(epoch)))
        manager.wait_until_finished()
      if self.all_stopped(epoch) or np.all(self.diverged_at(epoch + 1) >= 0):
        break
    bar.close()
    results = self.results(epoch + 1, compile_seconds,
                           time.perf_counter() - wall_start, train_graphs,
                           programs)
    write_json_atomic(self.out / "results.json", results)
    return results

  def mark_diverged(self, epoch: int) -> None:
    """Members whose training loss or parameters are not finite after this
    epoch have diverged: from their first such epoch on, every history
    value is NaN, so no protocol can select those epochs."""
    params_finite = np.asarray(training.members_finite(self.states.params))
    finite = params_finite & np.isfinite(self.history["train_loss"][epoch])
    for member in np.flatnonzero(~finite):
      for values in self.history.values():
        values[epoch, member] = np.nan

  def diverged_at(self, epochs_run: int) -> np.ndarray:
    """[M] the first epoch (< epochs_run) whose training loss is NaN, i.e.
    where the member diverged (see `mark_diverged`), or -1."""
    lost = np.isnan(self.history["train_loss"][:epochs_run])
    first = (lost.argmax(axis=0) if epochs_run
             else np.zeros(len(self.members), np.int64))
    return np.where(lost.any(axis=0), first, -1)

  def record(self, epoch: int, split: str, totals) -> None:
    """Stores an epoch's per-member means of a split (and, for training,
    of each auxiliary loss)."""
    values = training.metrics_to_numpy(totals)
    self.history[f"{split}_loss"][epoch] = values["loss"]
    self.history[f"{split}_acc"][epoch] = values["accuracy"]
    if split == "train":
      for name in self.model_config.aux_names:
        self.history[f"train_{name}"][epoch] = values[name]

  def results(self, epochs_run: int, compile_seconds: float,
              wall_seconds: float, train_graphs: int,
              programs: Programs) -> dict:
    table = lambda key: self.members.table(
        self.history[key][:epochs_run], self.grid_shape)
    summary = self.protocol.summary(
        {key: table(key) for key in ("val_acc", "val_loss", "test_acc")},
        self.config.patience)
    seconds = self.epoch_seconds[:epochs_run]
    median = float(np.nanmedian(seconds)) if epochs_run else float("nan")
    diverged = self.diverged_at(epochs_run)
    return {**summary,
            "diverged_members": {int(m): int(diverged[m]) for m in
                                 np.flatnonzero(diverged >= 0)},
            "dataset": self.config.dataset, "preset": self.config.preset,
            "points": self.points,
            "epochs_run": epochs_run, "members": len(self.members),
            "wall_seconds": wall_seconds,
            "compile_seconds": compile_seconds,
            "median_epoch_seconds": median,
            "graphs_per_second": train_graphs / median,
            "parameters": int(sum(x.size for x in jax.tree_util.tree_leaves(
                self.states.params)) // len(self.members)),
            "jax_version": jax.__version__,
            "device": str(jax.devices()[0]),
            "devices": jax.device_count(),
            "members_per_program": programs.size,
            "setup_seconds": self.setup_seconds,
            "compile_stages": programs.stages,
            "buckets": self.buckets.tolist()}

  def cluster_slots(self) -> List[List[int]]:
    """Per bucket, the cluster slots of each level."""
    return [list(self.model.slot_counts(int(n))) for n in self.buckets]

  def describe(self) -> dict:
    return {"run": dataclasses.asdict(self.config),
            "model": dataclasses.asdict(self.model_config),
            "dataset": self.dataset.stats(),
            "members": len(self.members),
            "cluster_mode": ("per_graph" if self.model_config.per_graph
                             else "fixed"),
            "clusters": self.model_config.cluster_counts(self.model.max_nodes),
            "cluster_slots": self.cluster_slots(),
            "sparse_buckets": self.sparse,
            "buckets": self.buckets.tolist()}
