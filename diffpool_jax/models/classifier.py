"""The hierarchical DiffPool classifier (linen). Its configuration type and
the named configurations are in presets.py (and importable from here)."""

from __future__ import annotations

from typing import Callable, Dict, Mapping, NamedTuple, Optional, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from diffpool_jax.adjacency import EdgeList, mask_adjacency
from diffpool_jax.errors import check_dim, check_rank, checked_mask
from diffpool_jax.models.layers import (CodeEmbedding, DenseWeights, GNNStack,
                                        MaskedBatchNorm, dropout, mask_nodes)
from diffpool_jax.models.pooling import check_adjacency
from diffpool_jax.models.presets import (  # noqa: F401 (re-exported)
    PRESETS, DiffPoolConfig, check_cluster_counts, preset)


class PoolLevel(NamedTuple):
  """What one pooling level produced, for losses and plots.

  Attributes:
    s: [B, N_l, K_l] soft assignment (zero rows on padded nodes, zero
      columns on a graph's padded cluster slots).
    adj: [B, K_l, K_l] pooled adjacency.
    aux: the pooling operator's auxiliary losses by name, [] scalars.
    mask: [B, K_l] bool, the real clusters of each graph (the pooled
      graph's node mask).
  """
  s: jax.Array
  adj: jax.Array
  aux: Mapping[str, jax.Array]
  mask: jax.Array


def checked_node_mask(x, adj, node_mask, where: str) -> jax.Array:
  """[B,N] bool node mask (None: all real) after checking x [B,N,F], adj
  (dense or EdgeList) and node_mask against each other; errors name the
  argument and `where`."""
  check_rank(x, 3, "x", "[B,N,F]", where)
  batch, num_nodes = x.shape[:2]
  check_adjacency(adj, batch, num_nodes, where)
  if node_mask is None:
    node_mask = jnp.ones((batch, num_nodes), bool)
  check_rank(node_mask, 2, "node_mask", "[B,N]", where)
  check_dim(node_mask, 0, batch, "node_mask", "B, the batch size of x", where)
  check_dim(node_mask, 1, num_nodes, "node_mask", "N, the node count of x",
            where)
  return checked_mask(node_mask, "node_mask", where)


def clear_padding(x, adj, node_mask):
  """x [B,N,F] and adj with every padded node's entries exactly 0, by
  selection: whatever they held (NaN, inf) reaches no output or gradient."""
  return mask_nodes(x, node_mask), mask_adjacency(adj, node_mask)


def cluster_slots(config: DiffPoolConfig, max_nodes: int, num_nodes: int,
                  node_mask: jax.Array):
  """Cluster slots per level for a batch padded to `num_nodes`, and (per-
  graph mode; else None) each graph's real cluster count per level, a list
  of [B] int32 arrays. `max_nodes`: the classifier's (it sets the
  assignment widths; fixed mode: the reference size). A batch may be
  padded beyond max_nodes (size buckets on a ladder): its slots are then
  those of max_nodes, and a graph of more real nodes than max_nodes gets
  the cluster counts of max_nodes."""
  if not config.per_graph:
    return config.cluster_counts(max_nodes), None
  slots = config.cluster_counts(min(num_nodes, max_nodes))
  n_node = jnp.minimum(jnp.sum(node_mask, axis=1), max_nodes)
  table = config.cluster_table(min(num_nodes, max_nodes))
  return slots, [jnp.asarray(row)[n_node] for row in table]


def assignment_mask(slots: int, real_clusters, level: int
                    ) -> Optional[jax.Array]:
  """[B, slots] bool, each graph's real cluster slots at `level` (from the
  per-level [B] counts `real_clusters`), or None for fixed counts."""
  if real_clusters is None:
    return None
  return jnp.arange(slots)[None, :] < real_clusters[level][:, None]


def pool_level(config: "DiffPoolConfig", z, adj, s_logits, node_mask,
               graph_mask, slots: int, real_clusters, level: int,
               extra: Mapping[str, object]) -> Tuple[jax.Array, PoolLevel]:
  """One coarsening step of the classifier: the config's pooling operator
  on embedding z [B,N,F], adj and s_logits [B,N,logit_columns(slots)],
  each graph limited to its real clusters (see `assignment_mask`), with
  the operator's `extra` keywords (params=, rng=). Returns the pooled
  features [B,slots,F] and the level (its mask is the pooled graph's node
  mask: real graphs' real clusters)."""
  cluster_mask = assignment_mask(slots, real_clusters, level)
  pooled = config.operator.function(z, adj, s_logits, node_mask,
                                    cluster_mask=cluster_mask,
                                    **config.pooling_options, **extra)
  mask = jnp.broadcast_to(graph_mask[:, None], (z.shape[0], slots))
  if cluster_mask is not None:
    mask = mask & cluster_mask
  return pooled.x, PoolLevel(pooled.s, pooled.adj, pooled.aux, mask)


