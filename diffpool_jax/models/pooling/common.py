"""What every dense pooling operator shares: input checks, the masked
assignment S, the coarsened graph S^T X and S^T A S, per-graph means, the
orthogonality loss and the normalised pooled adjacency.

Conventions of every operator: x [B,N,F], adj [B,N,N] or an EdgeList,
s_logits [B,N,K], mask [B,N] bool (real nodes), cluster_mask [B,K] bool
(the clusters each graph may use). Whatever a padded entry holds (NaN,
inf, 1e30) is replaced, by selection, before anything is computed: padded
nodes get zero rows of S, masked clusters zero columns, padded rows and
columns of A are 0, so none reaches the pooled graph, a loss or a
gradient; batch values are means over the real graphs. K may exceed a
graph's real node count n_i (fixed cluster counts do, as in the paper):
the surplus clusters then hold only soft assignment mass; a cluster_mask
limits graph i to fewer.
"""

from __future__ import annotations

from typing import Mapping, NamedTuple, Optional, Tuple

import jax
import jax.numpy as jnp

from diffpool_jax.adjacency import Adjacency, EdgeList, mask_adjacency, matmul
from diffpool_jax.errors import check_dim, check_rank, checked_mask

# Logit of a masked-out cluster column: exp() of it is exactly 0 and, unlike
# -inf, p log p and its gradient stay finite (0).
MASKED_LOGIT = -1e9
# Smallest cluster degree the pooled adjacency is normalised by. A nearly
# empty cluster (degree ~1e-30) would otherwise give d^-3/2 gradients that
# overflow float32 (NaN parameters after ~90 epochs of MinCutPool on
# ENZYMES); real clusters have degrees of order 1 or more.
MIN_DEGREE = 1e-4


class PoolOutput(NamedTuple):
  """Output of a pooling operator.

  Attributes:
    x: [B, K, F] pooled features.
    adj: [B, K, K] pooled adjacency.
    s: [B, N, K] soft assignment; zero rows on padded nodes, zero columns
      on a graph's masked clusters.
    aux: auxiliary losses by name, each a [] scalar (mean over real graphs).
  """
  x: jax.Array
  adj: jax.Array
  s: jax.Array
  aux: Mapping[str, jax.Array]


def safe_sqrt(value: jax.Array) -> jax.Array:
  """sqrt with a zero (not NaN) gradient at 0."""
  positive = value > 0
  return jnp.where(positive, jnp.sqrt(jnp.where(positive, value, 1.0)), 0.0)


def floored_volume(volume: jax.Array) -> jax.Array:
  """A graph's volume (a sum of degrees) as a loss divides by it: 0 stays
  0 (a graph without edges), values below MIN_DEGREE count as MIN_DEGREE.
  The volume of a coarsened graph whose nodes all fell into one cluster
  is ~1e-30; dividing by it (and by its square in the gradient) overflows
  float32 to NaN gradients. With symmetric unit-weight edges, a graph
  with an edge has a first-level volume of at least 2/K (MinCutPool) or 2
  (DMoN), far above the floor; edge weights w scale that by the smallest
  w. A volume that is not positive (signed weights) counts as 0."""
  return jnp.where(volume > 0, jnp.maximum(volume, MIN_DEGREE), 0.0)


def safe_divide(numerator: jax.Array, denominator: jax.Array) -> jax.Array:
  """numerator / denominator where the denominator is nonzero, else 0
  (finite gradients either way)."""
  nonzero = denominator != 0
  return jnp.where(nonzero, numerator / jnp.where(nonzero, denominator, 1.0),
                   0.0)


def mask_clusters(logits: jax.Array, cluster_mask: Optional[jax.Array]
                  ) -> jax.Array:
  """Assignment logits [B,N,K] with the columns a graph may not use
  (cluster_mask [B,K] False) set to MASKED_LOGIT; None keeps them all."""
  if cluster_mask is None:
    return logits
  return jnp.where(cluster_mask[:, None, :], logits, MASKED_LOGIT)


