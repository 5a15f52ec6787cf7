"""The hierarchical DiffPool classifier and its configuration presets."""

from __future__ import annotations

import dataclasses
import math
from typing import NamedTuple, Optional, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from diffpool_jax.checks import check_dim, check_rank
from diffpool_jax.layers import CONV_TYPES, GNNStack
from diffpool_jax.pooling import (LINK_LOSS_FORMS, check_adjacency,
                                  dense_diff_pool)

READOUTS = ("max", "mean", "sum")
ASSIGN_HEADS = ("none", "linear", "linear_relu")


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
    pool_ratios: per pooling level, clusters as a fraction of the previous
      level's size; level 1 is relative to the model's `max_nodes`.
      An empty tuple gives the flat (no pooling) model.
    num_clusters: explicit cluster count per level; overrides pool_ratios.
    round_clusters: "ceil" or "floor" when applying pool_ratios.
    assign_head: after the assignment GNN: "none" (its last layer, K wide,
      gives the logits; no concatenation), "linear" (a Linear from the
      concatenated layers to K) or "linear_relu" (that Linear, then ReLU).
    readout: per-level graph readout over real nodes: "max", "mean", "sum".
    readout_all_levels: concatenate every level's readout (else last only).
    mlp_hidden: hidden widths of the prediction MLP.
    link_loss: "frobenius", "pyg" or "bce" (see `dense_diff_pool`).
    link_weight: weight of the link loss (summed over levels) in training.
    entropy_weight: weight of the entropy loss (summed over levels).
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
  pool_ratios: Tuple[float, ...] = (0.25, 0.25)
  num_clusters: Optional[Tuple[int, ...]] = None
  round_clusters: str = "ceil"
  assign_head: str = "none"
  readout: str = "max"
  readout_all_levels: bool = True
  mlp_hidden: Tuple[int, ...] = (50,)
  link_loss: str = "frobenius"
  link_weight: float = 1.0
  entropy_weight: float = 1.0

  def __post_init__(self):
    choices = (("conv", CONV_TYPES), ("readout", READOUTS),
               ("assign_head", ASSIGN_HEADS), ("link_loss", LINK_LOSS_FORMS),
               ("round_clusters", ("ceil", "floor")))
    for field, allowed in choices:
      if getattr(self, field) not in allowed:
        raise ValueError(f"DiffPoolConfig.{field}={getattr(self, field)!r}; "
                         f"expected one of {allowed}")
    if self.num_layers < 1:
      raise ValueError(f"DiffPoolConfig.num_layers={self.num_layers}; "
                       "need at least 1")
    if self.num_clusters is not None and any(k < 1 for k in self.num_clusters):
      raise ValueError(f"DiffPoolConfig.num_clusters={self.num_clusters}; "
                       "every count must be >= 1")
    if any(not 0 < r <= 1 for r in self.pool_ratios):
      raise ValueError(f"DiffPoolConfig.pool_ratios={self.pool_ratios}; "
                       "every ratio must be in (0, 1]")

  @property
  def num_levels(self) -> int:
    """Number of pooling levels."""
    if self.num_clusters is not None:
      return len(self.num_clusters)
    return len(self.pool_ratios)

  def cluster_counts(self, max_nodes: int) -> Tuple[int, ...]:
    """Static cluster count of each level for inputs of up to `max_nodes`."""
    if self.num_clusters is not None:
      return tuple(self.num_clusters)
    rounding = math.ceil if self.round_clusters == "ceil" else math.floor
    counts, size = [], max_nodes
    for ratio in self.pool_ratios:
      size = max(1, int(rounding(ratio * size)))
      counts.append(size)
    return tuple(counts)

  def replace(self, **changes) -> "DiffPoolConfig":
    """A copy with `changes` applied."""
    return dataclasses.replace(self, **changes)


PRESETS = {
    # The DiffPool paper (Ying et al. 2018, Sec. 4): GraphSAGE-mean with L2
    # normalisation and batch norm after every layer, 2 pooling levels at 25%
    # clusters, link + entropy losses, max readout of every level. Widths (64),
    # the MLP (50) and the Linear after the assignment stack are not given in
    # the paper; we use PyG's widths and the authors' MLP and Linear.
    "paper": DiffPoolConfig(assign_head="linear"),
    # Defaults of the authors' code (RexYing/diffpool, train.py/encoders.py
    # with --method=soft-assign): 3 raw-sum GraphConv layers (A X W + b, no
    # self term since concat=True), hidden/output 20, L2 normalisation,
    # concatenation, 1 pooling level at int(0.1 * max_nodes) clusters, a
    # Linear after the assignment stack, max readout of every level, MLP 50,
    # BCE link loss (their --linkpred flag; off by default there), no entropy
    # loss. Deviation: their batch norm is a fresh, untrained BatchNorm1d over
    # node positions on every call; we use masked batch norm over features
    # without learned scale/bias, with running averages at evaluation.
    "original": DiffPoolConfig(
        conv="sum", hidden_dim=20, embed_dim=20, bn_affine=False,
        pool_ratios=(0.1,), round_clusters="floor", assign_head="linear",
        link_loss="bce", entropy_weight=0.0),
    # PyTorch Geometric examples/proteins_diff_pool.py: GNN blocks of 3
    # DenseSAGEConv (no L2) + ReLU + BatchNorm on every layer, concatenated;
    # the assignment block ends with Linear + ReLU; clusters ceil(0.25 N) then
    # ceil(0.25 of that); mean readout of the last level; Linear 64 + ReLU +
    # Linear. Auxiliary losses are computed but not trained on. Deviation:
    # our batch norm ignores padded nodes (PyG's counts them in training).
    "pyg": DiffPoolConfig(
        l2_normalize=False, activate_last=True, assign_head="linear_relu",
        readout="mean", readout_all_levels=False, mlp_hidden=(64,),
        link_loss="pyg", link_weight=0.0, entropy_weight=0.0),
    # The flat baseline DiffPool is contrasted with: the paper preset's GNN
    # stack, then one mean readout over all nodes (a "virtual supernode"
    # joined to every node) and the MLP head; no pooling.
    "flat": DiffPoolConfig(pool_ratios=(), readout="mean"),
}


