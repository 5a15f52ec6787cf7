"""The device side of training (JAX): members (folds x seeds x
hyper-parameter points) side by side in one vmapped program, whole epochs
in one jitted call.

The host pipeline (pipeline.py) puts the padded data set on the device as
one `GraphBatch` per size bucket and makes each epoch's `Schedule`: a
shared sequence of bucket ids [T] and, per member, the graphs of each step
[M, T, B] as positions inside that step's bucket (-1 = empty slot). Here a
`lax.scan` runs over the steps; `lax.switch` picks the bucket (each bucket
compiles once); `jax.vmap` runs the members. A member with no graph in a
step takes a masked no-op step that leaves its parameters, batch
statistics and optimizer state exactly unchanged.
"""

from __future__ import annotations

import contextlib
import functools
import math
import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import (Any, Callable, Dict, Mapping, NamedTuple, Optional,
                    Sequence, Tuple)

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from diffpool_jax.adjacency import Adjacency, EdgeList
from diffpool_jax.engine import compile_cache, compile_effort, hosts
from diffpool_jax.engine.hyper import Hyper
from diffpool_jax.errors import InputError
from diffpool_jax.graphs import GraphBatch
from diffpool_jax.models.classifier import (DiffPool, auxiliary_loss,
                                            level_losses, rng_streams)
from diffpool_jax.tasks import task_loss


@flax.struct.dataclass
class TrainState:
  """One member's training state (stack them along axis 0 for vmap).

  Attributes:
    params: model parameters.
    batch_stats: running batch-norm statistics.
    opt_state: the optimizer's state.
    hyper: the member's hyper-parameters ([] float32 leaves), read by the
      optimizer factory and the loss at every step.
    key: PRNG key; step t uses fold_in(key, t) for dropout.
  """
  params: Any
  batch_stats: Any
  opt_state: Any
  hyper: Hyper
  key: jax.Array


class StepMetrics(NamedTuple):
  """Sums over the real graphs of a step (or an epoch)."""
  loss: jax.Array          # sum of per-graph total loss
  correct: jax.Array       # correct predictions (classification only)
  graphs: jax.Array        # number of real graphs
  aux: Dict[str, jax.Array]  # per name, sum over graphs of the level sums


# An optimizer factory: the member's hyper-parameters (traced scalars
# inside the epoch programs) -> an optax transformation. Any function of
# this type can replace the default; its state's structure must not depend
# on the values.
Optimizer = Callable[[Hyper], optax.GradientTransformation]


def adam_with_clip(hyper: Hyper) -> optax.GradientTransformation:
  """The default optimizer: Adam after global-norm gradient clipping and
  L2 weight decay added to the clipped gradient (as torch's
  Adam(weight_decay=...) after `clip_grad_norm_`).

  It runs on all parameters raveled into one vector (`optax.flatten`):
  each step is a few operations on one array, plus raveling parameters
  and gradients and splitting the update back, instead of a dozen per
  parameter, which traces and compiles faster. Its state holds Adam's
  moments as vectors [P] (P: one member's parameter count; stacked
  members' states [M, P])."""
  return optax.flatten(optax.chain(
      optax.clip_by_global_norm(hyper.clip),
      optax.add_decayed_weights(hyper.weight_decay),
      optax.adam(hyper.lr)))


def as_float32(hyper: Hyper) -> Hyper:
  """The tree with float32 array leaves (as a train state holds it)."""
  return jax.tree_util.tree_map(lambda v: jnp.asarray(v, jnp.float32), hyper)


def gather_adjacency(adj: Adjacency, safe: jax.Array, real: jax.Array,
                     node_mask: jax.Array) -> Adjacency:
  """Rows `safe` [B] of a bucket's adjacency, emptied where not `real` [B]
  (dense: outside node_mask [B,N] too)."""
  if isinstance(adj, EdgeList):
    return EdgeList(adj.senders[safe], adj.receivers[safe],
                    jnp.where(real[:, None], adj.weights[safe], 0.0),
                    adj.num_nodes,
                    None if adj.features is None else adj.features[safe])
  return jnp.where(node_mask[:, :, None] & node_mask[:, None, :], adj[safe],
                   0.0)


