"""The engine of a run: the model, the padded data set on the device, the
members' training states, and compiled epoch programs fitted to memory.

A `Session` is built from a RunConfig, a data set and the members with the
graphs each trains, validates and tests on. It chooses the size buckets
(by the model's modelled step cost) and each bucket's first-level form
(dense or edge list, by cost), puts the buckets on the device, initialises
every member, compiles the epoch programs with as many members per program
as fit the memory budget, and runs training and evaluation epochs program
by program. The run (run/loop.py) owns the epochs, metrics and files; the
benchmarks use a session directly.
"""

from __future__ import annotations

import dataclasses
import time
from concurrent.futures import Future
from typing import (Any, Callable, Dict, List, NamedTuple, Optional, Sequence,
                    Tuple)

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh

from diffpool_jax import tasks
from diffpool_jax.datasets import (GraphDataset, assign_buckets,
                                   bucket_entry_slots, bucket_options,
                                   buckets_worth_compiling, padded_graph_cost,
                                   sparse_by_cost)
from diffpool_jax.datasets.features import code_vocabulary, label_codes
from diffpool_jax.engine import (compile_effort, hosts, memory, pipeline,
                                 trainer)
from diffpool_jax.engine.hyper import Hyper
from diffpool_jax.models.classifier import DiffPool


