"""Dense differentiable pooling (DiffPool) and its auxiliary losses.

Given node embeddings Z [B,N,F], adjacency A [B,N,N] and assignment logits
[B,N,K], DiffPool forms the soft assignment S = softmax_rows(logits) and the
coarsened graph X' = S^T Z [B,K,F], A' = S^T A S [B,K,K]. Two auxiliary
losses push S towards a useful clustering: the link loss ||A - S S^T||_F
(neighbours share clusters) and the mean row entropy of S (near one-hot).
"""

from __future__ import annotations

from typing import Mapping, NamedTuple, Optional

import jax
import jax.numpy as jnp

from diffpool_jax.adjacency import Adjacency, EdgeList, squared_norms
from diffpool_jax.models.pooling.common import (assign, gram, per_graph_mean,
                                                safe_sqrt)

LINK_LOSS_FORMS = ("frobenius", "pyg", "bce")
AUX_NAMES = ("link", "entropy")

# Clipping constant of the authors' BCE link loss (RexYing/diffpool).
BCE_EPS = 1e-7


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

  @property
  def aux(self) -> Mapping[str, jax.Array]:
    """The auxiliary losses by name: "link" and "entropy"."""
    return {"link": self.link_loss, "entropy": self.entropy_loss}


def row_entropy(logits: jax.Array) -> jax.Array:
  """Entropy of softmax(logits) per row, from log-softmax (finite gradients).

  Args:
    logits: [..., K].

  Returns:
    [...] entropies in nats.
  """
  log_s = jax.nn.log_softmax(logits, axis=-1)
  return -jnp.sum(jnp.exp(log_s) * log_s, axis=-1)




def squared_residuals(adj, s, pooled_adj) -> jax.Array:
  """[B] ||A - S S^T||_F^2 per graph without forming the N x N product:
  ||A||^2 - 2 tr(S^T A S) + ||S^T S||^2 (clamped at 0 against rounding).

  Args:
    adj: [B, N, N] or EdgeList; s: [B, N, K]; pooled_adj: [B, K, K].
  """
  ss = gram(s)
  squared = (squared_norms(adj)
             - 2.0 * jnp.trace(pooled_adj, axis1=1, axis2=2)
             + jnp.sum(ss * ss, axis=(1, 2)))
  return jnp.maximum(squared, 0.0)


def link_loss_frobenius(adj, s, pooled_adj, n_node) -> jax.Array:
  """Mean over graphs of ||A_i - S_i S_i^T||_F / n_i^2 (real entries only).

  Args:
    adj: [B, N, N] or EdgeList; s: [B, N, K] with zero rows on padded
    nodes; pooled_adj: [B, K, K] = S^T A S; n_node: [B] real node counts.
  """
  norms = safe_sqrt(squared_residuals(adj, s, pooled_adj))
  n_sq = jnp.maximum(n_node, 1).astype(norms.dtype) ** 2
  return per_graph_mean(norms / n_sq, n_node > 0)


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
  return per_graph_mean(per_graph / n_sq, n_node > 0)


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
  return per_graph_mean(jnp.sum(entropy, axis=1) / n, n_node > 0)




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
    mask: [B, N] bool (or exactly 0/1), True for real nodes; None means
      all nodes are real. Whatever padded entries of x, adj and s_logits
      hold (NaN and inf too) never reaches the pooled graph, the losses or
      a gradient: padded nodes get zero assignment rows.
    link_loss: "frobenius" (default: per graph ||A - S S^T||_F / n_i^2,
      averaged over graphs), "pyg" (PyTorch Geometric's whole-batch norm
      divided by B N^2, with its entropy averaged over all B N rows), or
      "bce" (the authors' clipped binary cross-entropy, per graph).
    cluster_mask: [B, K] bool, the clusters each graph may use (per-graph
      cluster counts); the other columns of its S are exactly zero, so
      they stay empty in the pooled graph and out of the losses. None: all.

  Returns:
    `DiffPoolResult(x [B,K,F], adj [B,K,K], s [B,N,K], link_loss [],
    entropy_loss [])`; its `aux` maps "link" and "entropy" to the losses.
  """
  where = "dense_diff_pool"
  if link_loss not in LINK_LOSS_FORMS:
    raise ValueError(f"{where}: argument 'link_loss' is {link_loss!r}; "
                     f"expected one of {LINK_LOSS_FORMS}")
  if link_loss == "bce" and isinstance(adj, EdgeList):
    raise ValueError(f"{where}: link_loss='bce' needs S S^T entry by entry "
                     "and so a dense adjacency, not an EdgeList")

  a = assign(x, adj, s_logits, mask, cluster_mask, where)
  n_node = jnp.sum(a.mask, axis=1)
  if link_loss == "frobenius":
    link = link_loss_frobenius(a.input_adj, a.s, a.adj, n_node)
  elif link_loss == "pyg":
    link = link_loss_pyg(a.input_adj, a.s, a.adj)
  else:
    link = link_loss_bce(a.input_adj, a.s, a.mask, n_node)
  entropy = entropy_loss(a.s_logits, a.mask, n_node, link_loss)
  return DiffPoolResult(a.x, a.adj, a.s, link, entropy)
