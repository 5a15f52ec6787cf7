"""Padded dense graph batches and conversion from/to NumPy graphs and jraph.

Host side (NumPy) builders produce a `GraphBatch` of NumPy arrays; pass it
through `jax.device_put` (or straight into a jitted function) to move it to
the device. Every graph of a batch is padded to the same static node count N,
and a batch may hold padding graphs (zero nodes) to reach a static batch size.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional, Sequence

import flax.struct
import numpy as np

from diffpool_jax.adjacency import EdgeList
from diffpool_jax.errors import check_dim, check_rank

if TYPE_CHECKING:                 # jraph is optional: only the conversions
  import jraph                    # below need it, imported when called


@flax.struct.dataclass
class GraphBatch:
  """B graphs, each padded to N nodes; a pytree usable inside jit and vmap.

  Attributes:
    x: [B, N, F] float node features, zero on padded nodes.
    adj: [B, N, N] float adjacency, zero on padded rows and columns, or an
      `EdgeList` (sparse: E entries per graph, no N x N matrix).
    node_mask: [B, N] bool, True for real nodes (always a prefix of N).
    labels: [B] int32 graph labels (0 for padding graphs).
    n_node: [B] int32 real node counts; 0 marks a padding graph.
    targets: [B, T] float32 targets of binary or regression tasks (NaN:
      missing; see tasks.py), or None for classification.
  """
  x: np.ndarray
  adj: np.ndarray
  node_mask: np.ndarray
  labels: np.ndarray
  n_node: np.ndarray
  targets: Optional[np.ndarray] = None

  @property
  def graph_mask(self):
    """[B] bool, True for real (non-padding) graphs."""
    return self.n_node > 0


def _checked_graphs(edges, features, labels, num_nodes, batch_size,
                    where: str):
  """Validates per-graph inputs; returns (edge arrays, B, F)."""
  num_graphs = len(features)
  if len(edges) != num_graphs or len(labels) != num_graphs:
    raise ValueError(
        f"{where}: got {len(edges)} edge arrays, {num_graphs} feature "
        f"arrays and {len(labels)} labels; they must be equal")
  batch_size = num_graphs if batch_size is None else batch_size
  if batch_size < num_graphs:
    raise ValueError(f"{where}: batch_size={batch_size} is smaller than "
                     f"the {num_graphs} graphs given")
  if batch_size == 0:
    raise ValueError(f"{where}: no graphs and batch_size 0")
  num_features = np.asarray(features[0]).shape[1] if num_graphs else 1
  edge_arrays = []
  for i in range(num_graphs):
    feats = np.asarray(features[i])
    check_rank(feats, 2, f"features[{i}]", "[n_i,F]", where)
    check_dim(feats, 1, num_features, f"features[{i}]",
              "the feature width of features[0]", where)
    n = feats.shape[0]
    if n > num_nodes:
      raise ValueError(f"{where}: graph {i} has {n} nodes, more than "
                       f"num_nodes={num_nodes}")
    edge_array = np.asarray(edges[i], dtype=np.int64).reshape(-1, 2)
    if edge_array.size and (edge_array.min() < 0 or edge_array.max() >= n):
      raise ValueError(f"{where}: edges[{i}] has a node id outside "
                       f"0..{n - 1}")
    edge_arrays.append(edge_array)
  return edge_arrays, batch_size, num_features


def _padded_nodes(features, labels, num_nodes, batch_size, num_features):
  """x [B,N,F], node_mask [B,N], labels [B], n_node [B] (NumPy)."""
  x = np.zeros((batch_size, num_nodes, num_features), np.float32)
  n_node = np.zeros((batch_size,), np.int32)
  label_array = np.zeros((batch_size,), np.int32)
  for i, feats in enumerate(features):
    n = len(feats)
    x[i, :n] = feats
    n_node[i] = n
    label_array[i] = labels[i]
  node_mask = np.arange(num_nodes)[None, :] < n_node[:, None]
  return x, node_mask, label_array, n_node


def dense_batch(edges: Sequence[np.ndarray],
                features: Sequence[np.ndarray],
                labels: Sequence[int],
                num_nodes: int,
                batch_size: Optional[int] = None,
                edge_weights: Optional[Sequence[np.ndarray]] = None,
                ) -> GraphBatch:
  """Pads NumPy graphs into one dense `GraphBatch` (host side).

  Args:
    edges: per graph, an [E_i, 2] int array of directed (row, col) entries
      with 0-based node ids local to the graph. List both directions for an
      undirected edge. Repeated entries are set once, not summed.
    features: per graph, an [n_i, F] float array; n_i is the node count, so
      isolated nodes are kept.
    labels: per graph, an int label.
    num_nodes: N, the static padded node count; every n_i must be <= N.
    batch_size: B >= len(edges); the rest is filled with padding graphs.
      Defaults to len(edges).
    edge_weights: optional per graph [E_i] float weights (default 1.0).

  Returns:
    A `GraphBatch` of NumPy arrays: x [B,N,F] float32, adj [B,N,N] float32,
    node_mask [B,N] bool, labels [B] int32, n_node [B] int32.
  """
  edge_arrays, batch_size, num_features = _checked_graphs(
      edges, features, labels, num_nodes, batch_size, "dense_batch")
  x, node_mask, label_array, n_node = _padded_nodes(
      features, labels, num_nodes, batch_size, num_features)
  adj = np.zeros((batch_size, num_nodes, num_nodes), np.float32)
  for i, edge_array in enumerate(edge_arrays):
    weights = (np.ones(len(edge_array), np.float32) if edge_weights is None
               else np.asarray(edge_weights[i], np.float32))
    adj[i, edge_array[:, 0], edge_array[:, 1]] = weights
  return GraphBatch(x=x, adj=adj, node_mask=node_mask, labels=label_array,
                    n_node=n_node)


def sparse_batch(edges: Sequence[np.ndarray],
                 features: Sequence[np.ndarray],
                 labels: Sequence[int],
                 num_nodes: int,
                 num_edges: Optional[int] = None,
                 batch_size: Optional[int] = None,
                 edge_weights: Optional[Sequence[np.ndarray]] = None,
                 edge_features: Optional[Sequence[np.ndarray]] = None,
                 ) -> GraphBatch:
  """Like `dense_batch`, with the adjacency as an `EdgeList` (host side).

  Args:
    edges, features, labels, num_nodes, batch_size, edge_weights: as in
      `dense_batch`; repeated entries must already be coalesced.
    num_edges: E, the static entry budget per graph (default: the most
      entries of any graph given); padding entries get weight 0.
    edge_features: per graph [E_i, D] features of its entries (EdgeList
      features [B, E, D], zero on padding entries), or None.

  Returns:
    A `GraphBatch` whose adj is an `EdgeList` with [B, E] NumPy arrays.
  """
  edge_arrays, batch_size, num_features = _checked_graphs(
      edges, features, labels, num_nodes, batch_size, "sparse_batch")
  x, node_mask, label_array, n_node = _padded_nodes(
      features, labels, num_nodes, batch_size, num_features)
  most = max((len(e) for e in edge_arrays), default=0)
  num_edges = max(most, 1) if num_edges is None else num_edges
  if num_edges < most:
    raise ValueError(f"sparse_batch: num_edges={num_edges} is smaller than "
                     f"the {most} entries of the largest graph")
  senders = np.zeros((batch_size, num_edges), np.int32)
  receivers = np.zeros((batch_size, num_edges), np.int32)
  weights = np.zeros((batch_size, num_edges), np.float32)
  for i, edge_array in enumerate(edge_arrays):
    count = len(edge_array)
    senders[i, :count] = edge_array[:, 0]
    receivers[i, :count] = edge_array[:, 1]
    weights[i, :count] = (1.0 if edge_weights is None
                          else np.asarray(edge_weights[i], np.float32))
  entry_features = None
  if edge_features is not None:
    width = max((np.shape(f)[1] for f in edge_features), default=1)
    entry_features = np.zeros((batch_size, num_edges, width), np.float32)
    for i, values in enumerate(edge_features):
      if len(values) != len(edge_arrays[i]):
        raise ValueError(f"sparse_batch: edge_features[{i}] has "
                         f"{len(values)} rows for {len(edge_arrays[i])} "
                         "entries")
      entry_features[i, :len(values)] = values
  adj = EdgeList(senders, receivers, weights, num_nodes=num_nodes,
                 features=entry_features)
  return GraphBatch(x=x, adj=adj, node_mask=node_mask, labels=label_array,
                    n_node=n_node)


def to_graphs_tuple(batch: GraphBatch) -> "jraph.GraphsTuple":
  """Converts a padded batch to a `jraph.GraphsTuple` (host side, NumPy).

  Padding graphs become zero-node graphs. Edges are the non-zero adjacency
  entries (row-major for a dense batch, in stored order for an EdgeList),
  `edges` holds their weights [E] and `globals` the graph labels [B].
  Needs the optional package jraph.
  """
  import jraph
  x = np.asarray(batch.x)
  node_mask = np.asarray(batch.node_mask)
  n_node = np.asarray(batch.n_node)
  offsets = np.concatenate([[0], np.cumsum(n_node)[:-1]])
  if isinstance(batch.adj, EdgeList):
    weights = np.asarray(batch.adj.weights)
    graph_ids, slots = np.nonzero(weights)
    rows = np.asarray(batch.adj.senders)[graph_ids, slots]
    cols = np.asarray(batch.adj.receivers)[graph_ids, slots]
    values = weights[graph_ids, slots]
  else:
    adj = np.asarray(batch.adj)
    graph_ids, rows, cols = np.nonzero(adj)
    values = adj[graph_ids, rows, cols]
  return jraph.GraphsTuple(
      nodes=x[node_mask],
      edges=values,
      senders=(rows + offsets[graph_ids]).astype(np.int32),
      receivers=(cols + offsets[graph_ids]).astype(np.int32),
      n_node=n_node.astype(np.int32),
      n_edge=np.bincount(graph_ids, minlength=len(n_node)).astype(np.int32),
      globals=np.asarray(batch.labels).astype(np.int32))


def from_graphs_tuple(graph: "jraph.GraphsTuple", num_nodes: int,
                      num_edges: Optional[int] = None, padded: bool = False,
                      graph_mask: Optional[np.ndarray] = None) -> GraphBatch:
  """Converts a `jraph.GraphsTuple` to a batch padded to `num_nodes`.

  With `num_edges` the adjacency is an `EdgeList` of that many entries per
  graph (see `sparse_batch`), else a dense [B, N, N] array. `edges` may be
  None (weights 1) or [E] / [E, 1] weights; `globals` may be None (labels
  0) or [G] / [G, 1] integer labels. Host side (NumPy).

  A tuple from `jraph.pad_with_graphs` holds padding graphs that jraph
  tells apart only by position: pass `padded=True` (its graphs are then
  masked as `jraph.get_graph_padding_mask` says), or `graph_mask` [G]
  bool. A graph masked out becomes a padding graph of the batch (no nodes,
  label 0), so it enters no loss or metric; its nodes need not fit
  `num_nodes`. By default every graph is real.
  """
  n_node = np.asarray(graph.n_node)
  if padded and graph_mask is not None:
    raise ValueError("from_graphs_tuple: give padded=True or graph_mask, "
                     "not both")
  if padded:
    import jraph
    graph_mask = jraph.get_graph_padding_mask(graph)
  real = (np.ones(len(n_node), bool) if graph_mask is None
          else np.asarray(graph_mask))
  if real.shape != n_node.shape or real.dtype != bool:
    raise ValueError(f"from_graphs_tuple: argument 'graph_mask' must be a "
                     f"bool array of shape {n_node.shape} (one per graph); "
                     f"got {real.dtype} {real.shape}")
  n_edge = np.asarray(graph.n_edge)
  nodes = np.asarray(graph.nodes)
  if nodes.ndim == 1:
    nodes = nodes[:, None]
  node_offsets = np.concatenate([[0], np.cumsum(n_node)])
  edge_offsets = np.concatenate([[0], np.cumsum(n_edge)])
  senders = np.asarray(graph.senders)
  receivers = np.asarray(graph.receivers)
  weights = (np.ones(len(senders), np.float32) if graph.edges is None
             else np.asarray(graph.edges, np.float32).reshape(len(senders)))
  labels = (np.zeros(len(n_node), np.int32) if graph.globals is None
            else np.asarray(graph.globals).reshape(len(n_node)))
  labels = np.where(real, labels, 0)
  edges, features, edge_weights = [], [], []
  for g in range(len(n_node)):
    node_slice = slice(node_offsets[g], node_offsets[g + 1])
    edge_slice = slice(edge_offsets[g], edge_offsets[g + 1])
    if not real[g]:
      node_slice = edge_slice = slice(0, 0)
    local = np.stack([senders[edge_slice], receivers[edge_slice]], axis=1)
    edges.append(local - node_offsets[g])
    features.append(nodes[node_slice])
    edge_weights.append(weights[edge_slice])
  if num_edges is not None:
    return sparse_batch(edges, features, labels, num_nodes, num_edges,
                        edge_weights=edge_weights)
  return dense_batch(edges, features, labels, num_nodes,
                     edge_weights=edge_weights)
