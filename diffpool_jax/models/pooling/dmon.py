"""DMoN, deep modularity networks (Tsitsulin, Palowitch, Perozzi and
Müller, JMLR 2023).

The assignment S is regularised towards high modularity: the spectral loss
is minus the soft modularity of S, the cluster loss penalises collapsing
all nodes into few clusters, and (as PyTorch Geometric adds) the
orthogonality loss of MinCutPool. Pooled features are SELU(S^T X); the
pooled graph is MinCutPool's (no diagonal, symmetrically normalised).
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
                                                per_graph_mean, safe_divide,
                                                safe_sqrt)

AUX_NAMES = ("spectral", "ortho", "cluster")


def spectral_loss(adj: Adjacency, s: jax.Array, pooled_adj: jax.Array
                  ) -> jax.Array:
  """[B] per graph -Tr(S^T A S - (S^T d)(d^T S) / 2m) / 2m, d the degree
  vector and m = sum(A) / 2 the number of undirected edges (0 for a graph
  without edges; 2m floored as common.floored_volume says)."""
  degree = row_sums(adj)[..., 0]                          # [B, N]
  two_m = floored_volume(jnp.sum(degree, axis=1))         # [B]
  cluster_degree = jnp.einsum("bnk,bn->bk", s, degree)   # [B, K]
  within = jnp.trace(pooled_adj, axis1=1, axis2=2)
  expected = safe_divide(jnp.sum(cluster_degree ** 2, axis=1), two_m)
  return -safe_divide(within - expected, two_m)


def cluster_loss(s: jax.Array, mask: jax.Array, cluster_mask: jax.Array
                 ) -> jax.Array:
  """[B] per graph sqrt(K) / n ||sum_i S_i||_2 - 1 over its n real nodes
  and K real clusters (0 for perfectly balanced clusters, sqrt(K) - 1 when
  all nodes share one)."""
  sizes = jnp.sum(s, axis=1)                              # [B, K]
  nodes = jnp.maximum(jnp.sum(mask, axis=1), 1).astype(s.dtype)
  clusters = jnp.sum(cluster_mask, axis=1).astype(s.dtype)
  return (jnp.sqrt(jnp.maximum(clusters, 1)) / nodes
          * safe_sqrt(jnp.sum(sizes ** 2, axis=1)) - 1.0)


def dense_dmon_pool(x: jax.Array,
                    adj: Adjacency,
                    s_logits: jax.Array,
                    mask: Optional[jax.Array] = None,
                    cluster_mask: Optional[jax.Array] = None
                    ) -> PoolOutput:
  """One DMoN coarsening step on a padded batch.

  Args:
    x: [B, N, F] node features.
    adj: [B, N, N] adjacency, or an `EdgeList` (no N x N matrix formed).
    s_logits: [B, N, K] assignment logits (before the row softmax).
    mask: [B, N] bool, True for real nodes (None: all real).
    cluster_mask: [B, K] bool, the clusters each graph may use (None: all);
      the orthogonality and cluster losses then use each graph's own K_i.

  Returns:
    `PoolOutput(x [B,K,F] = SELU(S^T X), adj [B,K,K] normalised S^T A S
    without its diagonal, s [B,N,K], aux {"spectral", "ortho", "cluster"})`,
    the losses averaged over real graphs. m is the paper's: half the sum of
    A (the undirected edge count of a symmetric 0/1 adjacency without self
    loops). PyTorch Geometric's `DMoNPooling` (2.8) computes the same m but
    averages over all B graphs (an empty padding graph gives 0/0) and uses
    the full K of `s` for every graph; the authors' TensorFlow code divides
    by the degree sum (2m) where the paper has m.
  """
  a = assign(x, adj, s_logits, mask, cluster_mask, "dense_dmon_pool")
  losses = {"spectral": spectral_loss(a.input_adj, a.s, a.adj),
            "ortho": orthogonality_loss(a.s, a.cluster_mask),
            "cluster": cluster_loss(a.s, a.mask, a.cluster_mask)}
  aux = {name: per_graph_mean(value, a.graph_mask)
         for name, value in losses.items()}
  return PoolOutput(jax.nn.selu(a.x), normalized_pooled_adjacency(a.adj),
                    a.s, aux)