def gather_batch(bucket: GraphBatch, positions: jax.Array) -> GraphBatch:
  """The graphs at `positions` [B] of a bucket; -1 gives a padding graph."""
  real = positions >= 0
  safe = jnp.where(real, positions, 0)
  node_mask = bucket.node_mask[safe] & real[:, None]
  targets = None if bucket.targets is None else jnp.where(
      real[:, None], bucket.targets[safe], jnp.nan)
  return GraphBatch(
      x=jnp.where(node_mask[..., None], bucket.x[safe], 0.0),
      adj=gather_adjacency(bucket.adj, safe, real, node_mask),
      node_mask=node_mask,
      labels=jnp.where(real, bucket.labels[safe], 0),
      n_node=jnp.where(real, bucket.n_node[safe], 0), targets=targets)


def init_state(model: DiffPool, sample: GraphBatch, key: jax.Array,
               hyper: Hyper, optimizer: Optimizer = adam_with_clip
               ) -> TrainState:
  """A fresh member state; the hyper-parameters may be traced scalars."""
  init_key, state_key = jax.random.split(key)
  variables = model.init(init_key, sample.x, sample.adj, sample.node_mask)
  hyper = as_float32(hyper)
  return TrainState(params=variables["params"],
                    batch_stats=variables.get("batch_stats", {}),
                    opt_state=optimizer(hyper).init(variables["params"]),
                    hyper=hyper, key=state_key)


def init_members(model: DiffPool, sample: GraphBatch, seeds: Sequence[int],
                 hyper: Hyper, optimizer: Optimizer = adam_with_clip
                 ) -> TrainState:
  """Stacked states of M members ([M, ...] leaves), one per seed entry;
  `hyper` holds the members' [M] values (see `default_hyper` for defaults).

  Members are initialised one after another (`lax.map`), so the forward
  pass of the initialisation needs one member's memory, not M members'.
  One jitted program (kept per model, optimizer and shapes), compiled at
  the fast effort whatever the run's (compile_effort.xla_options). An
  untraced `model.init` runs op by op and takes far longer.
  """
  return init_program()(model, optimizer, sample,
                        jnp.asarray(seeds, jnp.uint32), as_float32(hyper))


def init_members_in_background(model: DiffPool, sample: GraphBatch,
                               seeds: Sequence[int], hyper: Hyper,
                               optimizer: Optimizer = adam_with_clip
                               ) -> Tuple[TrainState, Future]:
  """`init_members` traced here, then compiled and run on a thread, so
  that the epoch programs compile meanwhile (XLA releases the GIL).

  Returns the states' shapes (a TrainState of jax.ShapeDtypeStruct, [M,
  ...]) and a future of the states, whose result also carries the seconds
  of each stage and when they began and ended ("start", "end": seconds of
  time.perf_counter).
  """
  start = time.perf_counter()
  args = (sample, jnp.asarray(seeds, jnp.uint32), as_float32(hyper))
  traced = init_program().trace(model, optimizer, *args)
  traced_at = time.perf_counter()

  def compile_and_run():
    lowered = traced.lower()
    lowered_at = time.perf_counter()
    states = jax.block_until_ready(lowered.compile()(*args))
    end = time.perf_counter()
    return states, {"trace": traced_at - start,
                    "lower": lowered_at - traced_at,
                    "compile": end - lowered_at, "start": start, "end": end}

  return traced.out_info, BACKGROUND.submit(compile_and_run)


# Threads that compile programs side by side (XLA compiles without the
# GIL): the initialisation, the evaluation program and the divergence
# check (session.compile_finite_check, which waits for the first).
BACKGROUND = ThreadPoolExecutor(max_workers=3,
                                thread_name_prefix="diffpool_jax_compile")


