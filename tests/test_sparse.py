"""The sparse first level (EdgeList adjacency) against the dense path."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import diffpool_jax as dp
from diffpool_jax import adjacency
from diffpool_jax.graphs import from_graphs_tuple, to_graphs_tuple
from tests.helpers import random_graph

SIZES, NUM_NODES = (12, 5, 16, 1), 16


def both_batches(seed, sizes=SIZES, weighted=False, extra_edges=3):
  """The same random graphs as a dense and as a sparse batch."""
  rng = np.random.default_rng(seed)
  graphs = [random_graph(rng, n, 5) for n in sizes]
  edges = [g[0] for g in graphs]
  features = [g[1] for g in graphs]
  weights = ([rng.uniform(0.5, 2.0, len(e)).astype(np.float32) for e in edges]
             if weighted else None)
  labels = rng.integers(0, 3, size=len(sizes))
  dense = dp.dense_batch(edges, features, labels, NUM_NODES,
                         edge_weights=weights)
  most = max(len(e) for e in edges)
  sparse = dp.sparse_batch(edges, features, labels, NUM_NODES,
                           num_edges=most + extra_edges, edge_weights=weights)
  return dense, sparse


def test_edge_list_operations_match_dense():
  dense, sparse = both_batches(0, weighted=True)
  dense.adj[0, 3, 3] = 1.5                    # a self-loop, in both forms
  sparse.adj.senders[0, -1] = sparse.adj.receivers[0, -1] = 3
  sparse.adj.weights[0, -1] = 1.5
  x = jnp.asarray(dense.x)
  for fn in (lambda a: adjacency.matmul(a, x), adjacency.row_sums,
             adjacency.diagonal, adjacency.squared_norms, adjacency.to_dense):
    np.testing.assert_allclose(np.asarray(fn(sparse.adj)),
                               np.asarray(fn(dense.adj)), rtol=1e-6,
                               atol=1e-6)


@pytest.mark.parametrize("conv", ["sage", "gcn", "sum"])
def test_convolutions_match_dense(conv):
  dense, sparse = both_batches(1, weighted=True)
  layer = dp.GNNStack(conv=conv, widths=(7, 4), l2_normalize=True)
  variables = layer.init(jax.random.key(0), dense.x, dense.adj,
                         dense.node_mask, train=False)
  outs = [layer.apply(variables, b.x, b.adj, b.node_mask, train=True,
                      mutable=["batch_stats"])[0] for b in (dense, sparse)]
  np.testing.assert_allclose(np.asarray(outs[1]), np.asarray(outs[0]),
                             rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("form", ["frobenius", "pyg"])
def test_pooling_matches_dense(form):
  dense, sparse = both_batches(2, weighted=True)
  logits = np.random.default_rng(3).normal(size=(4, NUM_NODES, 5)).astype(
      np.float32)

  def losses(batch, s_logits):
    out = dp.dense_diff_pool(batch.x, batch.adj, s_logits, batch.node_mask,
                             link_loss=form)
    return out.link_loss + out.entropy_loss + jnp.sum(out.adj), out

  results = [jax.value_and_grad(losses, argnums=1, has_aux=True)(b, logits)
             for b in (dense, sparse)]
  (_, dense_out), dense_grad = results[0]
  (_, sparse_out), sparse_grad = results[1]
  for a, b in zip(sparse_out, dense_out):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5,
                               atol=1e-6)
  np.testing.assert_allclose(np.asarray(sparse_grad), np.asarray(dense_grad),
                             rtol=1e-5, atol=1e-6)


def test_bce_needs_dense_adjacency():
  _, sparse = both_batches(4)
  with pytest.raises(ValueError, match="'bce' needs S S\\^T entry by entry"):
    dp.dense_diff_pool(sparse.x, sparse.adj, np.zeros((4, NUM_NODES, 3)),
                       sparse.node_mask, link_loss="bce")


def model_outputs(model, variables, batch):
  def loss(params):
    (logits, levels), _ = model.apply(
        {**variables, "params": params}, batch.x, batch.adj, batch.node_mask,
        train=True, mutable=["batch_stats"])
    aux = sum(sum(l.aux.values()) for l in levels)
    return jnp.sum(logits**2) + aux, (logits, levels)
  (_, (logits, levels)), grads = jax.jit(
      jax.value_and_grad(loss, has_aux=True))(variables["params"])
  return logits, [tuple(l.aux.values()) for l in levels], grads


@pytest.mark.parametrize("name, overrides", [
    ("paper", {}), ("pyg", {}), ("flat", {}),
    ("original", {"link_loss": "frobenius"})])
def test_classifier_matches_dense(name, overrides):
  """Logits, losses and gradients of every preset, sparse vs dense.

  Gradients are compared with a mean readout: after ReLU + batch norm a
  channel that is zero on every node of a graph reads out as an exact tie,
  where the max readout's gradient depends on rounding. Their tolerance is
  float32's accuracy here: both forms are within 2e-4 of a float64 run.
  """
  dense, sparse = both_batches(5)
  config = dp.preset(name, **overrides)
  for readout in sorted({config.readout, "mean"}):
    model = dp.DiffPool(config.replace(readout=readout), num_classes=3,
                        max_nodes=32)
    variables = model.init(jax.random.key(0), dense.x, dense.adj,
                           dense.node_mask)
    dense_out = model_outputs(model, variables, dense)
    sparse_out = model_outputs(model, variables, sparse)
    np.testing.assert_allclose(np.asarray(sparse_out[0]),
                               np.asarray(dense_out[0]), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(np.asarray(sparse_out[1]),
                               np.asarray(dense_out[1]), rtol=1e-5, atol=1e-6)
    if readout != "mean":
      continue
    for a, b in zip(jax.tree_util.tree_leaves(sparse_out[2]),
                    jax.tree_util.tree_leaves(dense_out[2])):
      np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4,
                                 atol=5e-4)


def test_original_preset_is_dense_only():
  _, sparse = both_batches(6)
  model = dp.DiffPool(dp.preset("original"), num_classes=3, max_nodes=32)
  with pytest.raises(ValueError, match="needs S S\\^T"):
    model.init(jax.random.key(0), sparse.x, sparse.adj, sparse.node_mask)


def test_sparse_jraph_round_trip():
  jraph = pytest.importorskip("jraph")
  dense, sparse = both_batches(7, weighted=True)
  graph = to_graphs_tuple(sparse)
  assert isinstance(graph, jraph.GraphsTuple)
  np.testing.assert_array_equal(graph.n_node, SIZES)
  back = from_graphs_tuple(graph, NUM_NODES,
                           num_edges=sparse.adj.senders.shape[1])
  np.testing.assert_array_equal(np.asarray(adjacency.to_dense(back.adj)),
                                dense.adj)
  np.testing.assert_array_equal(back.x, dense.x)
  with pytest.raises(ValueError, match="num_edges=1 is smaller"):
    from_graphs_tuple(graph, NUM_NODES, num_edges=1)


def test_wrong_edge_list_shape_is_reported():
  dense, sparse = both_batches(8)
  model = dp.DiffPool(dp.preset("paper"), num_classes=3, max_nodes=32)
  variables = model.init(jax.random.key(0), dense.x, dense.adj,
                         dense.node_mask)
  small = sparse.adj.replace(num_nodes=8)
  with pytest.raises(ValueError, match="'adj' is an EdgeList of shape"):
    model.apply(variables, sparse.x, small, sparse.node_mask)
