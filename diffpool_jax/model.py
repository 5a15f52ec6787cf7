"""The hierarchical DiffPool classifier and its configuration (the named
configurations are in presets.py)."""

from __future__ import annotations

import dataclasses
import math
from typing import Dict, Mapping, NamedTuple, Optional, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from diffpool_jax.checks import check_dim, check_rank
from diffpool_jax.layers import CONV_TYPES, DenseWeights, GNNStack
from diffpool_jax.pooling import LINK_LOSS_FORMS, POOLING, check_adjacency

READOUTS = ("max", "mean", "sum")
ASSIGN_HEADS = ("none", "linear", "linear_relu")
ASSIGN_INPUTS = ("gnn", "embedding")
CLUSTER_MODES = ("per_graph", "fixed")


@dataclasses.dataclass(frozen=True)
class DiffPoolConfig:
  """Architecture and auxiliary-loss settings of a `DiffPool` classifier.

  Attributes:
    conv: graph convolution, "sage" (GraphSAGE-mean), "gcn" or "sum".
    hidden_dim: width of every GNN layer but the last.
    embed_dim: width of the last layer of each embedding GNN.
    num_layers: convolutions per GNN (embedding and assignment alike).
    l2_normalize: L2-normalise node embeddings after each convolution.
    batch_norm: masked batch norm after each activated layer.
    bn_affine: learned scale and bias in the batch norm.
    concat: concatenate all layers' outputs of a GNN.
    activate_last: ReLU + batch norm after a GNN's last layer too.
    dropout: dropout rate on every convolution's input.
    pooling: the pooling operator, a name in `pooling.POOLING`
      ("diffpool", "mincut" or "dmon").
    pool_ratios: per pooling level, clusters as a fraction of the previous
      level's size. An empty tuple gives the flat (no pooling) model.
    cluster_mode: "per_graph" (graph i with n_i real nodes gets
      K_i = min(ratio * n_i, max_clusters) clusters, level 2 the ratio of
      K_i, and so on; padded cluster slots are masked out) or "fixed"
      (every graph gets the counts of the model's `max_nodes`, as PyTorch
      Geometric and the authors' code do).
    max_clusters: per-graph mode: cap of every level's count (None: no
      cap); it bounds the n K^2 cost of the largest graphs.
    num_clusters: explicit cluster count per level (implies fixed counts);
      overrides pool_ratios.
    round_clusters: "ceil" or "floor" when applying pool_ratios.
    assign_from: what the assignment logits are computed from: "gnn" (an
      assignment GNN of its own, as DiffPool) or "embedding" (the head
      applied to the level's embedding GNN output, as MinCutPool and DMoN).
    assign_head: after the assignment GNN: "none" (its last layer, K wide,
      gives the logits; no concatenation), "linear" (a Linear from the
      concatenated layers to K) or "linear_relu" (that Linear, then ReLU).
    readout: per-level graph readout over real nodes: "max", "mean", "sum".
    readout_all_levels: concatenate every level's readout (else last only).
    mlp_hidden: hidden widths of the prediction MLP.
    link_loss: "frobenius", "pyg" or "bce" (the "diffpool" operator's form,
      see `dense_diff_pool`).
    aux_weights: (name, weight) pairs: the training weight of each of the
      operator's auxiliary losses (summed over levels); a loss not named
      has weight 1. `weights` gives them as a mapping.
    pool_options: (name, value) pairs: the pooling operator's own options
      (its PoolingOperator.options; for "diffpool" also `link_loss`).
  """
  conv: str = "sage"
  hidden_dim: int = 64
  embed_dim: int = 64
  num_layers: int = 3
  l2_normalize: bool = True
  batch_norm: bool = True
  bn_affine: bool = True
  concat: bool = True
  activate_last: bool = False
  dropout: float = 0.0
  pooling: str = "diffpool"
  pool_ratios: Tuple[float, ...] = (0.25, 0.25)
  cluster_mode: str = "per_graph"
  max_clusters: Optional[int] = 64
  num_clusters: Optional[Tuple[int, ...]] = None
  round_clusters: str = "ceil"
  assign_from: str = "gnn"
  assign_head: str = "none"
  readout: str = "max"
  readout_all_levels: bool = True
  mlp_hidden: Tuple[int, ...] = (50,)
  link_loss: str = "frobenius"
  aux_weights: Tuple[Tuple[str, float], ...] = ()
  pool_options: Tuple[Tuple[str, object], ...] = ()

  def __post_init__(self):
    choices = (("conv", CONV_TYPES), ("readout", READOUTS),
               ("pooling", tuple(POOLING)), ("assign_from", ASSIGN_INPUTS),
               ("assign_head", ASSIGN_HEADS), ("link_loss", LINK_LOSS_FORMS),
               ("round_clusters", ("ceil", "floor")),
               ("cluster_mode", CLUSTER_MODES))
    for field, allowed in choices:
      if getattr(self, field) not in allowed:
        raise ValueError(f"DiffPoolConfig.{field}={getattr(self, field)!r}; "
                         f"expected one of {allowed}")
    for field in ("hidden_dim", "embed_dim"):
      if not isinstance(getattr(self, field), int) or getattr(self, field) < 1:
        raise ValueError(f"DiffPoolConfig.{field}={getattr(self, field)!r}; "
                         "must be an integer >= 1")
    if any(width < 1 for width in self.mlp_hidden):
      raise ValueError(f"DiffPoolConfig.mlp_hidden={self.mlp_hidden}; every "
                       "width must be >= 1")
    if not 0 <= self.dropout < 1:
      raise ValueError(f"DiffPoolConfig.dropout={self.dropout}; must be in "
                       "[0, 1)")
    if self.num_layers < 1:
      raise ValueError(f"DiffPoolConfig.num_layers={self.num_layers}; "
                       "need at least 1")
    if self.num_clusters is not None and any(k < 1 for k in self.num_clusters):
      raise ValueError(f"DiffPoolConfig.num_clusters={self.num_clusters}; "
                       "every count must be >= 1")
    if self.max_clusters is not None and self.max_clusters < 1:
      raise ValueError(f"DiffPoolConfig.max_clusters={self.max_clusters}; "
                       "need at least 1 (or None: no cap)")
    if any(not 0 < r <= 1 for r in self.pool_ratios):
      raise ValueError(f"DiffPoolConfig.pool_ratios={self.pool_ratios}; "
                       "every ratio must be in (0, 1]")
    if self.assign_from == "embedding" and self.assign_head == "none":
      raise ValueError("DiffPoolConfig.assign_from='embedding' needs an "
                       "assign_head ('linear' or 'linear_relu') to map the "
                       "embedding to cluster logits")
    self.check_aux_weights()
    options = POOLING[self.pooling].options
    for name, _ in self.pool_options:
      if name not in options:
        raise ValueError(f"DiffPoolConfig.pool_options: {name!r} is not an "
                         f"option of pooling={self.pooling!r}; its options "
                         f"are {sorted(options)}")

  def check_aux_weights(self) -> None:
    """ValueError unless aux_weights names losses of the pooling operator,
    each once, with finite weights >= 0."""
    names = POOLING[self.pooling].aux_names
    seen = set()
    for pair in self.aux_weights:
      if len(pair) != 2:
        raise ValueError(f"DiffPoolConfig.aux_weights: {pair!r} is not a "
                         "(name, weight) pair")
      name, weight = pair
      if name not in names:
        raise ValueError(f"DiffPoolConfig.aux_weights: {name!r} is not an "
                         f"auxiliary loss of pooling={self.pooling!r}; its "
                         f"losses are {names}")
      if name in seen:
        raise ValueError(f"DiffPoolConfig.aux_weights: {name!r} given twice")
      seen.add(name)
      if not (isinstance(weight, (int, float)) and math.isfinite(weight)
              and weight >= 0):
        raise ValueError(f"DiffPoolConfig.aux_weights: {name}={weight!r}; "
                         "must be a finite number >= 0")

  @property
  def num_levels(self) -> int:
    """Number of pooling levels."""
    if self.num_clusters is not None:
      return len(self.num_clusters)
    return len(self.pool_ratios)

  @property
  def aux_names(self) -> Tuple[str, ...]:
    """Names of the auxiliary losses the model returns (none if flat)."""
    return self.operator.aux_names if self.num_levels else ()

  @property
  def weights(self) -> Dict[str, float]:
    """Training weight of each auxiliary loss (1 unless aux_weights says)."""
    given = dict(self.aux_weights)
    return {name: float(given.get(name, 1.0)) for name in self.aux_names}

  @property
  def operator(self):
    """The pooling operator (a pooling.PoolingOperator) `pooling` names."""
    return POOLING[self.pooling]

  @property
  def pooling_options(self) -> Dict[str, object]:
    """The operator's options: its defaults, then `link_loss` where it has
    that option, then `pool_options`."""
    options = dict(self.operator.options)
    if "link_loss" in options:
      options["link_loss"] = self.link_loss
    options.update(self.pool_options)
    return options

  @property
  def needs_dense(self) -> bool:
    """Whether the operator with these options needs the dense first
    level (an N x N adjacency)."""
    return bool(self.operator.needs_dense(self.pooling_options))

  @property
  def per_graph(self) -> bool:
    """Whether cluster counts follow each graph's size (else fixed)."""
    return (self.cluster_mode == "per_graph" and self.num_clusters is None
            and self.num_levels > 0)

  def cluster_counts(self, num_nodes: int) -> Tuple[int, ...]:
    """Cluster count of each level for a graph of `num_nodes` nodes: each
    ratio applied to the previous level's count, rounded, at least 1, and
    (per-graph mode) at most `max_clusters`. In fixed mode, `num_nodes` is
    the model's reference size and the counts hold for every graph."""
    if self.num_clusters is not None:
      return tuple(self.num_clusters)
    rounding = math.ceil if self.round_clusters == "ceil" else math.floor
    cap = self.max_clusters if self.per_graph else None
    counts, size = [], num_nodes
    for ratio in self.pool_ratios:
      size = max(1, int(rounding(ratio * size)))
      if cap is not None:
        size = min(size, cap)
      counts.append(size)
    return tuple(counts)

  def cluster_table(self, num_nodes: int) -> np.ndarray:
    """[L, num_nodes + 1] int32: entry [l, n] is level l's cluster count for
    a graph of n nodes (graphs of 0 nodes, padding, get the counts of 0)."""
    return np.array([self.cluster_counts(n) for n in range(num_nodes + 1)],
                    np.int32).reshape(num_nodes + 1, self.num_levels).T

  def replace(self, **changes) -> "DiffPoolConfig":
    """A copy with `changes` applied."""
    return dataclasses.replace(self, **changes)


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