class Programs(NamedTuple):
  """A session's compiled epoch programs for `size` members per program.

  Attributes:
    size: members per program (the members go program by program).
    mesh: device mesh of the programs (None: one device).
    buckets: the padded data set placed for the mesh.
    train: compiled training epoch (see trainer.compile_epochs).
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


class MemberGraphs(NamedTuple):
  """Per member, the graph ids it trains, validates and tests on."""
  train: List[np.ndarray]
  val: List[np.ndarray]
  test: List[np.ndarray]


class Session:
  """Model, device data, member states and epoch programs of one run.

  Args:
    config: the RunConfig (model, batch size, buckets, first level, memory,
      precision, members per program, split seed).
    dataset: the data set with its node features.
    hyper: the members' hyper-parameters ([M] leaves).
    seeds: [M] each member's initialisation seed.
    shuffle_seeds: [M] (fold, seed) pairs that shuffle each member's
      batches, so that a member trains alike whatever trains beside it.
    graphs: the graphs of each member.
    optimizer: the optimizer factory (see trainer.Optimizer).
  """

  def __init__(self, config, dataset: GraphDataset,
               hyper: Hyper, seeds: Sequence[int],
               shuffle_seeds: Sequence[Tuple[int, int]],
               graphs: MemberGraphs,
               optimizer: trainer.Optimizer = trainer.adam_with_clip):
    self.started = time.perf_counter()
    self.config = config
    self.model_config, edge_codes = with_vocabularies(config.model_config(),
                                                      dataset)
    self.dataset = dataset
    self.graphs = graphs
    self.shuffle_seeds = list(shuffle_seeds)
    self.num_members = len(seeds)
    self.optimizer = optimizer
    self.task, self.task_source = tasks.resolve_task(
        dataset, config.task, config.metric)
    self.model = DiffPool(self.model_config, self.task.outputs,
                          config.model_nodes(dataset.n_node),
                          task=self.task.kind)
    self.layout = bucket_layout(config, self.model, dataset, graphs)
    self.buckets, self.sparse = self.layout.buckets, self.layout.sparse
    self.effort = self.layout.effort
    self.data = pipeline.device_data(
        dataset, self.buckets, self.sparse, config.bucket_ladder,
        None if self.task.kind == "classification" else dataset.targets,
        edge_codes)
    if self.num_members % max(config.members_per_program, 1):
      raise ValueError(f"members_per_program={config.members_per_program} "
                       f"does not divide the {self.num_members} members "
                       "(folds x seeds x points)")
    sample = jax.jit(trainer.gather_batch)(self.data.buckets[0],
                                            jnp.arange(config.batch_size))
    # The states compile and initialise on a thread while the epoch
    # programs compile from their shapes (see `compile`).
    self.state_shapes, self._pending = trainer.init_members_in_background(
        self.model, sample, seeds, hyper, optimizer)
    # The divergence check compiles on a thread once the states exist,
    # not after the first epoch (0.6 s of a cold MUTAG command; with
    # several devices the trained states' placement differs and it
    # compiles again then).
    self._finite_check = trainer.BACKGROUND.submit(compile_finite_check,
                                                   self._pending)
    self._states = None
    self.init_stages: Dict[str, float] = {}

  @property
  def states(self) -> trainer.TrainState:
    """The members' training states [M, ...] (waits for the
    initialisation, and the divergence check's compile, on first use)."""
    self._await_initialisation()
    return self._states

  @states.setter
  def states(self, states: trainer.TrainState) -> None:
    self._await_initialisation()        # the initialisation is done first
    self._states = states

  def _await_initialisation(self) -> None:
    """Keeps the initialised states and their stages once the
    initialisation (and the divergence check's compile) has finished."""
    if self._pending is not None:
      self._states, self.init_stages = self._pending.result()
      self._pending = None
      self._finite_check.result()

  def params_finite(self) -> np.ndarray:
    """[M] whether every parameter of each member is finite (a member
    whose training diverged has some that are not)."""
    return hosts.fetch(trainer.members_finite(self.states.params))

  def cluster_slots(self) -> List[List[int]]:
    """Per bucket, the cluster slots of each level."""
    return [list(self.model.slot_counts(int(n))) for n in self.buckets]

  def schedule(self, epoch: int) -> pipeline.Schedule:
    """The training schedule of an epoch (deterministic given the epoch):
    each member's graphs are shuffled by its own fold and seed, so a
    member trains on the same batches whatever points train beside it."""
    split_seed = self.config.split_seed
    rng = np.random.default_rng([split_seed, epoch])
    member_seeds = [[split_seed, epoch, int(f), int(s)]
                    for f, s in self.shuffle_seeds]
    return pipeline.make_schedule(self.graphs.train, self.data,
                                  self.config.batch_size, rng, member_seeds)

  def evaluation_schedules(self) -> Dict[str, pipeline.Schedule]:
    """The fixed schedules of the splits every member has graphs in ("val",
    "test"), padded to one length so that one program evaluates both."""
    fixed = {split: pipeline.make_schedule(graphs, self.data,
                                           self.config.batch_size)
             for split, graphs in (("val", self.graphs.val),
                                   ("test", self.graphs.test))
             if all(len(g) for g in graphs)}
    steps = max((len(f.bucket_ids) for f in fixed.values()), default=0)
    return {split: pipeline.pad_steps(f, steps) for split, f in fixed.items()}

  def part_states(self, mesh: Optional[Mesh], part: slice,
                  shapes_will_do: bool = False) -> trainer.TrainState:
    """The states of a program's members, placed for its mesh; with
    `shapes_will_do` (compiling), their shapes while the initialisation
    still runs on one device."""
    if shapes_will_do and mesh is None and self._pending is not None:
      count = len(range(self.num_members)[part])
      return jax.tree_util.tree_map(
          lambda s: jax.ShapeDtypeStruct((count,) + s.shape[1:], s.dtype),
          self.state_shapes)
    states = self.states
    if part != slice(0, self.num_members):
      states = jax.tree_util.tree_map(lambda leaf: leaf[part], states)
    return trainer.shard_members(mesh, states)

  def compile_train(self, schedule: pipeline.Schedule, part: slice,
                    mesh: Optional[Mesh] = None, buckets=None):
    """The training epoch compiled for the members `part` on `schedule`'s
    shapes, and the seconds of its stages (see
    trainer.compile_epoch_program)."""
    buckets = self.data.buckets if buckets is None else buckets
    return trainer.compile_epoch_program(
        self.model, mesh, "train", self.part_states(mesh, part, True),
        buckets,
        schedule.bucket_ids, schedule.indices[part], jnp.int32(0),
        matmul_precision=self.config.matmul_precision,
        optimizer=self.optimizer, effort=self.effort)

  def compile_train_program(self, size: int, mesh=None, buckets=None
                            ) -> Programs:
    """The train program compiled for `size` members per program (no
    evaluators yet: see `with_evaluators`), on `mesh` with the buckets
    placed for it (default: `trainer.make_mesh`'s)."""
    if buckets is None:
      mesh = trainer.make_mesh(size, self.config.batch_size)
      buckets = trainer.replicate(mesh, self.data.buckets)
    schedule = self.schedule(0)
    train, seconds = self.compile_train(schedule, slice(0, size), mesh,
                                        buckets)
    return Programs(size, mesh, buckets, train, {},
                    schedule.indices.shape[1], memory.program_bytes(train),
                    {"train": seconds})

  def compile_evaluators(self, size: int, mesh: Optional[Mesh], buckets
                         ) -> Tuple[Dict, Optional[Dict[str, float]]]:
    """One evaluation program for `size` members per program, serving every
    split ("val", "test") that every member has graphs in: {split:
    (program, schedule)} and the seconds of its stages (None: no split)."""
    fixed = self.evaluation_schedules()
    if not fixed:
      return {}, None
    first = next(iter(fixed.values()))
    part = slice(0, size)
    evaluate, seconds = trainer.compile_epoch_program(
        self.model, mesh, "evaluate", self.part_states(mesh, part, True),
        buckets, first.bucket_ids, first.indices[part],
        matmul_precision=self.config.matmul_precision, effort=self.effort)
    return {split: (evaluate, f) for split, f in fixed.items()}, seconds

  def with_evaluators(self, programs: Programs, evaluators=None
                      ) -> Programs:
    """`programs` with their evaluation program (`compile_evaluators`'s
    result `evaluators`, or compiled now)."""
    if evaluators is None:
      evaluators = self.compile_evaluators(programs.size, programs.mesh,
                                           programs.buckets)
    fixed, seconds = evaluators
    stages = dict(programs.stages)
    if seconds is not None:
      stages["evaluation"] = seconds
    return programs._replace(evaluators=fixed, stages=stages)

  def compile(self, progress: bool = False) -> Programs:
    """The epoch programs with as many members per program as fit in
    memory (see RunConfig.members_per_program). The first try compiles
    the training and the evaluation programs side by side (and beside the
    initialisation and the divergence check); after a try that does not
    fit, the evaluation program is compiled once the training program
    fits. Raises MemoryError when not even one member fits. The programs'
    stages carry when each began and ended, in seconds from the session's
    start."""
    budget = memory.budget(self.config.memory_gib)
    shared = sum(leaf.nbytes for leaf in
                 jax.tree_util.tree_leaves(self.data.buckets))
    chosen = self.config.members_per_program
    size = chosen or self.num_members
    programs, evaluators = self.compile_side_by_side(size)
    while True:
      if programs.train_bytes <= budget.bytes:
        break
      message = self.memory_message(programs, budget)
      if chosen:
        raise MemoryError(message + (
            f". Lower members_per_program (now {chosen}) or let it choose "
            "(0)."))
      if size == 1:
        raise MemoryError(message + (
            ". Not even one member fits: lower the batch size, the widths "
            "or max_clusters, or raise memory_gib."))
      # A linear guess from this program; only a compiled single-member
      # program is trusted to refuse the run.
      fit = max(memory.members_that_fit(size, programs.train_bytes, shared,
                                        budget.bytes), 1)
      if fit == size:
        fit = max(d for d in range(1, fit) if fit % d == 0)
      size, evaluators = fit, None
      programs = self.compile_train_program(size)
    if progress:
      print(self.memory_message(programs, budget), flush=True)
    programs = self.with_evaluators(programs, evaluators)
    self.states                         # the initialisation has finished
    # XLA's compile transients, freed but held by the allocator, would
    # otherwise stay beside the training's buffers (cold ENZYMES, 10
    # folds: peak 1.43 -> 1.10 GiB).
    memory.release_freed_host_memory()
    stages = {**programs.stages, "init": self.init_stages}
    return programs._replace(stages={
        name: {**seconds, "start": seconds["start"] - self.started,
               "end": seconds["end"] - self.started}
        for name, seconds in stages.items() if seconds})

  def compile_side_by_side(self, size: int) -> Tuple[Programs, Tuple]:
    """The training program and `compile_evaluators`'s result for `size`
    members, compiled on two threads at once (one after the other with
    several processes, whose placements must happen in the same order on
    each)."""
    mesh = trainer.make_mesh(size, self.config.batch_size)
    buckets = trainer.replicate(mesh, self.data.buckets)
    if hosts.count() > 1:
      return (self.compile_train_program(size, mesh, buckets),
              self.compile_evaluators(size, mesh, buckets))
    evaluators = trainer.BACKGROUND.submit(self.compile_evaluators, size,
                                            mesh, buckets)
    programs = self.compile_train_program(size, mesh, buckets)
    return programs, evaluators.result()

  def memory_message(self, programs: Programs,
                     budget: memory.Budget) -> str:
    """One line on the training program's memory against the budget and
    the device it was taken from."""
    form = "edge list" if self.sparse[-1] else "dense"
    return (f"training program: {programs.train_bytes / memory.GIB:.2f} GiB "
            f"(XLA estimate; {programs.size} of {self.num_members} "
            f"members per program, batch {self.config.batch_size}, largest "
            f"bucket {int(self.buckets[-1])} nodes, {form}); budget "
            f"{budget.bytes / memory.GIB:.1f} GiB: {budget.source}")

  def member_parts(self, programs: Programs) -> List[slice]:
    """The members of each program, in order."""
    size = programs.size
    return [slice(lo, lo + size) for lo in range(0, self.num_members, size)]

  def train_members(self, programs: Programs, schedule: pipeline.Schedule,
                    first_step: int) -> trainer.StepMetrics:
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

  def evaluate_members(self, programs: Programs, split: str
                       ) -> Tuple[trainer.StepMetrics, jax.Array]:
    """Per-member metric sums [M] of a split ("val" or "test") and the
    members' outputs [T, M, B, O] on its fixed schedule
    (`programs.evaluators[split][1]`; pipeline.graph_ids gives the graph
    of each slot)."""
    evaluate, fixed = programs.evaluators[split]
    parts = [evaluate(self.part_states(programs.mesh, part), programs.buckets,
                      fixed.bucket_ids, fixed.indices[part])
             for part in self.member_parts(programs)]
    return (concatenate_members([sums for sums, _ in parts]),
            jnp.concatenate([outputs for _, outputs in parts], axis=1))