def _init_members(model: DiffPool, optimizer: Optimizer, sample: GraphBatch,
                  seeds: jax.Array, hyper: Hyper) -> TrainState:
  one = lambda pair: init_state(model, sample, *pair, optimizer=optimizer)
  return jax.lax.map(one, (jax.vmap(jax.random.PRNGKey)(seeds), hyper))


@functools.lru_cache(maxsize=None)
def init_program() -> Callable:
  """The jitted member initialisation (see `init_members`)."""
  return jax.jit(_init_members, static_argnums=(0, 1),
                 compiler_options=compiler_options(program="init"))


def default_hyper(config, count: int, lr: float = 1e-3, clip: float = 2.0,
                 weight_decay: float = 0.0,
                 aux_weight: Optional[float] = None) -> Hyper:
  """`count` members' hyper-parameters ([count] leaves): these values, the
  dropout rate of the model config `config`, and its auxiliary weights
  (or `aux_weight` for every auxiliary loss)."""
  repeat = lambda value: np.full(count, value, np.float32)
  return Hyper(repeat(lr), repeat(clip), repeat(weight_decay),
               repeat(config.dropout),
               {name: repeat(weight if aux_weight is None else aux_weight)
                for name, weight in config.weights.items()})


def graph_losses(model: DiffPool, params, batch_stats, batch: GraphBatch,
                 aux_weights: Mapping[str, jax.Array], train: bool, key=None,
                 dropout=None):
  """Mean training loss over real graphs (the loss of the model's task,
  tasks.task_loss, plus the weighted auxiliary losses); auxiliary outputs:
  the step's metric sums, the new batch statistics and the model's
  outputs [B, O] (dropout: the rate, None for the model config's)."""
  variables = {"params": params, "batch_stats": batch_stats}
  (outputs, levels), updates = model.apply(
      variables, batch.x, batch.adj, batch.node_mask, train=train,
      dropout=dropout, mutable=["batch_stats"],
      rngs=None if key is None else rng_streams(key))
  count = jnp.sum(batch.graph_mask.astype(jnp.float32))
  task, correct = task_loss(model.task, outputs, batch.labels, batch.targets,
                            batch.graph_mask)
  loss = task + auxiliary_loss(levels, aux_weights)
  aux_sums = {name: value * count
              for name, value in level_losses(levels).items()}
  metrics = StepMetrics(loss * count, correct, count, aux_sums)
  return loss, (metrics, updates.get("batch_stats", batch_stats), outputs)


def train_step(model: DiffPool, state: TrainState, batch: GraphBatch,
               step: jax.Array, optimizer: Optimizer = adam_with_clip
               ) -> Tuple[TrainState, StepMetrics]:
  """One optimizer step; a batch without real graphs changes nothing."""
  grads, metrics, batch_stats = step_gradients(model, state, batch, step)
  return apply_gradients(state, grads, batch_stats,
                         jnp.any(batch.graph_mask), optimizer), metrics


def step_gradients(model: DiffPool, state: TrainState, batch: GraphBatch,
                   step: jax.Array) -> Tuple[Any, StepMetrics, Any]:
  """The gradients of a step's loss, its metric sums and the new batch
  statistics (dropout keyed by fold_in(state.key, step))."""
  key = jax.random.fold_in(state.key, step)
  grad_fn = jax.grad(graph_losses, argnums=1, has_aux=True)
  grads, (metrics, batch_stats, _) = grad_fn(
      model, state.params, state.batch_stats, batch, state.hyper.aux,
      True, key, state.hyper.dropout)
  return grads, metrics, batch_stats


def apply_gradients(state: TrainState, grads, batch_stats,
                    active: jax.Array,
                    optimizer: Optimizer = adam_with_clip) -> TrainState:
  """The state after the optimizer's update with `grads` and the new
  `batch_stats`; unchanged where not `active` ([] bool: the step had a
  real graph)."""
  updates, opt_state = optimizer(state.hyper).update(
      grads, state.opt_state, state.params)
  params = optax.apply_updates(state.params, updates)
  keep = lambda new, old: jax.tree_util.tree_map(
      lambda n, o: jnp.where(active, n, o), new, old)
  return state.replace(params=keep(params, state.params),
                       batch_stats=keep(batch_stats, state.batch_stats),
                       opt_state=keep(opt_state, state.opt_state))