def masked_softmax(logits: jax.Array, node_mask: jax.Array) -> jax.Array:
  """Row softmax over the last axis; rows of padded nodes are exactly zero.

  Args:
    logits: [B, N, K] (masked columns already at MASKED_LOGIT).
    node_mask: [B, N] bool.

  Returns:
    [B, N, K] assignment S.
  """
  return jnp.where(node_mask[..., None], jax.nn.softmax(logits, axis=-1),
                   0.0)


def per_graph_mean(per_graph: jax.Array, graph_mask: jax.Array) -> jax.Array:
  """Mean of [B] values over real graphs (0 when there are none)."""
  total = jnp.sum(jnp.where(graph_mask, per_graph, 0.0))
  return total / jnp.maximum(jnp.sum(graph_mask), 1)


def check_adjacency(adj: Adjacency, batch: int, num_nodes: int,
                    where: str) -> None:
  """ValueError unless adj is [B,N,N] (or an EdgeList of that shape)."""
  if isinstance(adj, EdgeList):
    if adj.shape != (batch, num_nodes, num_nodes):
      raise ValueError(f"{where}: argument 'adj' is an EdgeList of shape "
                       f"{adj.shape}; expected {(batch, num_nodes, num_nodes)}"
                       " from x")
    return
  check_rank(adj, 3, "adj", "[B,N,N]", where)
  check_dim(adj, 0, batch, "adj", "B, the batch size of x", where)
  check_dim(adj, 1, num_nodes, "adj", "N, the node count of x", where)
  check_dim(adj, 2, num_nodes, "adj", "N, the node count of x", where)


def prepare_graph(x, adj, mask, cluster_mask, clusters: int, where: str):
  """Checks an operator's x, adj and masks for `clusters` clusters
  (ValueError naming the argument) and clears padded entries by selection.

  Returns:
    (x with padded nodes 0, adj with padded rows and columns 0, mask [B,N]
    bool, cluster_mask [B,K] bool; masks all True where None was given).
  """
  check_rank(x, 3, "x", "[B,N,F]", where)
  batch, num_nodes = x.shape[:2]
  check_adjacency(adj, batch, num_nodes, where)
  if mask is None:
    mask = jnp.ones((batch, num_nodes), bool)
  else:
    check_rank(mask, 2, "mask", "[B,N]", where)
    check_dim(mask, 0, batch, "mask", "B, the batch size of x", where)
    check_dim(mask, 1, num_nodes, "mask", "N, the node count of x", where)
    mask = checked_mask(mask, "mask", where)
  if cluster_mask is None:
    cluster_mask = jnp.ones((batch, clusters), bool)
  else:
    check_rank(cluster_mask, 2, "cluster_mask", "[B,K]", where)
    check_dim(cluster_mask, 0, batch, "cluster_mask",
              "B, the batch size of x", where)
    check_dim(cluster_mask, 1, clusters, "cluster_mask",
              "K, the cluster count of s_logits", where)
    cluster_mask = checked_mask(cluster_mask, "cluster_mask", where)
  x = jnp.where(mask[..., None], x, jnp.zeros((), x.dtype))
  return x, mask_adjacency(adj, mask), mask, cluster_mask


def check_logits(s_logits, x, where: str) -> None:
  """ValueError unless s_logits is [B, N, columns] for x [B, N, F]."""
  check_rank(s_logits, 3, "s_logits", "[B,N,K]", where)
  check_dim(s_logits, 0, x.shape[0], "s_logits", "B, the batch size of x",
            where)
  check_dim(s_logits, 1, x.shape[1], "s_logits", "N, the node count of x",
            where)


def prepare(x, adj, s_logits, mask, cluster_mask, where: str):
  """Checks an operator's arguments (ValueError naming the argument) and
  clears its padded entries by selection.

  Returns:
    (x with padded nodes 0, adj with padded rows and columns 0, s_logits
    with padded rows 0 and masked clusters at MASKED_LOGIT, mask [B,N]
    bool, cluster_mask [B,K] bool; masks all True where None was given).
  """
  check_rank(x, 3, "x", "[B,N,F]", where)
  check_logits(s_logits, x, where)
  x, adj, mask, cluster_mask = prepare_graph(x, adj, mask, cluster_mask,
                                             s_logits.shape[2], where)
  s_logits = jnp.where(mask[..., None], s_logits,
                       jnp.zeros((), s_logits.dtype))
  return x, adj, mask_clusters(s_logits, cluster_mask), mask, cluster_mask