def compile_finite_check(initialisation: Future) -> None:
  """Compiles (and runs) `trainer.members_finite` for the states of a
  member initialisation once it is done (its future's result: states,
  stages); nothing when it failed (`Session.states` raises its error)."""
  if initialisation.exception() is None:
    states, _ = initialisation.result()
    jax.block_until_ready(trainer.members_finite(states.params))


def with_vocabularies(model_config, dataset: GraphDataset
                      ) -> Tuple[Any, Optional[List[np.ndarray]]]:
  """The model config with `input_vocab` read from the data set's integer
  node codes (features "codes"; datasets.code_vocabulary) and, for conv
  "gine", `edge_vocab` from its edge labels, and those edge codes (per
  graph [E_i, C], aligned with its edges; else None). ValueError when
  the config asks for codes the data set does not give."""
  if dataset.feature_kind == "codes":
    model_config = dataclasses.replace(
        model_config, input_vocab=code_vocabulary(dataset.features))
  elif model_config.input_vocab:
    raise ValueError(f"model.input_vocab={model_config.input_vocab} embeds "
                     "integer codes, but the features are "
                     f"{dataset.feature_kind!r}: use features='codes'")
  if not model_config.reads_edge_features:
    return model_config, None
  if dataset.edge_labels is None:
    raise ValueError(f"model.conv={model_config.conv!r}: {dataset.name} "
                     "has no edge features (edge labels) for its messages; "
                     "use a convolution that reads none (model.conv='gin')")
  edge_codes = label_codes(dataset.edge_labels)
  vocab = code_vocabulary(edge_codes)
  return dataclasses.replace(model_config, edge_vocab=vocab), edge_codes


