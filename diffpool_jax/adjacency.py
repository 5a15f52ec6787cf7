"""Adjacency of a padded batch, dense [B,N,N] or as an edge list.

Every graph operation the layers and the pooling need goes through the
functions here, so the same modules (and the same parameters) run on either
form. The edge list keeps node tensors in the padded [B,N,F] layout but
never forms an N x N matrix: memory is O(B N F + B E) instead of
O(B N^2).
"""

from __future__ import annotations

from typing import Optional, Union

import flax.struct
import jax
import jax.numpy as jnp


@flax.struct.dataclass
class EdgeList:
  """Sparse adjacency of B graphs padded to N nodes, E entries per graph.

  Entry e of graph b is A[b, senders[b, e], receivers[b, e]] =
  weights[b, e]; padding entries have weight 0 (their indices are ignored).
  Real entries must be unique (coalesced), as the TU loader makes them.
  Gathering graphs is indexing axis 0, as for the dense [B, N, N] array.

  Attributes:
    senders, receivers: [B, E] int32 local node ids (row, column).
    weights: [B, E] float entry values.
    num_nodes: N (static).
    features: [B, E, D] features of each entry (a bond's integer codes as
      read, their embedding inside the model; see `gine_messages`), or
      None.
  """
  senders: jax.Array
  receivers: jax.Array
  weights: jax.Array
  num_nodes: int = flax.struct.field(pytree_node=False)
  features: Optional[jax.Array] = None

  @property
  def shape(self):
    batch = self.senders.shape[0]
    return (batch, self.num_nodes, self.num_nodes)

  def flat_indices(self):
    """([B*E] rows, [B*E] cols) as indices into the B*N flattened nodes."""
    offsets = jnp.arange(self.senders.shape[0])[:, None] * self.num_nodes
    return ((jnp.asarray(self.senders) + offsets).reshape(-1),
            (jnp.asarray(self.receivers) + offsets).reshape(-1))


Adjacency = Union[jax.Array, EdgeList]


def matmul(adj: Adjacency, x: jax.Array) -> jax.Array:
  """A @ x: adj [B,N,N] or EdgeList, x [B,N,F] -> [B,N,F]."""
  if not isinstance(adj, EdgeList):
    return adj @ x
  batch, nodes, features = x.shape
  rows, cols = adj.flat_indices()
  flat = jnp.asarray(x).reshape(batch * nodes, features)
  weights = jnp.asarray(adj.weights, x.dtype).reshape(-1, 1)
  messages = flat[cols] * weights
  out = jax.ops.segment_sum(messages, rows, num_segments=batch * nodes)
  return out.reshape(batch, nodes, features)


def gine_messages(adj: EdgeList, x: jax.Array, edge: jax.Array
                  ) -> jax.Array:
  """sum over entries (i, j) of A_ij relu(x_j + edge_ij), at each row i:
  GINE's edge-aware aggregation (Hu et al., "Strategies for Pre-training
  Graph Neural Networks", ICLR 2020). x [B,N,F], edge [B,E,F] ->
  [B,N,F]; padding entries (weight 0) add nothing."""
  batch, nodes, features = x.shape
  rows, cols = adj.flat_indices()
  flat = jnp.asarray(x).reshape(batch * nodes, features)
  messages = jax.nn.relu(flat[cols] + edge.reshape(-1, features))
  weights = jnp.asarray(adj.weights, x.dtype).reshape(-1, 1)
  out = jax.ops.segment_sum(messages * weights, rows,
                            num_segments=batch * nodes)
  return out.reshape(batch, nodes, features)


def row_sums(adj: Adjacency) -> jax.Array:
  """[B, N, 1] weighted degrees sum_j A_ij."""
  if not isinstance(adj, EdgeList):
    return jnp.sum(adj, axis=-1, keepdims=True)
  return _node_sums(adj, adj.weights)


def _node_sums(adj: EdgeList, values: jax.Array) -> jax.Array:
  """[B, N, 1] sums of per-entry values [B, E] at each entry's row."""
  batch = adj.senders.shape[0]
  rows, _ = adj.flat_indices()
  total = jax.ops.segment_sum(jnp.asarray(values).reshape(-1), rows,
                              num_segments=batch * adj.num_nodes)
  return total.reshape(batch, adj.num_nodes, 1)


def diagonal(adj: Adjacency) -> jax.Array:
  """[B, N, 1] self-loop weights A_ii."""
  if not isinstance(adj, EdgeList):
    return jnp.diagonal(adj, axis1=-2, axis2=-1)[..., None]
  loops = jnp.asarray(adj.senders) == jnp.asarray(adj.receivers)
  return _node_sums(adj, jnp.where(loops, adj.weights, 0.0))


def squared_norms(adj: Adjacency) -> jax.Array:
  """[B] ||A_b||_F^2 per graph."""
  if not isinstance(adj, EdgeList):
    return jnp.sum(adj * adj, axis=(1, 2))
  return jnp.sum(jnp.square(adj.weights), axis=1)


def mask_adjacency(adj: Adjacency, node_mask: jax.Array) -> Adjacency:
  """adj with every entry that touches a padded node (node_mask [B,N]
  False) set to exactly 0, selected (not multiplied), so that NaN or inf
  there cannot leak. An EdgeList keeps its indices; its entries between
  real nodes keep their weights."""
  if not isinstance(adj, EdgeList):
    pair = node_mask[:, :, None] & node_mask[:, None, :]
    return jnp.where(pair, adj, jnp.zeros((), adj.dtype))
  senders, receivers = jnp.asarray(adj.senders), jnp.asarray(adj.receivers)
  real = (jnp.take_along_axis(node_mask, senders, axis=1, mode="clip")
          & jnp.take_along_axis(node_mask, receivers, axis=1, mode="clip"))
  weights = jnp.asarray(adj.weights)
  return adj.replace(weights=jnp.where(real, weights,
                                       jnp.zeros((), weights.dtype)))


def to_dense(adj: Adjacency) -> jax.Array:
  """The [B, N, N] matrix (for checks and small graphs only)."""
  if not isinstance(adj, EdgeList):
    return adj
  batch = adj.senders.shape[0]
  graph = jnp.broadcast_to(jnp.arange(batch)[:, None], adj.senders.shape)
  dense = jnp.zeros(adj.shape, adj.weights.dtype)
  return dense.at[graph, adj.senders, adj.receivers].add(adj.weights)
