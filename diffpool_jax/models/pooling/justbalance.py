"""JustBalance (Bianchi, "Simplifying clustering with graph neural
networks", NLDL 2023).

The assignment S is regularised by one balance term alone, with no cut
and no orthogonality loss: the message passing of the GNN that computes
S already makes neighbours alike, so the loss only has to keep the
clusters from collapsing. The pooled graph is MinCutPool's (S^T A S
without its diagonal, symmetrically normalised).
"""

from __future__ import annotations

from typing import Optional

import jax
import jax.numpy as jnp

from diffpool_jax.adjacency import Adjacency
from diffpool_jax.models.pooling.common import (PoolOutput, assign,
                                                normalized_pooled_adjacency,
                                                per_graph_mean, safe_sqrt)

AUX_NAMES = ("balance",)


def balance_loss(s: jax.Array, mask: jax.Array, cluster_mask: jax.Array
                 ) -> jax.Array:
  """[B] per graph -Tr(sqrt(S^T S)) / sqrt(n K) over its n real nodes and
  K real clusters, the square root taken entrywise (the paper's
  sqrt(S^T S), as every implementation computes it): minus the sum of
  S's column norms, normalised. In [-1, -1/sqrt(K)]: -1 for a balanced
  hard partition, -1/sqrt(K) for uniform rows or one shared cluster.

  Args:
    s: [B, N, K] assignment (zero rows on padded nodes, zero columns on
      masked clusters); mask: [B, N] bool; cluster_mask: [B, K] bool.
  """
  column_norms = safe_sqrt(jnp.sum(s * s, axis=1))          # [B, K]
  total = jnp.sum(jnp.where(cluster_mask, column_norms, 0.0), axis=1)
  nodes = jnp.sum(mask, axis=1).astype(s.dtype)
  clusters = jnp.sum(cluster_mask, axis=1).astype(s.dtype)
  return -total * jax.lax.rsqrt(jnp.maximum(nodes * clusters, 1.0))


def dense_justbalance_pool(x: jax.Array,
                           adj: Adjacency,
                           s_logits: jax.Array,
                           mask: Optional[jax.Array] = None,
                           cluster_mask: Optional[jax.Array] = None
                           ) -> PoolOutput:
  """One JustBalance coarsening step on a padded batch.

  Args:
    x: [B, N, F] node features.
    adj: [B, N, N] adjacency, or an `EdgeList` (no N x N matrix formed).
    s_logits: [B, N, K] assignment logits (before the row softmax).
    mask: [B, N] bool, True for real nodes (None: all real).
    cluster_mask: [B, K] bool, the clusters each graph may use (None: all).

  Returns:
    `PoolOutput(x [B,K,F] = S^T X, adj [B,K,K] normalised S^T A S without
    its diagonal, s [B,N,K], aux {"balance"})`, the loss averaged over
    real graphs. Normalised per graph by sqrt(n_i K_i) with its own node
    and cluster counts (tgp's `just_balance_loss`); the authors' code
    divides by the padded sqrt(N K) of the batch, which would make a
    graph's loss depend on the bucket it is padded into. The square root
    has no epsilon (tgp adds 1e-8, the authors 1e-15): its gradient at an
    empty column is 0 here (`safe_sqrt`).
  """
  a = assign(x, adj, s_logits, mask, cluster_mask, "dense_justbalance_pool")
  aux = {"balance": per_graph_mean(balance_loss(a.s, a.mask, a.cluster_mask),
                                   a.graph_mask)}
  return PoolOutput(a.x, normalized_pooled_adjacency(a.adj), a.s, aux)
