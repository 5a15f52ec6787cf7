"""AsymCheegerCut (Hansen and Bianchi, "Total variation graph neural
networks", ICML 2023).

The assignment S is regularised towards a balanced minimum cut in the
sense of the asymmetric Cheeger cut: the graph total variation of S
(neighbours with different assignments cost the L1 distance of their
rows) and the asymmetric-norm balance term (every cluster keeps about
n / K nodes). The pooled graph is MinCutPool's (S^T A S without its
diagonal, symmetrically normalised), as tgp's AsymCheegerCutPooling.
"""

from __future__ import annotations

from typing import Optional

import jax
import jax.numpy as jnp

from diffpool_jax.adjacency import Adjacency, EdgeList
from diffpool_jax.models.pooling.common import (PoolOutput, assign,
                                                normalized_pooled_adjacency,
                                                per_graph_mean, safe_divide)

AUX_NAMES = ("totvar", "balance")


def total_variation(adj: Adjacency, s: jax.Array) -> jax.Array:
  """[B] per graph sum over entries (i, j) of A_ij ||s_i - s_j||_1 (both
  directions of an undirected edge), divided by 2 E with E the number of
  nonzero entries: the mean L1 distance across an edge, halved, in
  [0, 1] (0 for a graph without edges).

  Args:
    adj: [B,N,N] or EdgeList with padded rows and columns 0; s: [B,N,K].
  """
  if isinstance(adj, EdgeList):
    rows, cols = adj.flat_indices()
    flat = s.reshape(-1, s.shape[-1])
    distance = jnp.sum(jnp.abs(flat[rows] - flat[cols]), axis=-1)
    weights = jnp.asarray(adj.weights, s.dtype)
    variation = jnp.sum(weights * distance.reshape(weights.shape), axis=1)
    entries = jnp.sum(weights != 0, axis=1)
  else:
    distance = jnp.sum(jnp.abs(s[:, :, None, :] - s[:, None, :, :]),
                       axis=-1)                            # [B, N, N]
    variation = jnp.sum(adj * distance, axis=(1, 2))
    entries = jnp.sum(adj != 0, axis=(1, 2))
  return safe_divide(variation, 2.0 * entries.astype(s.dtype))


def asymmetric_balance(s: jax.Array, mask: jax.Array,
                       cluster_mask: jax.Array) -> jax.Array:
  """[B] per graph the asymmetric-norm balance loss over its n real nodes
  and K real clusters:
  1 - sum_{i,k} [(K-1) (s_ik - q_k)_+ + (q_k - s_ik)_+] / (n (K-1)),
  q_k the (floor(n/K) + 1)-th largest entry of column k (its rho-quantile
  with rho = K - 1). In [0, 1]: 0 for a balanced hard partition. 0 for a
  graph with one cluster (nothing to balance)."""
  nodes = jnp.sum(mask, axis=1)                               # [B]
  clusters = jnp.sum(cluster_mask, axis=1)                    # [B]
  ranked = jnp.sort(jnp.where(mask[..., None], s, -jnp.inf), axis=1,
                    descending=True)                          # [B, N, K]
  position = jnp.minimum(nodes // jnp.maximum(clusters, 1),
                         jnp.maximum(nodes - 1, 0))
  quantile = jnp.take_along_axis(ranked, position[:, None, None], axis=1)
  quantile = jnp.where(jnp.isfinite(quantile), quantile, 0.0)  # [B, 1, K]
  rho = (clusters - 1).astype(s.dtype)[:, None, None]
  above = jnp.maximum(s - quantile, 0.0)
  below = jnp.maximum(quantile - s, 0.0)
  real = mask[..., None] & cluster_mask[:, None, :]
  norm = jnp.sum(jnp.where(real, rho * above + below, 0.0), axis=(1, 2))
  scale = nodes.astype(s.dtype) * rho[:, 0, 0]
  return jnp.where(clusters > 1, 1.0 - safe_divide(norm, scale), 0.0)


def dense_asymcheegercut_pool(x: jax.Array,
                              adj: Adjacency,
                              s_logits: jax.Array,
                              mask: Optional[jax.Array] = None,
                              cluster_mask: Optional[jax.Array] = None
                              ) -> PoolOutput:
  """One AsymCheegerCut coarsening step on a padded batch.

  Args:
    x: [B, N, F] node features.
    adj: [B, N, N] adjacency, or an `EdgeList` (no N x N matrix formed:
      the total variation is a sum over the entries).
    s_logits: [B, N, K] assignment logits (before the row softmax).
    mask: [B, N] bool, True for real nodes (None: all real).
    cluster_mask: [B, K] bool, the clusters each graph may use (None: all).

  Returns:
    `PoolOutput(x [B,K,F] = S^T X, adj [B,K,K] normalised S^T A S without
    its diagonal, s [B,N,K], aux {"totvar", "balance"})`, each loss per
    graph (its own edges, nodes and clusters, as tgp's `totvar_loss` and
    `asym_norm_loss`) and averaged over real graphs. The authors' PyTorch
    code normalises the total variation over the whole batch and ranks
    padded rows in the quantile; both would make a graph's loss depend on
    the graphs and padding beside it. Their network keeps S^T A S raw
    (their GTVConv rebuilds its own Laplacian); with the library's
    convolutions the pooled graph is normalised, as in tgp.
  """
  a = assign(x, adj, s_logits, mask, cluster_mask,
             "dense_asymcheegercut_pool")
  losses = {"totvar": total_variation(a.input_adj, a.s),
            "balance": asymmetric_balance(a.s, a.mask, a.cluster_mask)}
  aux = {name: per_graph_mean(value, a.graph_mask)
         for name, value in losses.items()}
  return PoolOutput(a.x, normalized_pooled_adjacency(a.adj), a.s, aux)