def eval_step(model: DiffPool, state: TrainState, batch: GraphBatch
              ) -> Tuple[StepMetrics, jax.Array]:
  """Metric sums of the state's predictions on a batch (running BN stats)
  and the predictions [B, O]."""
  _, (metrics, _, outputs) = graph_losses(
      model, state.params, state.batch_stats, batch, state.hyper.aux, False)
  return metrics, outputs


def zero_metrics(num_members: int, aux_names: Sequence[str]) -> StepMetrics:
  """Zero metric sums [M] for a model with these auxiliary losses."""
  zeros = lambda: jnp.zeros((num_members,))
  return StepMetrics(zeros(), zeros(), zeros(),
                     {name: zeros() for name in aux_names})


def _add(total: StepMetrics, step: StepMetrics) -> StepMetrics:
  return jax.tree_util.tree_map(jnp.add, total, step)


MEMBERS, BATCH = "members", "batch"


def make_mesh(num_members: int, batch_size: int,
              devices: Optional[Sequence[jax.Device]] = None
              ) -> Optional[Mesh]:
  """A ("members", "batch") mesh over the devices, or None for one device.

  Members are split over as many devices as divide their count; the rest
  of the devices split each batch (when they divide the batch size). With
  several processes (hosts.start) every device must take part: an
  InputError says so when the counts do not allow it.
  """
  devices = list(jax.devices() if devices is None else devices)
  members_axis = math.gcd(num_members, len(devices))
  batch_axis = len(devices) // members_axis
  if batch_size % batch_axis:
    batch_axis = 1
  if hosts.count() > 1 and members_axis * batch_axis < len(devices):
    raise InputError(
        f"{num_members} members per program and {{batch_size}}="
        f"{batch_size} cannot use all {len(devices)} devices of the "
        f"{hosts.count()} processes: the members are split over "
        f"{members_axis} of them and the batch over {batch_axis}; choose "
        "folds x seeds x points and a batch size whose product with the "
        "member split fills the devices (e.g. an even batch size)",
        "batch_size")
  if members_axis * batch_axis == 1:
    return None
  grid = np.array(devices[:members_axis * batch_axis]).reshape(
      members_axis, batch_axis)
  return Mesh(grid, (MEMBERS, BATCH))


def shard_members(mesh: Optional[Mesh], states: TrainState) -> TrainState:
  """Member states [M, ...] split over the mesh's member axis."""
  if mesh is None:
    return states
  return jax.device_put(hosts.portable(states), NamedSharding(mesh, P(MEMBERS)))


def replicate(mesh: Optional[Mesh], buckets: Tuple[GraphBatch, ...]
              ) -> Tuple[GraphBatch, ...]:
  """The padded buckets copied to every device of the mesh."""
  if mesh is None:
    return buckets
  return jax.device_put(hosts.portable(buckets), NamedSharding(mesh, P()))


def gather_members(bucket: GraphBatch, positions: jax.Array,
                   mesh: Optional[Mesh]) -> GraphBatch:
  """Per-member batches [M, B, ...] from a bucket; positions [M, B].

  With a mesh, members and graphs of a batch are split over its devices
  (XLA inserts the cross-device sums that batch norm and metrics need).
  """
  batches = jax.vmap(gather_batch, in_axes=(None, 0))(bucket, positions)
  if mesh is None:
    return batches
  return jax.lax.with_sharding_constraint(
      batches, NamedSharding(mesh, P(MEMBERS, BATCH)))