def epoch_runner(session: Session, member_graphs: Sequence[np.ndarray],
                 seed: int = 0) -> Tuple[Callable[[], None], dict]:
  """For benchmarks: a function that runs one training epoch (blocking)
  of the session's first len(member_graphs) members, each on its graphs
  (batches shuffled once with `seed`), on its own copy of their states;
  and what compiling it took: "compile_seconds", "stages" and XLA's
  estimate "program_bytes". The compile's freed memory goes back to the
  system before the first epoch, as in a run (`Session.compile`)."""
  count = len(member_graphs)
  schedule = pipeline.make_schedule(
      member_graphs, session.data, session.config.batch_size,
      np.random.default_rng(seed), member_seeds=list(range(count)))
  schedule = pipeline.Schedule(*jax.device_put(tuple(schedule)))
  start = time.perf_counter()
  train, stages = session.compile_train(schedule, slice(0, count))
  compiled = {"compile_seconds": time.perf_counter() - start,
              "stages": stages, "program_bytes": memory.program_bytes(train)}
  states = jax.tree_util.tree_map(jnp.copy,
                                  session.part_states(None, slice(0, count)))
  memory.release_freed_host_memory()

  def epoch():
    nonlocal states
    states, totals = train(states, session.data.buckets, schedule.bucket_ids,
                           schedule.indices, jnp.int32(0))
    jax.block_until_ready(totals)

  return epoch, compiled


