"""A run's configuration: plain data and its checks (written to
config.json). Nothing here touches data or devices."""

from __future__ import annotations

import dataclasses
import itertools
from typing import Dict, List, Mapping, Optional, Tuple

import numpy as np

from diffpool_jax.datasets.features import split_kind
from diffpool_jax.datasets.readers import READERS, find_format
from diffpool_jax.engine.compile_effort import EFFORTS
from diffpool_jax.engine.hyper import AUX, Hyper
from diffpool_jax.engine.trainer import precision_context
from diffpool_jax.models.classifier import DiffPoolConfig
from diffpool_jax.models.presets import preset
from diffpool_jax.protocols import PROTOCOLS
from diffpool_jax.tasks import METRICS, TASKS


@dataclasses.dataclass
class RunConfig:
  """Everything a run depends on (written to config.json).

  Attributes:
    dataset: a data set name: a TU name ("ENZYMES"), an OGB graph-property
      name ("ogbg-molhiv"), or "synthetic" for the built-in set.
    data_root: the folder holding the data set's folder (NAME/NAME_A.txt,
      ogbg_molhiv/raw/...); None: the download cache.
    format: the reader, a name in datasets.readers.READERS ("tu", "ogb",
      "synthetic", or one registered), or "auto": the one whose layout
      data_root holds, else the one the name says ("ogbg-"), else TU.
    preset: the model preset (a name in presets.PRESETS).
    model: overrides of the preset's DiffPoolConfig fields ("aux_weights"
      may be a {name: weight} mapping; it updates the preset's weights
      name by name).
    protocol: "auto" (the default: the reader's, "fixed" for a data set
      with an official split such as OGB's, else "fair") or a name in
      `protocols.PROTOCOLS`: "fair" (Errica et al.: early stopping and
      point selection on an inner validation holdout), "errica" (half the seeds select a point on
      validation, the other half retrain it for the test score), "fixed"
      (one fixed split, a data set's official one: selection on valid,
      mean and std over seeds) or "paper" (chosen explicitly: the epoch
      of the best mean test-fold accuracy, optimistic; one point only).
    task: what the model learns (tasks.TASKS): "auto" (the kind the data
      set's targets imply: one class per graph, 0/1 targets with missing
      labels, or real targets), "classification" (softmax cross-entropy),
      "binary" (masked binary cross-entropy per target column) or
      "regression" (masked squared error).
    metric: the score runs select and report by: "auto" (the task's
      default: accuracy, rocauc, rmse) or a name in tasks.METRICS that
      scores the task ("ap" for binary, "mae" for regression).
    folds: outer folds (members = folds x seeds x points, the points every
      combination of `lr` and the `grid` axes; see `points`).
    seeds: seeds per fold; None: the protocol's `default_seeds` (1;
      "errica" 6: 3 select, 3 retrain).
    epochs: training epochs of every member.
    batch_size: graphs per step.
    lr: one or more learning rates (Adam); more than one trains a point
      for each, side by side.
    clip: the global gradient-norm clip.
    weight_decay: the L2 weight decay added to the gradient (torch's
      Adam(weight_decay=...)).
    splits: a split file (Errica et al. format) replacing stratified folds.
    patience: early-stopping patience of the fair protocol.
    features: node feature kind (see datasets.node_features).
    max_buckets: at most this many padded sizes.
    min_bucket_gain: a further size bucket (one more compiled branch) is
      added only while it cuts the modelled epoch cost by at least this
      fraction (0: always max_buckets); the rule of compile_effort
      "medium" and "full".
    bucket_ladder: bucket sizes (and each bucket's graph slots) from the
      fixed size ladder (datasets.size_ladder: multiples of 8 up to 128,
      then steps of about 1.125x rounded up to a multiple of 8), so that
      runs over different data sets meet in the persistent compilation
      cache; False: the data set's own node counts (least padding).
    compile_effort: "auto" (the XLA effort and the number of buckets of
      least predicted compile + training seconds over the planned epochs,
      see compile_effort.choose), "fast" (XLA's cheapest settings, one
      bucket), "medium" (optimising settings without the CPU's fusion
      emitters: about a third of "full"'s compile memory, epochs up to a
      sixth slower) or "full" (all optimising settings); "medium" and
      "full" compile the buckets of max_buckets/min_bucket_gain. Results
      differ within float32 rounding between efforts.
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
    split_seed: seed of the stratified folds and inner holdouts.
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
  format: str = "auto"
  preset: str = "paper"
  model: Dict[str, object] = dataclasses.field(default_factory=dict)
  protocol: str = "auto"
  task: str = "auto"
  metric: str = "auto"
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
  bucket_ladder: bool = True
  compile_effort: str = "auto"
  cluster_reference: object = None
  first_level: str = "auto"
  members_per_program: int = 0
  memory_gib: Optional[float] = None
  matmul_precision: str = "float32"
  split_seed: int = 0
  grid: Dict[str, Tuple[float, ...]] = dataclasses.field(default_factory=dict)
  synthetic: Dict[str, object] = dataclasses.field(default_factory=dict)
  checkpoint_every: int = 10

  def __post_init__(self):
    if self.protocol == "auto":
      self.protocol = READERS[find_format(self.dataset, self.data_root,
                                          self.format)].protocol
    if not isinstance(self.protocol, str) or self.protocol not in PROTOCOLS:
      raise ValueError(f"protocol={self.protocol!r}; expected one of "
                       f"{tuple(PROTOCOLS)}")
    if self.seeds is None:
      self.seeds = PROTOCOLS[self.protocol].default_seeds
    check_run_config(self)

  def points(self) -> List[Dict[str, float]]:
    """Every combination of `lr` and the grid axes (lr varies slowest,
    then the axes in name order): the hyper-parameter points trained side
    by side, each a {axis: value} dict with "lr" and every grid axis."""
    axes = {"lr": self.lr, **self.grid}
    return [dict(zip(axes, values))
            for values in itertools.product(*axes.values())]

  def member_hyper(self, point: Dict[str, float]) -> Hyper:
    """A member's hyper-parameters at `point` (a {axis: value} of
    `points`): this configuration's values with the point's axes set."""
    model = self.model_config()
    base = Hyper(self.lr[0], self.clip, self.weight_decay, model.dropout,
                 dict(model.weights))
    return Hyper.from_axes({**base.axes(), **point})

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
    if "pool_options" in overrides:      # a mapping or (name, value) pairs
      overrides["pool_options"] = tuple(sorted(
          weight_pairs(overrides["pool_options"]).items()))
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
    return reference_size(self.cluster_reference, n_node)


INTEGER_FIELDS = ("folds", "seeds", "epochs", "batch_size", "patience",
                  "max_buckets", "split_seed", "checkpoint_every",
                  "members_per_program")
NUMBER_FIELDS = ("clip", "weight_decay", "min_bucket_gain")
# Fields that hold a mapping (a JSON object), and the model's own.
MAPPING_FIELDS = ("model", "grid", "synthetic")
MODEL_MAPPING_FIELDS = ("aux_weights", "pool_options")
STRING_FIELDS = ("dataset", "format", "preset", "protocol", "task", "metric",
                 "features", "compile_effort", "first_level",
                 "matmul_precision")


def check_value_shapes(values: Mapping[str, object], where: str,
                       model: bool = True) -> None:
  """ValueError naming `where` (a config file, "RunConfig") and the field
  unless the mapping fields of RunConfig values (and, with `model`, of
  their "model") are mappings and the string fields strings; run before
  anything reads them."""
  for name in MAPPING_FIELDS:
    if name in values and not isinstance(values[name], Mapping):
      raise ValueError(f"{where}: {name}={values[name]!r}; must be a "
                       "mapping (a JSON object) of names to values")
  for name in MODEL_MAPPING_FIELDS if model else ():
    value = dict(values.get("model") or {}).get(name)
    if value is not None and not isinstance(value, (Mapping, list, tuple)):
      raise ValueError(f"{where}: model.{name}={value!r}; must be a "
                       "mapping (a JSON object) of names to values")
  for name in STRING_FIELDS:
    if name in values and not isinstance(values[name], str):
      raise ValueError(f"{where}: {name}={values[name]!r}; must be a "
                       "string")


def check_run_config(config: "RunConfig") -> None:
  """ValueError naming the field unless every field of `config` is valid:
  the types, then each field's own check (`FIELD_CHECKS`, found by the
  field's name), then the checks of fields together (`check_combined`).
  Normalises `lr` (a tuple of floats) and `grid` (sorted, float tuples)."""
  check_types(config)
  for check in FIELD_CHECKS.values():
    check(config)
  check_combined(config)


def check_types(config: "RunConfig") -> None:
  """ValueError unless INTEGER_FIELDS hold integers, NUMBER_FIELDS numbers,
  MAPPING_FIELDS mappings and STRING_FIELDS strings."""
  # (the model's own fields are checked with the model: check_model)
  check_value_shapes(dataclasses.asdict(config), "RunConfig", model=False)
  for name in INTEGER_FIELDS:
    value = getattr(config, name)
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
      raise ValueError(f"{name}={value!r}; must be an integer")
  for name in NUMBER_FIELDS:
    if not is_number(getattr(config, name)):
      raise ValueError(f"{name}={getattr(config, name)!r}; must be a number")


def check_lr(config: "RunConfig") -> None:
  """lr: one finite number > 0 or a list of them; made a tuple of floats."""
  lrs = np.atleast_1d(np.asarray(config.lr, dtype=object))
  if lrs.ndim != 1 or not lrs.size or not all(map(is_number, lrs)):
    raise ValueError(f"lr={config.lr!r}; expected a number or a list of "
                     "numbers (at least one)")
  config.lr = tuple(float(v) for v in lrs)
  for value in config.lr:
    if not (np.isfinite(value) and value > 0):
      raise ValueError(f"lr={value}; every learning rate must be "
                       "finite and > 0")


def one_of(name: str, allowed, auto: bool = False):
  """A check that field `name` is in `allowed` (a tuple or a registry,
  read when checking) or, with `auto`, "auto"."""
  def check(config: "RunConfig") -> None:
    value = getattr(config, name)
    if not (auto and value == "auto") and value not in allowed:
      expected = (f"'auto' or one of {tuple(allowed)}" if auto
                  else f"one of {tuple(allowed)}")
      raise ValueError(f"{name}={value!r}; expected {expected}")
  return check


def in_range(name: str, low: float, high: Optional[float] = None,
             note: str = ""):
  """A check that field `name` is >= low (and < high when given); the
  message adds `note`."""
  def check(config: "RunConfig") -> None:
    value = getattr(config, name)
    if not (low <= value and (high is None or value < high)):  # NaN too
      bound = f"in [{low}, {high})" if high is not None else f">= {low}"
      raise ValueError(f"{name}={value}; must be {bound}{note}")
  return check


def finite(name: str, positive: bool):
  """A check that field `name` is finite and > 0 (`positive`) or >= 0."""
  def check(config: "RunConfig") -> None:
    value = getattr(config, name)
    if not (np.isfinite(value) and (value > 0 if positive else value >= 0)):
      raise ValueError(f"{name}={value}; must be finite and "
                       f"{'> 0' if positive else '>= 0'}")
  return check


def check_bucket_ladder(config: "RunConfig") -> None:
  if not isinstance(config.bucket_ladder, bool):
    raise ValueError(f"bucket_ladder={config.bucket_ladder!r}; must be "
                     "true or false")


def check_memory_gib(config: "RunConfig") -> None:
  if config.memory_gib is not None and not (is_number(config.memory_gib)
                                            and config.memory_gib > 0):
    raise ValueError(f"memory_gib={config.memory_gib!r}; must be a number > 0")


def check_cluster_reference(config: "RunConfig") -> None:
  if config.cluster_reference is not None:
    reference_size(config.cluster_reference, np.array([1]))  # raises if bad


def check_grid(config: "RunConfig") -> None:
  """grid: every axis one of SCALAR_AXES with values in its range (see
  `check_axis`); made sorted by axis, each a tuple of floats."""
  config.grid = {axis: check_axis(axis, values)
                 for axis, values in sorted(dict(config.grid).items())}


# Each field's own check, by the field's name (run in this order).
FIELD_CHECKS = {
    "lr": check_lr,
    "features": lambda config: split_kind(config.features),
    "task": one_of("task", TASKS, auto=True),
    "metric": one_of("metric", METRICS, auto=True),
    "format": one_of("format", READERS, auto=True),
    "folds": in_range("folds", 1),
    "seeds": in_range("seeds", 1),
    "epochs": in_range("epochs", 1),
    "batch_size": in_range("batch_size", 1),
    "clip": finite("clip", positive=True),
    "weight_decay": finite("weight_decay", positive=False),
    "bucket_ladder": check_bucket_ladder,
    "compile_effort": one_of("compile_effort", EFFORTS),
    "min_bucket_gain": in_range("min_bucket_gain", 0, 1,
                                " (0: always max_buckets)"),
    "patience": in_range("patience", 0),
    "first_level": one_of("first_level", ("auto", "dense", "sparse")),
    "members_per_program": in_range(
        "members_per_program", 0, note=" (0: as many as fit in memory)"),
    "memory_gib": check_memory_gib,
    "matmul_precision": lambda config: precision_context(
        config.matmul_precision),
    "cluster_reference": check_cluster_reference,
    "grid": check_grid,
}


def check_combined(config: "RunConfig") -> None:
  """The checks of fields together: stratified folds need 2 or more
  without a split file; the protocol accepts the seeds and points; grid
  axes aux.NAME name the model's auxiliary losses (and the model fields
  are valid)."""
  if config.folds < 2 and config.splits is None:
    raise ValueError(f"folds={config.folds}; stratified folds need at least "
                     "2 (or a split file)")
  PROTOCOLS[config.protocol].check(config.seeds, len(config.points()))
  aux_names = config.model_config().aux_names  # raises on a bad model field
  for axis in config.grid:
    if axis.startswith(AUX) and axis[len(AUX):] not in aux_names:
      raise ValueError(f"grid: {axis!r} names no auxiliary loss of this "
                       f"model; its losses are {list(aux_names)} "
                       f"(axes {[AUX + n for n in aux_names]})")


def reference_size(reference, n_node: np.ndarray) -> int:
  """The node count that fixed level-1 cluster ratios apply to: "max"
  (also for None), "mean", "median", "pNN" (a percentile of the graph
  sizes `n_node`) or a positive integer."""
  ref = "max" if reference is None else reference
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


# The grid's axes: the fields of Hyper (but "lr", which is RunConfig.lr,
# a list of its own), each with the range its values must lie in.
AXIS_RANGES = {"clip": ("> 0", lambda v: v > 0),
               "weight_decay": (">= 0", lambda v: v >= 0),
               "dropout": ("in [0, 1)", lambda v: 0 <= v < 1),
               AUX + "NAME": (">= 0", lambda v: v >= 0)}
SCALAR_AXES = tuple(AXIS_RANGES)


def is_number(value) -> bool:
  """Whether `value` is a real number (not a bool, string or None)."""
  return (isinstance(value, (int, float, np.integer, np.floating))
          and not isinstance(value, (bool, np.bool_)))


def check_axis(axis: str, values) -> Tuple[float, ...]:
  """A grid axis's values as floats; ValueError naming the axis unless it
  is one of SCALAR_AXES with a non-empty list of values in its range."""
  if axis == "lr":
    raise ValueError("grid: 'lr' is not a grid axis; give learning rates "
                     "as lr (a list)")
  is_aux = axis.startswith(AUX) and len(axis) > len(AUX)
  if axis not in AXIS_RANGES and not is_aux:
    raise ValueError(f"grid: unknown axis {axis!r}; expected one of "
                     f"{SCALAR_AXES}")
  rule, ok = AXIS_RANGES[AUX + "NAME" if is_aux else axis]
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