def run_train_epoch(model: DiffPool, mesh: Optional[Mesh], states: TrainState,
                    buckets: Tuple[GraphBatch, ...], bucket_ids: jax.Array,
                    indices: jax.Array, first_step: jax.Array,
                    optimizer: Optimizer = adam_with_clip
                    ) -> Tuple[TrainState, StepMetrics]:
  """All members, all steps of an epoch: states [M,...], indices [M,T,B].

  Returns the new states and per-member metric sums [M].
  """
  num_members = indices.shape[0]
  member_gradients = jax.vmap(functools.partial(step_gradients, model),
                              in_axes=(0, 0, None))
  member_update = jax.vmap(functools.partial(apply_gradients,
                                             optimizer=optimizer))

  def branch(bucket):
    def run(states, positions, step):
      batches = gather_members(bucket, positions, mesh)
      grads, metrics, batch_stats = member_gradients(states, batches, step)
      return grads, metrics, batch_stats, jnp.any(batches.graph_mask, axis=1)
    return run

  # Only the gradients differ by bucket: the optimizer's update is traced
  # and compiled once, after the switch, not once per bucket.
  branches = [branch(bucket) for bucket in buckets]

  def body(carry, inputs):
    states, totals, step = carry
    bucket_id, positions = inputs
    grads, metrics, batch_stats, active = jax.lax.switch(
        bucket_id, branches, states, positions, step)
    states = member_update(states, grads, batch_stats, active)
    return (states, _add(totals, metrics), step + 1), None

  (states, totals, _), _ = jax.lax.scan(
      body, (states, zero_metrics(num_members, model.config.aux_names),
             first_step),
      (bucket_ids, jnp.swapaxes(indices, 0, 1)))
  return states, totals


def run_eval_epoch(model: DiffPool, mesh: Optional[Mesh], states: TrainState,
                   buckets: Tuple[GraphBatch, ...], bucket_ids: jax.Array,
                   indices: jax.Array) -> Tuple[StepMetrics, jax.Array]:
  """Per-member metric sums [M] over the scheduled graphs, no updates, and
  the members' outputs [T, M, B, O] of every step (the graph of each slot
  is where `indices` [M, T, B] says; see `outputs_by_graph`)."""
  num_members = indices.shape[0]
  member_eval = jax.vmap(functools.partial(eval_step, model))

  def branch(bucket):
    def run(states, positions):
      return member_eval(states, gather_members(bucket, positions, mesh))
    return run

  branches = [branch(bucket) for bucket in buckets]

  def body(totals, inputs):
    bucket_id, positions = inputs
    metrics, outputs = jax.lax.switch(bucket_id, branches, states, positions)
    return _add(totals, metrics), outputs

  return jax.lax.scan(body, zero_metrics(num_members, model.config.aux_names),
                      (bucket_ids, jnp.swapaxes(indices, 0, 1)))


DONATED = {"train": (0,), "evaluate": ()}   # the train epoch donates states


def epoch_function(model: DiffPool, mesh: Optional[Mesh], kind: str,
                   optimizer: Optimizer) -> Callable:
  """The "train" or "evaluate" epoch as a function of its arrays."""
  if kind == "train":
    return functools.partial(run_train_epoch, model, mesh,
                             optimizer=optimizer)
  return functools.partial(run_eval_epoch, model, mesh)


@functools.lru_cache(maxsize=32)
def jit_epoch_program(model: DiffPool, mesh: Optional[Mesh], kind: str,
                      optimizer: Optimizer = adam_with_clip,
                      effort: str = "full") -> Callable:
  """The jitted "train" (donates the states) or "evaluate" epoch program,
  one per model, mesh, kind, optimizer and compile effort: a later run of
  the same model in this process reuses what JAX traced and compiled."""
  return jax.jit(epoch_function(model, mesh, kind, optimizer),
                 donate_argnums=DONATED[kind],
                 compiler_options=compiler_options(effort))


def compile_epochs(model: DiffPool, mesh: Optional[Mesh] = None,
                   optimizer: Optimizer = adam_with_clip
                   ) -> Tuple[Callable, Callable]:
  """Jitted (train_epoch, eval_epoch); train_epoch donates the states.

  Both take (states, buckets, bucket_ids, indices[, first_step]); with a
  mesh (see `make_mesh`, `place`) they run split over its devices.
  """
  return (jit_epoch_program(model, mesh, "train", optimizer),
          jit_epoch_program(model, mesh, "evaluate", optimizer))