class Layout(NamedTuple):
  """What a session compiles: its size buckets, their first-level form and
  the compile effort (see compile_effort.choose)."""
  buckets: np.ndarray            # [K] padded sizes
  sparse: List[bool]             # per bucket: first level on an EdgeList
  effort: str                    # "fast", "medium" or "full"
  reason: str                    # one line: what was chosen and why


def bucket_layout(config, model: DiffPool, dataset: GraphDataset,
                  graphs: MemberGraphs) -> Layout:
  """The bucket sizes and compile effort of a run (`compile_effort.choose`
  over 1 .. max_buckets buckets, each layout the least modelled cost of
  `model` on the data set's graphs, `padded_graph_cost`), and per bucket
  whether its first level runs on an EdgeList (see `edge_list_buckets`)."""
  c, n_node = model.config, dataset.n_node
  candidates, full_candidate = layout_candidates(config, model, dataset,
                                                 graphs)
  choice = compile_effort.choose(
      config.compile_effort, jax.default_backend(), candidates,
      full_candidate, config.epochs, len(graphs.train), convolutions(c))
  buckets = candidates[choice.candidate].buckets
  entry_slots = bucket_entry_slots(dataset.edges, n_node, buckets)
  return Layout(buckets, edge_list_buckets(config.first_level, c.needs_dense,
                                           c.reads_edge_features,
                                           buckets, entry_slots),
                choice.effort, choice.reason)


def layout_candidates(config, model: DiffPool, dataset: GraphDataset,
                      graphs: MemberGraphs
                      ) -> Tuple[List[compile_effort.Candidate], int]:
  """The bucket layouts of 1 .. max_buckets buckets a run could compile
  (`layout_candidate` of each), and the index of the one the bucket rule
  picks (compile efforts "medium" and "full": `buckets_worth_compiling`)."""
  cost = modelled_graph_cost(model, dataset)
  options = bucket_options(dataset.n_node, config.max_buckets, cost,
                           config.bucket_ladder)
  candidates = [layout_candidate(sizes, cost, dataset.n_node, graphs,
                                 config.batch_size) for sizes, _ in options]
  return candidates, buckets_worth_compiling(options, config.min_bucket_gain)