def assignment_mask(slots: int, real_clusters, level: int
                    ) -> Optional[jax.Array]:
  """[B, slots] bool, each graph's real cluster slots at `level` (from the
  per-level [B] counts `real_clusters`), or None for fixed counts."""
  if real_clusters is None:
    return None
  return jnp.arange(slots)[None, :] < real_clusters[level][:, None]


def masked_readout(z: jax.Array, node_mask: jax.Array, kind: str) -> jax.Array:
  """Graph readout over real nodes: z [B,N,F], node_mask [B,N] -> [B,F].

  Graphs without real nodes read out zeros.
  """
  weight = node_mask[..., None]
  if kind == "max":
    best = jnp.max(jnp.where(weight, z, -jnp.inf), axis=1)
    return jnp.where(jnp.any(node_mask, axis=1)[:, None], best, 0.0)
  total = jnp.sum(z * weight, axis=1)
  if kind == "sum":
    return total
  return total / jnp.maximum(jnp.sum(weight, axis=1), 1)


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
    num_classes: number of output logits C.
    max_nodes: per-graph mode: the largest padded node count the model will
      see (it sets the assignment layers' widths). Fixed mode: the
      reference node count the level-1 ratio applies to (often the largest
      graph of the data set).
  """
  config: DiffPoolConfig
  num_classes: int
  max_nodes: int

  def gnn(self, widths, name, concat) -> GNNStack:
    c = self.config
    return GNNStack(conv=c.conv, widths=tuple(widths),
                    l2_normalize=c.l2_normalize, batch_norm=c.batch_norm,
                    bn_affine=c.bn_affine, concat=concat,
                    activate_last=c.activate_last, dropout=c.dropout,
                    name=name)

  def slot_counts(self, num_nodes: int) -> Tuple[int, ...]:
    """Cluster slots of each level for a batch padded to `num_nodes` (per-
    graph mode: the counts of a graph of that size; fixed: of max_nodes)."""
    c = self.config
    return c.cluster_counts(num_nodes if c.per_graph else self.max_nodes)

  def cluster_slots(self, num_nodes: int, node_mask: jax.Array):
    """Cluster slots per level for a batch padded to `num_nodes`, and (per-
    graph mode; else None) each graph's real cluster count per level, a
    list of [B] int32 arrays."""
    c = self.config
    if not c.per_graph:
      return self.slot_counts(num_nodes), None
    if num_nodes > self.max_nodes:
      raise ValueError(
          f"DiffPool: a batch padded to {num_nodes} nodes, more than "
          f"max_nodes={self.max_nodes} that sets the model's cluster widths "
          "(build the model with the largest padded size)")
    table = c.cluster_table(num_nodes)
    n_node = jnp.sum(node_mask, axis=1)
    return (self.slot_counts(num_nodes),
            [jnp.asarray(row)[n_node] for row in table])

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
      node_mask: [B, N] bool, True for real nodes (None: all real). Graphs
        without real nodes are padding: they give finite, ignorable logits.
      train: batch statistics and dropout on (needs the "batch_stats"
        collection mutable and, with dropout, a "dropout" RNG).
      dropout: the dropout rate, a float or a traced [] array (so that
        vmapped members may differ); None: config.dropout. Dropout is part
        of the model only when config.dropout > 0.

    Returns:
      logits [B, C], and a tuple with one `PoolLevel` per pooling level.
    """
    c = self.config
    where = "DiffPool"
    check_rank(x, 3, "x", "[B,N,F]", where)
    batch, num_nodes = x.shape[:2]
    check_adjacency(adj, batch, num_nodes, where)
    if node_mask is None:
      node_mask = jnp.ones((batch, num_nodes), bool)
    check_rank(node_mask, 2, "node_mask", "[B,N]", where)
    check_dim(node_mask, 0, batch, "node_mask", "B, the batch size of x",
              where)
    check_dim(node_mask, 1, num_nodes, "node_mask", "N, the node count of x",
              where)
    node_mask = node_mask.astype(bool)
    graph_mask = jnp.any(node_mask, axis=1)

    hidden = (c.hidden_dim,) * (c.num_layers - 1)
    widths = c.cluster_counts(self.max_nodes)
    slots, real_clusters = self.cluster_slots(num_nodes, node_mask)
    readouts, levels = [], []
    for level, width in enumerate(widths):
      z = self.gnn(hidden + (c.embed_dim,), f"embed{level}", c.concat)(
          x, adj, node_mask, train, dropout)
      readouts.append(masked_readout(z, node_mask, c.readout))
      s_logits = self.assignment_logits(x, z, adj, node_mask, train, level,
                                        width, slots[level], dropout)
      cluster_mask = assignment_mask(slots[level], real_clusters, level)
      pooled = c.operator.function(
          z, adj, s_logits, node_mask, cluster_mask=cluster_mask,
          **c.pooling_options)
      x, adj = pooled.x, pooled.adj
      node_mask = jnp.broadcast_to(graph_mask[:, None], (batch, slots[level]))
      if cluster_mask is not None:
        node_mask = node_mask & cluster_mask
      levels.append(PoolLevel(pooled.s, pooled.adj, pooled.aux, node_mask))
    z = self.gnn(hidden + (c.embed_dim,), f"embed{c.num_levels}", c.concat)(
        x, adj, node_mask, train, dropout)
    readouts.append(masked_readout(z, node_mask, c.readout))

    h = jnp.concatenate(readouts, -1) if c.readout_all_levels else readouts[-1]
    for i, width in enumerate(c.mlp_hidden):
      h = nn.relu(nn.Dense(width, name=f"mlp{i}")(h))
    logits = nn.Dense(self.num_classes, name=f"mlp{len(c.mlp_hidden)}")(h)
    return logits, tuple(levels)


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


# The named configurations, also under this module's name for older code
# (presets.py imports DiffPoolConfig from here, so this import comes last).
from diffpool_jax.presets import PRESETS, preset  # noqa: E402,F401