def compile_epoch_program(model: DiffPool, mesh: Optional[Mesh], kind: str,
                          *args, matmul_precision: Optional[str] = None,
                          optimizer: Optimizer = adam_with_clip,
                          effort: str = "full"
                          ) -> Tuple[Any, Dict[str, float]]:
  """The compiled "train" or "evaluate" epoch program (see
  `compile_epochs`) for `args` (arrays, or jax.ShapeDtypeStruct leaves),
  and the seconds of each stage. With the persistent cache on
  (compile_cache.enable), one device and the default optimizer, its traced
  program is kept too, so a warm run skips tracing (same results; another
  optimizer's code is not part of the program's key, so its programs are
  traced every time).

  matmul_precision: the float32 matrix products' precision, one of
  MATMUL_PRECISIONS (None: JAX's current `jax_default_matmul_precision`).
  effort: the compile effort, "fast", "medium" or "full" (see
  compile_effort).
  """
  with precision_context(matmul_precision):
    if (compile_cache.traced_folder() is None or mesh is not None
        or optimizer is not adam_with_clip):
      return compile_cache.compile_timed(
          jit_epoch_program(model, mesh, kind, optimizer, effort), *args)
    return compile_cache.compile_exported(
        epoch_function(model, mesh, kind, optimizer), args,
        compile_cache.program_key(kind, model, args),
        donate_argnums=DONATED[kind],
        compiler_options=compiler_options(effort))


# Precision of float32 matrix products (jax.default_matmul_precision):
# "float32" computes in full float32 on every backend (the runs' default,
# results as on the CPU); "tensorfloat32" lets NVIDIA GPUs (Ampere and
# newer) use TF32 tensor cores (10-bit mantissa inputs); "bfloat16" one
# bfloat16 pass (TPU's fastest); "default" is the backend's own choice
# (TF32 on recent NVIDIA GPUs, bfloat16 passes on TPU, float32 on CPU).
MATMUL_PRECISIONS = ("float32", "tensorfloat32", "bfloat16", "default")


def precision_context(matmul_precision: Optional[str]):
  """A context in which traced matrix products use `matmul_precision`
  (None: leave JAX's setting as it is)."""
  if matmul_precision is None:
    return contextlib.nullcontext()
  if matmul_precision not in MATMUL_PRECISIONS:
    raise ValueError(f"matmul_precision={matmul_precision!r}; expected one "
                     f"of {MATMUL_PRECISIONS}")
  return jax.default_matmul_precision(matmul_precision)


def compiler_options(effort: str = "full", program: str = "epoch") -> dict:
  """XLA options of an "epoch" or "init" program at compile `effort` on
  this process's backend (see compile_effort.xla_options)."""
  return compile_effort.xla_options(effort, jax.default_backend(), program)


def members_finite(params) -> jax.Array:
  """[M] whether every parameter of each member is finite (leaves [M, ...]).

  The leaves are committed to where they are first (no copy): jit keys
  its cache on it, and programs return either, so one compiled check
  serves the initial and the trained states."""
  return _members_finite(jax.device_put(
      params, jax.tree_util.tree_map(lambda leaf: leaf.sharding, params)))


@jax.jit
def _members_finite(params) -> jax.Array:
  # One [M, P] array and one reduction: a reduction per leaf compiled to a
  # kernel each, 0.5 s of XLA for a 2-level network on 2 CPU cores.
  leaves = jax.tree_util.tree_leaves(params)
  flat = jnp.concatenate([leaf.reshape(leaf.shape[0], -1) for leaf in leaves],
                         axis=1)
  return jnp.all(jnp.isfinite(flat), axis=1)


def metrics_to_numpy(metrics: StepMetrics) -> dict:
  """Per-member means [M] from metric sums: loss, accuracy, graphs, and
  each auxiliary loss by its name."""
  host = hosts.fetch(metrics)
  count = np.maximum(host.graphs, 1)
  return {"loss": host.loss / count, "accuracy": host.correct / count,
          "graphs": host.graphs,
          **{name: value / count for name, value in host.aux.items()}}
