"""Padded dense batches and the jraph round trip."""

import numpy as np
import pytest

from diffpool_jax.graphs import dense_batch, from_graphs_tuple, to_graphs_tuple
from tests.helpers import random_batch


@pytest.fixture
def jraph():
  """jraph is optional: the round trips skip without it."""
  return pytest.importorskip("jraph")


def test_dense_batch_layout():
  edges = [np.array([[0, 1], [1, 0], [1, 2], [2, 1], [1, 2]]),
           np.zeros((0, 2), int)]
  features = [np.arange(6, dtype=np.float32).reshape(3, 2),
              np.ones((2, 2), np.float32)]          # graph 1: isolated nodes
  batch = dense_batch(edges, features, [2, 0], num_nodes=4, batch_size=3)
  assert batch.x.shape == (3, 4, 2) and batch.adj.shape == (3, 4, 4)
  np.testing.assert_array_equal(batch.n_node, [3, 2, 0])
  np.testing.assert_array_equal(batch.labels, [2, 0, 0])
  np.testing.assert_array_equal(batch.graph_mask, [True, True, False])
  np.testing.assert_array_equal(batch.node_mask[1], [True, True, False,
                                                     False])
  assert batch.adj[0, 1, 2] == 1.0          # a repeated entry is set once
  assert batch.adj[0].sum() == 4.0 and batch.adj[1:].sum() == 0.0
  np.testing.assert_array_equal(batch.x[0, :3], features[0])
  assert np.all(batch.x[0, 3] == 0) and np.all(batch.x[2] == 0)


def test_dense_batch_rejects_bad_input():
  feats = [np.ones((3, 2), np.float32)]
  with pytest.raises(ValueError, match="graph 0 has 3 nodes, more than"):
    dense_batch([np.zeros((0, 2), int)], feats, [0], num_nodes=2)
  with pytest.raises(ValueError, match=r"edges\[0\] has a node id outside"):
    dense_batch([np.array([[0, 3]])], feats, [0], num_nodes=4)
  with pytest.raises(ValueError, match="batch_size=0 is smaller"):
    dense_batch([np.zeros((0, 2), int)], feats, [0], 4, batch_size=0)
  with pytest.raises(ValueError, match=r"'features\[1\]' has shape"):
    dense_batch([np.zeros((0, 2), int)] * 2,
                feats + [np.ones((2, 3), np.float32)], [0, 1], 4)


def test_jraph_round_trip_is_lossless(jraph):
  batch = random_batch(np.random.default_rng(0), (4, 7, 1), 9)
  batch = batch.replace(adj=batch.adj * np.float32(0.5))     # weights kept
  graph = to_graphs_tuple(batch)
  assert isinstance(graph, jraph.GraphsTuple)
  np.testing.assert_array_equal(graph.n_node, [4, 7, 1])
  assert graph.nodes.shape == (12, 5)
  back = from_graphs_tuple(graph, num_nodes=9)
  for name in ("x", "adj", "node_mask", "labels", "n_node"):
    np.testing.assert_array_equal(getattr(back, name), getattr(batch, name))


def test_round_trip_keeps_padding_graphs(jraph):
  batch = dense_batch([np.array([[0, 1], [1, 0]])],
                      [np.ones((2, 3), np.float32)], [1], num_nodes=3,
                      batch_size=2)
  graph = to_graphs_tuple(batch)
  np.testing.assert_array_equal(graph.n_node, [2, 0])
  back = from_graphs_tuple(graph, num_nodes=3)
  np.testing.assert_array_equal(back.adj, batch.adj)
  np.testing.assert_array_equal(back.n_node, [2, 0])


def test_from_jraph_padded_with_pad_with_graphs(jraph):
  """jraph's padding graphs (told apart only by position) become padding
  graphs of the batch with padded=True: no nodes, label 0, graph_mask
  False, so they enter no loss or accuracy; by default every graph is
  real (the dummy graph's 2 padding nodes included)."""
  graph = jraph.GraphsTuple(
      nodes=np.arange(6, dtype=np.float32).reshape(3, 2), edges=None,
      senders=np.array([0, 1]), receivers=np.array([1, 0]),
      n_node=np.array([3]), n_edge=np.array([2]), globals=np.array([2]))
  padded = jraph.pad_with_graphs(graph, n_node=5, n_edge=4, n_graph=3)
  batch = from_graphs_tuple(padded, num_nodes=3, padded=True)
  np.testing.assert_array_equal(batch.n_node, [3, 0, 0])
  np.testing.assert_array_equal(batch.graph_mask, [True, False, False])
  np.testing.assert_array_equal(batch.labels, [2, 0, 0])
  np.testing.assert_array_equal(batch.x[0], graph.nodes)
  assert batch.adj[0, 0, 1] == 1 and batch.adj.sum() == 2
  same = from_graphs_tuple(padded, num_nodes=3, num_edges=4,
                           graph_mask=np.array([True, False, False]))
  np.testing.assert_array_equal(same.n_node, [3, 0, 0])
  everything = from_graphs_tuple(padded, num_nodes=3)
  np.testing.assert_array_equal(everything.n_node, [3, 2, 0])
  with pytest.raises(ValueError, match="not both"):
    from_graphs_tuple(padded, 3, padded=True, graph_mask=np.ones(3, bool))
  with pytest.raises(ValueError, match="'graph_mask' must be a bool array "
                     r"of shape \(3,\)"):
    from_graphs_tuple(padded, 3, graph_mask=np.ones(2, bool))