class Assignment(NamedTuple):
  """An operator's checked inputs, its assignment and the pooled graph.

  Attributes:
    input_adj: the operator's adjacency with padded rows and columns 0
      (what its losses read).
    s_logits: [B, N, K] logits, masked clusters at MASKED_LOGIT.
    mask: [B, N] bool real nodes; cluster_mask: [B, K] bool real clusters.
    graph_mask: [B] bool real graphs.
    s: [B, N, K] the masked row softmax S.
    x: [B, K, F] S^T X; adj: [B, K, K] S^T A S.
  """
  input_adj: Adjacency
  s_logits: jax.Array
  mask: jax.Array
  cluster_mask: jax.Array
  graph_mask: jax.Array
  s: jax.Array
  x: jax.Array
  adj: jax.Array


def assign(x, adj, s_logits, mask, cluster_mask, where: str) -> Assignment:
  """What every dense pooling operator starts with: checks its arguments
  (`prepare`), forms S and the pooled graph S^T X, S^T A S (`coarsen`)."""
  x, adj, s_logits, mask, cluster_mask = prepare(x, adj, s_logits, mask,
                                                 cluster_mask, where)
  s = masked_softmax(s_logits, mask)
  pooled_x, pooled_adj = coarsen(x, adj, s)
  return Assignment(adj, s_logits, mask, cluster_mask, jnp.any(mask, axis=1),
                    s, pooled_x, pooled_adj)


def coarsen(x: jax.Array, adj: Adjacency, s: jax.Array
            ) -> Tuple[jax.Array, jax.Array]:
  """The pooled graph: S^T X [B,K,F] and S^T A S [B,K,K] (A S from the
  edges when adj is an EdgeList)."""
  pooled_x = jnp.einsum("bnk,bnf->bkf", s, x)
  pooled_adj = jnp.einsum("bnk,bnl->bkl", s, matmul(adj, s))
  return pooled_x, pooled_adj


def gram(s: jax.Array) -> jax.Array:
  """[B, K, K] S^T S."""
  return jnp.einsum("bnk,bnl->bkl", s, s)


def orthogonality_loss(s: jax.Array, cluster_mask: jax.Array) -> jax.Array:
  """[B] per graph || S^T S / ||S^T S||_F - I_K / sqrt(K) ||_F over its K
  real clusters (MinCutPool's orthogonality term)."""
  ss = gram(s)
  ss = ss / jnp.maximum(safe_sqrt(jnp.sum(ss * ss, axis=(1, 2))),
                        1e-12)[:, None, None]
  clusters = jnp.sum(cluster_mask, axis=1)
  identity = jnp.where(cluster_mask[:, :, None],
                       jnp.eye(s.shape[2], dtype=s.dtype)[None], 0.0)
  identity = identity / jnp.sqrt(jnp.maximum(clusters, 1)
                                 ).astype(s.dtype)[:, None, None]
  return safe_sqrt(jnp.sum((ss - identity) ** 2, axis=(1, 2)))


def normalized_pooled_adjacency(pooled_adj: jax.Array) -> jax.Array:
  """[B,K,K] S^T A S with its diagonal set to zero, then symmetrically
  normalised D^-1/2 A D^-1/2 by its own row sums, as MinCutPool and DMoN
  coarsen the graph. Degrees below MIN_DEGREE count as MIN_DEGREE, so the
  gradient stays finite for nearly empty clusters (PyTorch Geometric's
  1e-15 added to sqrt(d) does not bound it); rows summing to 0 stay 0."""
  clusters = pooled_adj.shape[1]
  off_diagonal = pooled_adj * (1.0 - jnp.eye(clusters, dtype=pooled_adj.dtype))
  degree = jnp.sum(off_diagonal, axis=-1)
  inverse_root = jax.lax.rsqrt(jnp.maximum(degree, MIN_DEGREE))
  return off_diagonal * inverse_root[:, :, None] * inverse_root[:, None, :]