def rng_streams(key: jax.Array) -> Dict[str, jax.Array]:
  """The RNG streams of a training call from one key: "dropout" (the key
  itself) and "pooling" (a stochastic operator's draws, as BN-Pool's)."""
  return {"dropout": key, "pooling": jax.random.fold_in(key, 1)}


def masked_readout(z: jax.Array, node_mask: jax.Array, kind: str) -> jax.Array:
  """Graph readout over real nodes: z [B,N,F], node_mask [B,N] -> [B,F].

  Graphs without real nodes read out zeros.
  """
  real = node_mask[..., None]
  if kind == "max":
    best = jnp.max(jnp.where(real, z, -jnp.inf), axis=1)
    return jnp.where(jnp.any(node_mask, axis=1)[:, None], best, 0.0)
  total = jnp.sum(jnp.where(real, z, 0.0), axis=1)
  if kind == "sum":
    return total
  return total / jnp.maximum(jnp.sum(real, axis=1), 1)


def graph_representation(config: DiffPoolConfig, readouts,
                         input_vector: Optional[jax.Array]) -> jax.Array:
  """The prediction MLP's input [B, D]: the levels' readouts (each [B, F_l];
  all of them, or the last, by config.readout_all_levels), after
  `input_vector` [B, F] (the normalised readout of the raw node features,
  see `input_readout`) when it is not None."""
  parts = list(readouts) if config.readout_all_levels else [readouts[-1]]
  if input_vector is not None:
    parts.insert(0, input_vector)
  return jnp.concatenate(parts, -1)


def input_readout(kind: str, x: jax.Array, node_mask: jax.Array,
                  norm: Callable[[jax.Array, jax.Array], jax.Array]
                  ) -> Optional[jax.Array]:
  """[B, F] the readout `kind` ("none": None) of the raw node features x
  [B,N,F] over node_mask [B,N], batch-normalised over the real graphs by
  `norm(h [B,1,F], graph_mask [B,1]) -> [B,1,F]` (raw sums reach the
  thousands: the MLP gets them standardised)."""
  if kind == "none":
    return None
  h = masked_readout(x, node_mask, kind)
  return norm(h[:, None], jnp.any(node_mask, axis=1)[:, None])[:, 0]


