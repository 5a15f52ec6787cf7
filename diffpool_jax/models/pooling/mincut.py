"""MinCutPool (Bianchi, Grattarola and Alippi, ICML 2020).

The assignment S is regularised towards a normalised minimum cut: the cut
loss -Tr(S^T A S) / Tr(S^T D S) rewards clusters that keep edges inside,
the orthogonality loss pushes S^T S towards a scaled identity (balanced,
distinct clusters). The pooled graph S^T A S loses its diagonal (self
loops) and is symmetrically normalised.
"""

from __future__ import annotations

from typing import Optional

import jax
import jax.numpy as jnp

from diffpool_jax.adjacency import Adjacency, row_sums
from diffpool_jax.models.pooling.common import (PoolOutput, assign,
                                                floored_volume,
                                                normalized_pooled_adjacency,
                                                orthogonality_loss,
                                                per_graph_mean, safe_divide)

AUX_NAMES = ("mincut", "ortho")


def cut_loss(adj: Adjacency, s: jax.Array, pooled_adj: jax.Array
             ) -> jax.Array:
  """[B] per graph -Tr(S^T A S) / Tr(S^T D S), D the degree matrix of A
  (0 for a graph without edges; the volume Tr(S^T D S) floored as
  common.floored_volume says)."""
  within = jnp.trace(pooled_adj, axis1=1, axis2=2)
  degree = row_sums(adj)[..., 0]                          # [B, N]
  total = jnp.sum(degree * jnp.sum(s * s, axis=-1), axis=1)
  return -safe_divide(within, floored_volume(total))


def dense_mincut_pool(x: jax.Array,
                      adj: Adjacency,
                      s_logits: jax.Array,
                      mask: Optional[jax.Array] = None,
                      cluster_mask: Optional[jax.Array] = None
                      ) -> PoolOutput:
  """One MinCutPool coarsening step on a padded batch.

  Args:
    x: [B, N, F] node features.
    adj: [B, N, N] adjacency, or an `EdgeList` (no N x N matrix formed).
    s_logits: [B, N, K] assignment logits (before the row softmax).
    mask: [B, N] bool, True for real nodes (None: all real).
    cluster_mask: [B, K] bool, the clusters each graph may use (None: all);
      the orthogonality loss then uses each graph's own K_i.

  Returns:
    `PoolOutput(x [B,K,F] = S^T X, adj [B,K,K] normalised S^T A S without
    its diagonal, s [B,N,K], aux {"mincut", "ortho"})`, the losses averaged
    over real graphs. PyTorch Geometric's `dense_mincut_pool` averages over
    all B graphs (an empty padding graph gives 0/0) and uses the full K of
    `s` in the identity for every graph.
  """
  a = assign(x, adj, s_logits, mask, cluster_mask, "dense_mincut_pool")
  aux = {"mincut": per_graph_mean(cut_loss(a.input_adj, a.s, a.adj),
                                  a.graph_mask),
         "ortho": per_graph_mean(orthogonality_loss(a.s, a.cluster_mask),
                                 a.graph_mask)}
  return PoolOutput(a.x, normalized_pooled_adjacency(a.adj), a.s, aux)
