"""Dense differentiable pooling (DiffPool) and its auxiliary losses.

Given node embeddings Z [B,N,F], adjacency A [B,N,N] and assignment logits
[B,N,K], DiffPool forms the soft assignment S = softmax_rows(logits) and the
coarsened graph X' = S^T Z [B,K,F], A' = S^T A S [B,K,K]. Two auxiliary
losses push S towards a useful clustering: the link loss ||A - S S^T||_F
(neighbours share clusters) and the mean row entropy of S (near one-hot).
"""

from __future__ import annotations

from typing import NamedTuple, Optional

import jax
import jax.numpy as jnp

from diffpool_jax.adjacency import (Adjacency, EdgeList, matmul,
                                    squared_norms)
from diffpool_jax.checks import check_dim, check_rank

LINK_LOSS_FORMS = ("frobenius", "pyg", "bce")

# Clipping constant of the authors' BCE link loss (RexYing/diffpool).
BCE_EPS = 1e-7
# Logit of a masked-out cluster column: exp() of it is exactly 0 and, unlike
# -inf, p log p and its gradient stay finite (0).
MASKED_LOGIT = -1e9


class DiffPoolResult(NamedTuple):
  """Output of `dense_diff_pool`.

  Attributes:
    x: [B, K, F] pooled features S^T Z.
    adj: [B, K, K] pooled adjacency S^T A S.
    s: [B, N, K] soft assignment; rows of padded nodes are zero.
    link_loss: [] scalar link-prediction loss.
    entropy_loss: [] scalar mean row entropy of S.
  """
  x: jax.Array
  adj: jax.Array
  s: jax.Array
  link_loss: jax.Array
  entropy_loss: jax.Array


def safe_sqrt(value: jax.Array) -> jax.Array:
  """sqrt with a zero (not NaN) gradient at 0."""
  positive = value > 0
  return jnp.where(positive, jnp.sqrt(jnp.where(positive, value, 1.0)), 0.0)


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
  return jax.nn.softmax(logits, axis=-1) * node_mask[..., None]


def row_entropy(logits: jax.Array) -> jax.Array:
  """Entropy of softmax(logits) per row, from log-softmax (finite gradients).

  Args:
    logits: [..., K].

  Returns:
    [...] entropies in nats.
  """
  log_s = jax.nn.log_softmax(logits, axis=-1)
  return -jnp.sum(jnp.exp(log_s) * log_s, axis=-1)


def _per_graph_mean(per_graph: jax.Array, graph_mask: jax.Array) -> jax.Array:
  """Mean of [B] values over real graphs (0 when there are none)."""
  total = jnp.sum(jnp.where(graph_mask, per_graph, 0.0))
  return total / jnp.maximum(jnp.sum(graph_mask), 1)


def squared_residuals(adj, s, pooled_adj) -> jax.Array:
  """[B] ||A - S S^T||_F^2 per graph without forming the N x N product:
  ||A||^2 - 2 tr(S^T A S) + ||S^T S||^2 (clamped at 0 against rounding).

  Args:
    adj: [B, N, N] or EdgeList; s: [B, N, K]; pooled_adj: [B, K, K].
  """
  gram = jnp.einsum("bnk,bnl->bkl", s, s)
  squared = (squared_norms(adj)
             - 2.0 * jnp.trace(pooled_adj, axis1=1, axis2=2)
             + jnp.sum(gram * gram, axis=(1, 2)))
  return jnp.maximum(squared, 0.0)


def link_loss_frobenius(adj, s, pooled_adj, n_node) -> jax.Array:
  """Mean over graphs of ||A_i - S_i S_i^T||_F / n_i^2 (real entries only).

  Args:
    adj: [B, N, N] or EdgeList; s: [B, N, K] with zero rows on padded
    nodes; pooled_adj: [B, K, K] = S^T A S; n_node: [B] real node counts.
  """
  norms = safe_sqrt(squared_residuals(adj, s, pooled_adj))
  n_sq = jnp.maximum(n_node, 1).astype(norms.dtype) ** 2
  return _per_graph_mean(norms / n_sq, n_node > 0)


def link_loss_pyg(adj, s, pooled_adj) -> jax.Array:
  """PyTorch Geometric's form: ||A - S S^T||_F over the whole batch / B N^2."""
  batch, nodes = s.shape[:2]
  total = jnp.sum(squared_residuals(adj, s, pooled_adj))
  return safe_sqrt(total) / (batch * nodes * nodes)


def link_loss_bce(adj, s, node_mask, n_node) -> jax.Array:
  """The authors' clipped binary cross-entropy between A and min(S S^T, 1).

  Summed over the real n_i x n_i entries of each graph, divided by n_i^2,
  then averaged over graphs. (The authors divide the batch's sum by the
  batch's total entry count, a size-weighted average over graphs.)
  """
  pred = jnp.minimum(jnp.einsum("bnk,bmk->bnm", s, s), 1.0)
  bce = -(adj * jnp.log(pred + BCE_EPS)
          + (1.0 - adj) * jnp.log(1.0 - pred + BCE_EPS))
  pair_mask = node_mask[:, :, None] & node_mask[:, None, :]
  per_graph = jnp.sum(jnp.where(pair_mask, bce, 0.0), axis=(1, 2))
  n_sq = jnp.maximum(n_node, 1).astype(per_graph.dtype) ** 2
  return _per_graph_mean(per_graph / n_sq, n_node > 0)