class DiffPool(nn.Module):
  """Hierarchical graph classifier with DiffPool coarsening.

  For each pooling level: an embedding GNN and an assignment GNN (or, with
  `assign_from="embedding"`, a head on the embedding) run on the current
  graph, and the pooling operator (`config.pooling`: DiffPool, MinCutPool
  or DMoN) coarsens it; a final embedding GNN runs on the coarsest graph. Each embedding GNN's output is read out
  (`config.readout`); the readouts (all levels, or the last) feed an MLP.

  Cluster counts (`config.cluster_mode`): per graph, a batch padded to N
  nodes has `config.cluster_counts(N)` cluster slots per level; graph i
  uses the first `config.cluster_counts(n_i)` of them, the rest are masked
  out of its softmax, pooled graph, losses and readouts, so a graph's
  result does not depend on the padding (the size bucket) it sits in. The
  assignment layers have the parameters of `cluster_counts(max_nodes)`
  columns; a smaller bucket uses the first ones. In fixed mode every graph
  gets `cluster_counts(max_nodes)` clusters.

  Attributes:
    config: a `DiffPoolConfig` (see `preset`).
    num_classes: the output width C: classes (logits), or the tasks of a
      binary or regression task.
    max_nodes: per-graph mode: the largest padded node count the model will
      see (it sets the assignment layers' widths). Fixed mode: the
      reference node count the level-1 ratio applies to (often the largest
      graph of the data set).
    task: the task kind the engine trains it for (tasks.TASKS: its loss
      and metrics; the module itself only computes the outputs).
  """
  config: DiffPoolConfig
  num_classes: int
  max_nodes: int
  task: str = "classification"

  def gnn(self, widths, name, concat) -> GNNStack:
    c = self.config
    return GNNStack(conv=c.conv, widths=tuple(widths),
                    l2_normalize=c.l2_normalize, batch_norm=c.batch_norm,
                    bn_affine=c.bn_affine, concat=concat,
                    activate_last=c.activate_last, dropout=c.dropout,
                    name=name)

  def slot_counts(self, num_nodes: int) -> Tuple[int, ...]:
    """Cluster slots of each level for a batch padded to `num_nodes` (per-
    graph mode: the counts of a graph of that size, at most max_nodes;
    fixed: of max_nodes)."""
    c = self.config
    return c.cluster_counts(min(num_nodes, self.max_nodes) if c.per_graph
                            else self.max_nodes)

  def assignment_logits(self, x, z, adj, node_mask, train: bool, level: int,
                        width: int, slots: int, dropout=None) -> jax.Array:
    """[B, N, slots] assignment logits of a level with input features x and
    embedding z: the assignment GNN on x (or, assign_from="embedding", z)
    and the head, with `width` output columns of which the first `slots`
    are used."""
    c = self.config
    if c.assign_from == "embedding":
      h = z
    else:
      # Without a head, the assignment GNN's last layer gives the logits.
      hidden = (c.hidden_dim,) * (c.num_layers - 1)
      h = self.gnn(hidden + (width,), f"assign{level}",
                   c.concat and c.assign_head != "none")(
                       x, adj, node_mask, train, dropout)
    if c.assign_head == "none":
      return h[..., :slots]
    kernel, bias = DenseWeights(width, name=f"assign_head{level}")(
        h.shape[-1])
    s_logits = h @ kernel[:, :slots] + bias[:slots]
    if c.assign_head == "linear_relu":
      s_logits = nn.relu(s_logits)
    return s_logits

  @nn.compact
  def __call__(self, x, adj, node_mask=None, *, train: bool = False,
               dropout=None) -> Tuple[jax.Array, Tuple[PoolLevel, ...]]:
    """Classifies a padded batch.

    Args:
      x: [B, N, F] node features.
      adj: [B, N, N] adjacency, or an `EdgeList` (sparse first level: no
        N x N matrix; the pooled levels are dense [B, K, K]).
      node_mask: [B, N] bool (or exactly 0/1), True for real nodes (None:
        all real). Graphs without real nodes are padding: they give
        finite, ignorable logits. Padded entries of x and adj may hold
        anything (NaN, inf): they change no output and no gradient.
      train: batch statistics and dropout on (needs the "batch_stats"
        collection mutable and, with dropout, a "dropout" RNG; with a
        stochastic pooling operator, as "bnpool", a "pooling" RNG: see
        `rng_streams`).
      dropout: the dropout rate, a float or a traced [] array (so that
        vmapped members may differ); None: config.dropout. Dropout is part
        of the model only when config.dropout > 0.

    Returns:
      logits [B, C], and a tuple with one `PoolLevel` per pooling level.
    """
    c = self.config
    node_mask = checked_node_mask(x, adj, node_mask, "DiffPool")
    x, adj = clear_padding(x, adj, node_mask)
    if c.input_vocab:
      check_code_columns(c, x, "DiffPool")
      x = CodeEmbedding(c.input_vocab, c.hidden_dim, name="input_embed")(
          x, node_mask)
    if c.reads_edge_features:
      codes = checked_edge_codes(c, adj, "DiffPool")
      adj = adj.replace(features=CodeEmbedding(
          c.edge_vocab, c.hidden_dim, name="edge_embed")(
              codes, adj.weights != 0))
    if c.input_norm:
      x = MaskedBatchNorm(affine=c.bn_affine, name="input_bn")(
          x, node_mask, train)
    input_vector = input_readout(
        c.input_readout, x, node_mask,
        lambda h, mask: MaskedBatchNorm(affine=c.bn_affine,
                                        name="input_readout_bn")(h, mask,
                                                                 train))
    batch, num_nodes = x.shape[:2]
    graph_mask = jnp.any(node_mask, axis=1)

    check_cluster_counts(c, self.max_nodes, "DiffPool")
    hidden = (c.hidden_dim,) * (c.num_layers - 1)
    widths = c.cluster_counts(self.max_nodes)
    slots, real_clusters = cluster_slots(c, self.max_nodes, num_nodes,
                                         node_mask)
    readouts, levels = [], []
    for level, width in enumerate(widths):
      z = self.gnn(hidden + (c.embed_dim,), f"embed{level}", c.concat)(
          x, adj, node_mask, train, dropout)
      readouts.append(masked_readout(z, node_mask, c.readout))
      columns = c.operator.logit_columns
      s_logits = self.assignment_logits(x, z, adj, node_mask, train, level,
                                        columns(width),
                                        columns(slots[level]), dropout)
      x, pooled = pool_level(c, z, adj, s_logits, node_mask, graph_mask,
                             slots[level], real_clusters, level,
                             self.operator_arguments(level, width, train))
      adj, node_mask = pooled.adj, pooled.mask
      levels.append(pooled)
    z = self.gnn(hidden + (c.embed_dim,), f"embed{c.num_levels}", c.concat)(
        x, adj, node_mask, train, dropout)
    readouts.append(masked_readout(z, node_mask, c.readout))

    h = graph_representation(c, readouts, input_vector)
    for i, width in enumerate(c.mlp_hidden):
      h = nn.relu(nn.Dense(width, name=f"mlp{i}")(self.mlp_input(h, train)))
    logits = nn.Dense(self.num_classes, name=f"mlp{len(c.mlp_hidden)}")(
        self.mlp_input(h, train))
    return logits, tuple(levels)

  def operator_arguments(self, level: int, width: int, train: bool
                         ) -> Dict[str, object]:
    """The pooling operator's `params=` (trainable, `pool{level}_{name}`,
    created for `width` clusters) and `rng=` (the "pooling" RNG stream
    while training, else None), where it takes them."""
    operator = self.config.operator
    extra = operator.extra_arguments(width)
    if "params" in extra:
      extra["params"] = {
          name: self.param(f"pool{level}_{name}", lambda _, v=value: v)
          for name, value in extra["params"].items()}
    if operator.stochastic and train:
      if not self.has_rng("pooling"):
        raise ValueError(f"DiffPool: training with pooling="
                         f"{self.config.pooling!r}, which samples its "
                         "assignment, needs a 'pooling' RNG: apply(..., "
                         "rngs=rng_streams(key))")
      extra["rng"] = self.make_rng("pooling")
    return extra

  def mlp_input(self, h: jax.Array, train: bool) -> jax.Array:
    """h [B, D] with config.mlp_dropout applied when training."""
    if not (train and self.config.mlp_dropout > 0):
      return h
    return dropout(h, self.config.mlp_dropout, self.make_rng("dropout"))