def preset(name: str, **overrides) -> DiffPoolConfig:
  """The named preset ("paper", "original", "pyg", "flat"), with overrides."""
  if name not in PRESETS:
    raise ValueError(f"unknown preset {name!r}; expected one of "
                     f"{tuple(PRESETS)}")
  return PRESETS[name].replace(**overrides)


class PoolLevel(NamedTuple):
  """What one pooling level produced, for losses and plots.

  Attributes:
    s: [B, N_l, K_l] soft assignment (zero rows on padded nodes).
    adj: [B, K_l, K_l] pooled adjacency.
    link_loss: [] scalar.
    entropy_loss: [] scalar.
  """
  s: jax.Array
  adj: jax.Array
  link_loss: jax.Array
  entropy_loss: jax.Array


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

  For each pooling level: an embedding GNN and an assignment GNN run on the
  current graph, and `dense_diff_pool` coarsens it; a final embedding GNN
  runs on the coarsest graph. Each embedding GNN's output is read out
  (`config.readout`); the readouts (all levels, or the last) feed an MLP.

  Attributes:
    config: a `DiffPoolConfig` (see `preset`).
    num_classes: number of output logits C.
    max_nodes: the reference node count for level-1 cluster ratios (usually
      the largest graph of the data set); it fixes K statically, so every
      padded size (bucket) uses the same model.
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

  @nn.compact
  def __call__(self, x, adj, node_mask=None, *, train: bool = False
               ) -> Tuple[jax.Array, Tuple[PoolLevel, ...]]:
    """Classifies a padded batch.

    Args:
      x: [B, N, F] node features.
      adj: [B, N, N] adjacency, or an `EdgeList` (sparse first level: no
        N x N matrix; the pooled levels are dense [B, K, K]).
      node_mask: [B, N] bool, True for real nodes (None: all real). Graphs
        without real nodes are padding: they give finite, ignorable logits.
      train: batch statistics and dropout on (needs the "batch_stats"
        collection mutable and, with dropout, a "dropout" RNG).

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
    readouts, levels = [], []
    for level, clusters in enumerate(c.cluster_counts(self.max_nodes)):
      z = self.gnn(hidden + (c.embed_dim,), f"embed{level}", c.concat)(
          x, adj, node_mask, train)
      readouts.append(masked_readout(z, node_mask, c.readout))
      # Without a head, the assignment GNN's last layer gives the K logits.
      s_logits = self.gnn(hidden + (clusters,), f"assign{level}",
                          c.concat and c.assign_head != "none")(
                              x, adj, node_mask, train)
      if c.assign_head != "none":
        s_logits = nn.Dense(clusters, name=f"assign_head{level}")(s_logits)
        if c.assign_head == "linear_relu":
          s_logits = nn.relu(s_logits)
      pooled = dense_diff_pool(z, adj, s_logits, node_mask, c.link_loss)
      levels.append(PoolLevel(pooled.s, pooled.adj, pooled.link_loss,
                              pooled.entropy_loss))
      x, adj = pooled.x, pooled.adj
      node_mask = jnp.broadcast_to(graph_mask[:, None], (batch, clusters))
    z = self.gnn(hidden + (c.embed_dim,), f"embed{c.num_levels}", c.concat)(
        x, adj, node_mask, train)
    readouts.append(masked_readout(z, node_mask, c.readout))

    h = jnp.concatenate(readouts, -1) if c.readout_all_levels else readouts[-1]
    for i, width in enumerate(c.mlp_hidden):
      h = nn.relu(nn.Dense(width, name=f"mlp{i}")(h))
    logits = nn.Dense(self.num_classes, name=f"mlp{len(c.mlp_hidden)}")(h)
    return logits, tuple(levels)


def auxiliary_loss(levels: Tuple[PoolLevel, ...],
                   config: DiffPoolConfig) -> jax.Array:
  """link_weight * sum of link losses + entropy_weight * sum of entropies."""
  if not levels:
    return jnp.zeros(())
  link = sum(level.link_loss for level in levels)
  entropy = sum(level.entropy_loss for level in levels)
  return config.link_weight * link + config.entropy_weight * entropy


def count_params(params) -> int:
  """Number of scalar parameters in a parameter tree."""
  return sum(int(p.size) for p in jax.tree_util.tree_leaves(params))