def modelled_graph_cost(model: DiffPool, dataset: GraphDataset) -> Callable:
  """[U] padded sizes -> [U] modelled multiply-adds of one graph of the
  data set padded to each size (`padded_graph_cost` of the model)."""
  c, n_node = model.config, dataset.n_node
  entries = sum(len(e) for e in dataset.edges) / max(n_node.sum(), 1)
  layers = c.num_layers * (2 if c.num_levels else 1)

  def cost(sizes: np.ndarray) -> np.ndarray:
    clusters = [(model.slot_counts(int(n)) or (0,))[0] for n in sizes]
    return padded_graph_cost(sizes, c.hidden_dim, clusters, entries, layers)
  return cost


def layout_candidate(sizes: np.ndarray, cost: Callable, n_node: np.ndarray,
                     graphs: MemberGraphs, batch_size: int
                     ) -> compile_effort.Candidate:
  """A bucket layout's steps and modelled multiply-adds of one member's
  epoch: every batch slot of a step costs its bucket's padded graph, three
  times in training (forward and backward), once in evaluation."""
  which = assign_buckets(n_node, sizes)
  per_graph = np.asarray(cost(sizes.astype(np.float64)), np.float64)
  steps = lambda ids: pipeline.steps_per_bucket(ids, which, len(sizes),
                                                batch_size)
  train = steps(graphs.train)
  evaluated = sum(steps(ids) for ids in (graphs.val, graphs.test)
                  if all(len(g) for g in ids))
  units = batch_size * float(per_graph @ (3 * train + evaluated))
  return compile_effort.Candidate(sizes, int(train.sum()), units)


def convolutions(config) -> int:
  """Graph convolutions of a model: an embedding GNN per level and after
  the last, an assignment GNN per level unless it reuses the embedding."""
  assignment = 0 if config.assign_from == "embedding" else config.num_levels
  return config.num_layers * (config.num_levels + 1 + assignment)


def edge_list_buckets(first_level: str, needs_dense: bool,
                      needs_edge_list: bool, bucket_sizes, entry_slots
                      ) -> List[bool]:
  """Per bucket, whether its first level runs on an EdgeList.

  Args:
    first_level: "dense", "sparse" (every bucket so), or "auto": by cost
      (`datasets.sparse_by_cost`), dense for an operator that needs it.
    needs_dense: whether the pooling operator with its options needs the
      dense form (DiffPoolConfig.needs_dense; e.g. the "bce" link loss).
    needs_edge_list: whether the convolution reads edge features, which
      only the edge list carries (conv "gine"): every bucket so.
    bucket_sizes: [K] padded node counts.
    entry_slots: [K] adjacency entries per graph of each bucket.
  """
  if needs_edge_list:
    if first_level == "dense" or needs_dense:
      raise ValueError("model.conv reads edge features, which only "
                       "the edge-list first level carries; it cannot run "
                       + ("with first_level='dense'" if first_level ==
                          "dense" else "with this pooling operator's "
                          "dense-only options"))
    return [True] * len(bucket_sizes)
  if first_level == "sparse" and needs_dense:
    raise ValueError("first_level='sparse': the pooling operator, with "
                     "these options, needs the dense first level")
  if first_level != "auto":
    return [first_level == "sparse"] * len(bucket_sizes)
  if needs_dense:
    return [False] * len(bucket_sizes)
  return sparse_by_cost(bucket_sizes, entry_slots)


def concatenate_members(trees: List):
  """One tree from per-program trees [m, ...] along the member axis."""
  if len(trees) == 1:
    return trees[0]
  return jax.tree_util.tree_map(lambda *parts: jnp.concatenate(parts),
                                *trees)
