"""GATv2, the dense graph attention of Brody et al., "How Attentive are
Graph Attention Networks?", ICLR 2022, registered as conv "gatv2".

Written once as a linen module; diffpool_jax.nnx derives its NNX face
(`nnx.Conv("gatv2", ...)`) like every registered convolution's.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from diffpool_jax.adjacency import Adjacency, EdgeList
from diffpool_jax.models.layers import mask_nodes, register_conv


def attention_scores(left: jax.Array, right: jax.Array, attention: jax.Array,
                     negative_slope: float) -> jax.Array:
  """GATv2's e_ij = a . LeakyReLU(W_l x_j + W_r x_i) per head: left [..., H,
  C] (W_l x_j), right [..., H, C] (W_r x_i), attention [H, C] -> [..., H]."""
  hidden = jax.nn.leaky_relu(left + right, negative_slope)
  return jnp.einsum("...hc,hc->...h", hidden, attention)


def dense_attention(left, right, attention, adj, node_mask, negative_slope
                    ) -> jax.Array:
  """sum_j alpha_ij W_l x_j on a dense adjacency: left, right [B,N,H,C],
  adj [B,N,N], node_mask [B,N] -> [B,N,H,C]. Neighbours are the j with
  A_ij != 0 (the weights themselves are not used) and i itself."""
  scores = attention_scores(left[:, None], right[:, :, None], attention,
                            negative_slope)                  # [B, N, N, H]
  nodes = adj.shape[-1]
  neighbour = (adj != 0) | jnp.eye(nodes, dtype=bool)
  neighbour = neighbour & node_mask[:, None, :]
  scores = jnp.where(neighbour[..., None], scores, -jnp.inf)
  # A padded row has no neighbour: its (ignored) weights are made finite.
  weights = jax.nn.softmax(jnp.where(node_mask[:, :, None, None], scores,
                                     0.0), axis=2)
  weights = jnp.where(neighbour[..., None], weights, 0.0)
  return jnp.einsum("bijh,bjhc->bihc", weights, left)


def edge_list_attention(left, right, attention, adj: EdgeList,
                        negative_slope) -> jax.Array:
  """`dense_attention` on an EdgeList (segment softmax over each row's
  entries plus the self-loop; no N x N array): left, right [B,N,H,C] ->
  [B,N,H,C]. Entries of weight 0 (padding) and self-loops of the list
  are left out; the self-loop of every node is always in."""
  batch, nodes, heads, width = left.shape
  rows, cols = adj.flat_indices()
  flat_left = left.reshape(batch * nodes, heads, width)
  flat_right = right.reshape(batch * nodes, heads, width)
  real = ((jnp.asarray(adj.weights) != 0)
          & (jnp.asarray(adj.senders) != jnp.asarray(adj.receivers))
          ).reshape(-1)
  edge_scores = jnp.where(real[:, None], attention_scores(
      flat_left[cols], flat_right[rows], attention, negative_slope),
                          -jnp.inf)                          # [B*E, H]
  self_scores = attention_scores(flat_left, flat_right, attention,
                                 negative_slope)             # [B*N, H]
  top = jnp.maximum(jax.ops.segment_max(edge_scores, rows,
                                        num_segments=batch * nodes),
                    self_scores)
  edge_weights = jnp.where(real[:, None], jnp.exp(edge_scores - top[rows]),
                           0.0)
  self_weights = jnp.exp(self_scores - top)
  total = self_weights + jax.ops.segment_sum(edge_weights, rows,
                                             num_segments=batch * nodes)
  out = self_weights[..., None] * flat_left + jax.ops.segment_sum(
      edge_weights[..., None] * flat_left[cols], rows,
      num_segments=batch * nodes)
  return (out / total[..., None]).reshape(batch, nodes, heads, width)


class DenseGATv2Conv(nn.Module):
  """GATv2 (Brody et al. 2022, eqs. 7-8): per head h,
  e_ij = a_h . LeakyReLU(W_l x_j + b_l + W_r x_i + b_r), alpha_ij the
  softmax of e_ij over j in N(i) and i itself (self-loops added, as PyG's
  GATv2Conv), out_i = mean over heads of sum_j alpha_ij (W_l x_j + b_l),
  plus a bias. N(i): the j with A_ij != 0, so a pooled (soft, dense)
  level attends to every cluster it is linked to; edge weights are not
  used. Runs on a dense [B,N,N] adjacency ([B,N,N,heads,features]
  scores) or an EdgeList ([B,E,heads,features]).

  Attributes:
    features: output width (each head's width).
    mask_output: zero padded nodes' outputs.
    heads: attention heads, averaged (PyG's `concat=False`).
    negative_slope: of the LeakyReLU.
  """
  features: int
  mask_output: bool = True
  heads: int = 1
  negative_slope: float = 0.2

  @nn.compact
  def __call__(self, x: jax.Array, adj: Adjacency, node_mask: jax.Array
               ) -> jax.Array:
    """x [B,N,F], adj [B,N,N] or EdgeList, node_mask [B,N] -> [B,N,H']."""
    batch, nodes, _ = x.shape
    shape = (batch, nodes, self.heads, self.features)
    left = nn.Dense(self.heads * self.features, name="lin_l")(x).reshape(shape)
    right = nn.Dense(self.heads * self.features,
                     name="lin_r")(x).reshape(shape)
    attention = self.param("att", nn.initializers.glorot_uniform(),
                           (self.heads, self.features), jnp.float32)
    if isinstance(adj, EdgeList):
      out = edge_list_attention(left, right, attention, adj,
                                self.negative_slope)
    else:
      out = dense_attention(left, right, attention, adj, node_mask,
                            self.negative_slope)
    out = jnp.mean(out, axis=2) + self.param(
        "bias", nn.initializers.zeros, (self.features,), jnp.float32)
    return mask_nodes(out, node_mask, self.mask_output)


# checked in tests/test_extensions.py, not at import
register_conv("gatv2", DenseGATv2Conv, check=False)