def check_code_columns(config: DiffPoolConfig, x: jax.Array,
                       where: str) -> None:
  """ValueError unless x [B, N, C] has one column per input_vocab entry."""
  if x.shape[-1] != len(config.input_vocab):
    raise ValueError(f"{where}: x has {x.shape[-1]} feature columns but "
                     f"input_vocab has {len(config.input_vocab)} sizes (one "
                     "per integer column: features 'codes')")


def checked_edge_codes(config: DiffPoolConfig, adj, where: str
                       ) -> jax.Array:
  """The entry codes [B, E, C] of a "gine" model's first-level EdgeList;
  ValueError unless adj is one with a code column per edge_vocab entry."""
  codes = adj.features if isinstance(adj, EdgeList) else None
  if codes is None or not config.edge_vocab:
    raise ValueError(f"{where}: conv='gine' needs edge features: an "
                     "EdgeList adjacency whose `features` hold each "
                     "entry's integer codes, and edge_vocab (the runs fill "
                     "both from the data's edge labels)")
  if codes.shape[-1] != len(config.edge_vocab):
    raise ValueError(f"{where}: the EdgeList has {codes.shape[-1]} edge "
                     f"feature columns but edge_vocab has "
                     f"{len(config.edge_vocab)} sizes")
  return codes


def level_losses(levels: Tuple[PoolLevel, ...]) -> Dict[str, jax.Array]:
  """Each auxiliary loss summed over the pooling levels, by name."""
  if not levels:
    return {}
  return {name: sum(level.aux[name] for level in levels)
          for name in levels[0].aux}


def auxiliary_loss(levels: Tuple[PoolLevel, ...],
                   weights: Mapping[str, jax.Array]) -> jax.Array:
  """sum over levels and names of weights[name] * aux[name] (a config's
  `weights`, or a training state's per-member weights)."""
  total = jnp.zeros(())
  for name, value in level_losses(levels).items():
    total = total + weights[name] * value
  return total


def count_params(params) -> int:
  """Number of scalar parameters in a parameter tree."""
  return sum(int(p.size) for p in jax.tree_util.tree_leaves(params))
