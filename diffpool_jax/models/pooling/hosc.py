"""HOSC, higher-order spectral clustering pooling (Duval and Malliaros,
"Higher-order clustering and pooling for graph neural networks", CIKM
2022).

The assignment S is regularised towards a normalised cut of the graph's
edges and of its triangles: the cut loss mixes the first-order normalised
association of the adjacency A with that of the triangle motif adjacency
A_M = (A A) * A (entry (i, j): the triangles through edge (i, j)), with
weight `alpha` on the motif term; MinCutPool's orthogonality loss keeps
the clusters distinct (weight 0.1 by default, the paper's mu). The pooled
graph is MinCutPool's (no diagonal, symmetrically normalised).

Dense only: the triangle counts per edge need A A, which an edge list of
the batch does not give without a sparse-sparse product.
"""

from __future__ import annotations

from typing import Optional

import jax
import jax.numpy as jnp

from diffpool_jax.adjacency import EdgeList
from diffpool_jax.models.pooling.common import (PoolOutput, assign,
                                                floored_volume,
                                                normalized_pooled_adjacency,
                                                orthogonality_loss,
                                                per_graph_mean, safe_divide)

AUX_NAMES = ("hosc", "ortho")
# The paper's mu: the orthogonality loss's weight (tgp and the authors).
DEFAULT_WEIGHTS = {"ortho": 0.1}


def triangle_adjacency(adj: jax.Array) -> jax.Array:
  """[B,N,N] the motif adjacency (A A) * A: entry (i, j) is
  A_ij sum_l A_il A_lj, the (weighted) triangles through edge (i, j)."""
  return (adj @ adj) * adj


def normalized_association(adj: jax.Array, s: jax.Array,
                           cluster_mask: jax.Array) -> jax.Array:
  """[B] per graph -(1/K) sum_k (S^T A S)_kk / vol_k over its K real
  clusters, vol_k = (S^T d)_k the cluster's degree volume (a cluster of
  volume 0 adds 0; volumes floored as common.floored_volume says): minus
  the mean share of each cluster's volume that stays inside it, in
  [-1, 0] (-1 when no edge leaves a cluster)."""
  inside = jnp.einsum("bnk,bnk->bk", s, adj @ s)              # [B, K]
  volume = jnp.einsum("bnk,bn->bk", s, jnp.sum(adj, axis=-1))
  # A nearly empty cluster (volume ~1e-21) would give 0 * inf gradients:
  # volumes are floored (common.floored_volume; inside <= volume keeps the
  # share in [0, 1]); an empty one adds 0.
  share = jnp.where(cluster_mask,
                    safe_divide(inside, floored_volume(volume)), 0.0)
  clusters = jnp.maximum(jnp.sum(cluster_mask, axis=1), 1).astype(s.dtype)
  return -jnp.sum(share, axis=1) / clusters


def dense_hosc_pool(x: jax.Array,
                    adj: jax.Array,
                    s_logits: jax.Array,
                    mask: Optional[jax.Array] = None,
                    cluster_mask: Optional[jax.Array] = None,
                    alpha: float = 0.5) -> PoolOutput:
  """One HOSC coarsening step on a padded batch.

  Args:
    x: [B, N, F] node features.
    adj: [B, N, N] dense adjacency (an EdgeList is refused: see the module
      docstring).
    s_logits: [B, N, K] assignment logits (before the row softmax).
    mask: [B, N] bool, True for real nodes (None: all real).
    cluster_mask: [B, K] bool, the clusters each graph may use (None: all).
    alpha: weight of the triangle-motif cut in the "hosc" loss (1 - alpha
      on the first-order cut); the paper's and tgp's default 0.5.

  Returns:
    `PoolOutput(x [B,K,F] = S^T X, adj [B,K,K] normalised S^T A S without
    its diagonal, s [B,N,K], aux {"hosc", "ortho"})`, averaged over real
    graphs: hosc = (1 - alpha) L(A) + alpha L(A_M), L the normalised
    association (`normalized_association`), and MinCutPool's
    orthogonality loss. As the authors' `dense_hoscpool` (the motif
    (A A) * A, cluster volumes S^T d); tgp 1.0.2 takes A A A as the motif,
    divides Tr(S^T A S) by Tr(S^T D S) and computes the first-order term
    after zeroing the pooled diagonal (so it is always 0 there).
  """
  if isinstance(adj, EdgeList):
    raise ValueError("dense_hosc_pool needs the dense [B,N,N] adjacency "
                     "(its triangle motif needs A A); got an EdgeList")
  a = assign(x, adj, s_logits, mask, cluster_mask, "dense_hosc_pool")
  first = normalized_association(a.input_adj, a.s, a.cluster_mask)
  motif = normalized_association(triangle_adjacency(a.input_adj), a.s,
                                 a.cluster_mask)
  aux = {"hosc": per_graph_mean((1.0 - alpha) * first + alpha * motif,
                                a.graph_mask),
         "ortho": per_graph_mean(orthogonality_loss(a.s, a.cluster_mask),
                                 a.graph_mask)}
  return PoolOutput(a.x, normalized_pooled_adjacency(a.adj), a.s, aux)