def entropy_loss(s_logits, node_mask, n_node, form: str) -> jax.Array:
  """Mean row entropy of the assignment over real nodes.

  `form="pyg"` averages over all B*N rows (padded rows count as zero), as
  PyTorch Geometric does; otherwise per graph over its n_i real rows, then
  over real graphs.
  """
  entropy = jnp.where(node_mask, row_entropy(s_logits), 0.0)
  if form == "pyg":
    return jnp.mean(entropy)
  n = jnp.maximum(n_node, 1).astype(entropy.dtype)
  return _per_graph_mean(jnp.sum(entropy, axis=1) / n, n_node > 0)


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


def dense_diff_pool(x: jax.Array,
                    adj: Adjacency,
                    s_logits: jax.Array,
                    mask: Optional[jax.Array] = None,
                    link_loss: str = "frobenius",
                    cluster_mask: Optional[jax.Array] = None
                    ) -> DiffPoolResult:
  """One DiffPool coarsening step on a padded dense batch.

  Args:
    x: [B, N, F] node embeddings Z.
    adj: [B, N, N] adjacency A, or an `EdgeList` (then no N x N matrix is
      formed: A S comes from the edges, the link loss from the identity
      below; the "bce" form needs S S^T and so a dense adjacency).
    s_logits: [B, N, K] assignment logits (before the row softmax).
    mask: [B, N] bool, True for real nodes; None means all nodes are real.
      Padded nodes get zero assignment rows, so they never reach the pooled
      graph or the losses.
    link_loss: "frobenius" (default: per graph ||A - S S^T||_F / n_i^2,
      averaged over graphs), "pyg" (PyTorch Geometric's whole-batch norm
      divided by B N^2, with its entropy averaged over all B N rows), or
      "bce" (the authors' clipped binary cross-entropy, per graph).
    cluster_mask: [B, K] bool, the clusters each graph may use (per-graph
      cluster counts); the other columns of its S are exactly zero, so
      they stay empty in the pooled graph and out of the losses. None: all.

  Returns:
    `DiffPoolResult(x [B,K,F], adj [B,K,K], s [B,N,K], link_loss [],
    entropy_loss [])`.
  """
  where = "dense_diff_pool"
  check_rank(x, 3, "x", "[B,N,F]", where)
  check_rank(s_logits, 3, "s_logits", "[B,N,K]", where)
  batch, num_nodes = x.shape[:2]
  check_adjacency(adj, batch, num_nodes, where)
  check_dim(s_logits, 0, batch, "s_logits", "B, the batch size of x", where)
  check_dim(s_logits, 1, num_nodes, "s_logits", "N, the node count of x",
            where)
  if mask is None:
    mask = jnp.ones((batch, num_nodes), bool)
  else:
    check_rank(mask, 2, "mask", "[B,N]", where)
    check_dim(mask, 0, batch, "mask", "B, the batch size of x", where)
    check_dim(mask, 1, num_nodes, "mask", "N, the node count of x", where)
    mask = mask.astype(bool)
  if cluster_mask is not None:
    check_rank(cluster_mask, 2, "cluster_mask", "[B,K]", where)
    check_dim(cluster_mask, 0, batch, "cluster_mask",
              "B, the batch size of x", where)
    check_dim(cluster_mask, 1, s_logits.shape[2], "cluster_mask",
              "K, the cluster count of s_logits", where)
    s_logits = mask_clusters(s_logits, cluster_mask.astype(bool))
  if link_loss not in LINK_LOSS_FORMS:
    raise ValueError(f"{where}: argument 'link_loss' is {link_loss!r}; "
                     f"expected one of {LINK_LOSS_FORMS}")
  if link_loss == "bce" and isinstance(adj, EdgeList):
    raise ValueError(f"{where}: link_loss='bce' needs S S^T entry by entry "
                     "and so a dense adjacency, not an EdgeList")

  n_node = jnp.sum(mask, axis=1)
  s = masked_softmax(s_logits, mask)
  pooled_x = jnp.einsum("bnk,bnf->bkf", s, x)
  pooled_adj = jnp.einsum("bnk,bnl->bkl", s, matmul(adj, s))
  if link_loss == "frobenius":
    link = link_loss_frobenius(adj, s, pooled_adj, n_node)
  elif link_loss == "pyg":
    link = link_loss_pyg(adj, s, pooled_adj)
  else:
    link = link_loss_bce(adj, s, mask, n_node)
  entropy = entropy_loss(s_logits, mask, n_node, link_loss)
  return DiffPoolResult(pooled_x, pooled_adj, s, link, entropy)
