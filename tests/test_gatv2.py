"""GATv2 (models/gatv2.py), written once, against a float64 NumPy
reference of Brody et al.'s definition, on dense and edge-list batches, in
linen and through the derived NNX face."""

import jax
import numpy as np
import pytest
from flax import nnx as fnnx

import diffpool_jax as dp
from diffpool_jax import nnx
from diffpool_jax.graphs import sparse_batch
from tests.helpers import random_graph

SIZES = (6, 9, 1, 4)
NODES = 10


def leaky_relu(v, slope=0.2):
  return np.where(v > 0, v, slope * v)


def gatv2_reference(p, x, a, heads):
  """out_i = bias + mean_h sum_j alpha^h_ij (W_l x_j + b_l), alpha^h_ij the
  softmax over j in {j != i: A_ij != 0} and i of
  a_h . LeakyReLU(W_l x_j + b_l + W_r x_i + b_r), node by node."""
  n = x.shape[0]
  left = (x @ p["lin_l"]["kernel"] + p["lin_l"]["bias"]).reshape(n, heads, -1)
  right = (x @ p["lin_r"]["kernel"] + p["lin_r"]["bias"]).reshape(n, heads,
                                                                  -1)
  out = np.zeros((n, left.shape[-1]))
  for i in range(n):
    neighbours = [j for j in range(n) if j != i and a[i, j] != 0] + [i]
    for h in range(heads):
      scores = np.array([p["att"][h] @ leaky_relu(left[j, h] + right[i, h])
                         for j in neighbours])
      alpha = np.exp(scores - scores.max())
      alpha /= alpha.sum()
      out[i] += sum(w * left[j, h] for w, j in zip(alpha, neighbours)) / heads
  return out + p["bias"]


def batches(rng):
  """The same random graphs (with a self-loop and weights != 1) as a dense
  batch and as an edge-list batch."""
  graphs = [random_graph(rng, n, 5, edge_prob=0.4) for n in SIZES]
  edges = [np.concatenate([e, [[0, 0]]]) for e, _ in graphs]
  weights = [rng.uniform(0.5, 2.0, len(e)).astype(np.float32) for e in edges]
  features = [f for _, f in graphs]
  labels = [0] * len(SIZES)
  dense = dp.dense_batch(edges, features, labels, NODES,
                         edge_weights=weights)
  sparse = sparse_batch(edges, features, labels, NODES,
                        max(len(e) for e in edges), edge_weights=weights)
  return dense, sparse


@pytest.mark.parametrize("heads", [1, 3])
def test_linen_gatv2_matches_the_reference_dense_and_on_edges(heads):
  dense, sparse = batches(np.random.default_rng(0))
  layer = dp.DenseGATv2Conv(4, heads=heads)
  params = layer.init(jax.random.key(1), dense.x, dense.adj, dense.node_mask)
  params = jax.tree_util.tree_map(lambda v: v + 0.2, params)  # biases != 0
  p = jax.tree_util.tree_map(lambda v: np.asarray(v, np.float64),
                             params["params"])
  for batch in (dense, sparse):
    out = np.asarray(layer.apply(params, batch.x, batch.adj,
                                 batch.node_mask))
    for i, n in enumerate(dense.n_node):
      want = gatv2_reference(p, dense.x[i, :n].astype(np.float64),
                             dense.adj[i, :n, :n], heads)
      np.testing.assert_allclose(out[i, :n], want, rtol=1e-5, atol=1e-5)
      assert np.all(out[i, n:] == 0)


def test_nnx_gatv2_is_the_same_layer():
  dense, sparse = batches(np.random.default_rng(1))
  layer = nnx.Conv("gatv2", 5, 4, fnnx.Rngs(0))
  p = jax.tree_util.tree_map(lambda v: np.asarray(v, np.float64),
                             fnnx.to_pure_dict(fnnx.state(layer, fnnx.Param)))
  for batch in (dense, sparse):
    out = np.asarray(layer(batch.x, batch.adj, batch.node_mask))
    for i, n in enumerate(dense.n_node):
      want = gatv2_reference(p, dense.x[i, :n].astype(np.float64),
                             dense.adj[i, :n, :n], 1)
      np.testing.assert_allclose(out[i, :n], want, rtol=1e-5, atol=1e-5)


def gatv2_config():
  """The paper preset with GATv2 convolutions, small widths."""
  return dp.preset("paper", conv="gatv2", hidden_dim=8, embed_dim=8,
                   num_layers=2, mlp_hidden=(8,))


def test_gatv2_classifiers_in_both_apis_give_the_same_logits():
  dense, _ = batches(np.random.default_rng(2))
  config = gatv2_config()
  linen = dp.DiffPool(config, num_classes=3, max_nodes=NODES)
  variables = linen.init(jax.random.key(0), dense.x, dense.adj,
                         dense.node_mask)
  model = nnx.DiffPool(config, 5, 3, NODES, rngs=fnnx.Rngs(3))
  nnx.load_linen_variables(model, variables)
  want, _ = linen.apply(variables, dense.x, dense.adj, dense.node_mask)
  got, _ = model(dense.x, dense.adj, dense.node_mask)
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
  assert np.all(np.isfinite(got))


def test_padded_nodes_holding_nan_change_nothing():
  dense, sparse = batches(np.random.default_rng(3))
  model = dp.DiffPool(gatv2_config(), num_classes=3, max_nodes=NODES)
  variables = model.init(jax.random.key(0), dense.x, dense.adj,
                         dense.node_mask)

  def loss(variables, x, adj):
    return model.apply(variables, x, adj, dense.node_mask)[0].sum()

  want, want_grad = jax.value_and_grad(loss)(variables, dense.x, dense.adj)
  padded = ~dense.node_mask
  x = np.where(padded[..., None], np.nan, dense.x)
  adj = np.where(padded[:, :, None] | padded[:, None, :], np.inf, dense.adj)
  got, got_grad = jax.value_and_grad(loss)(variables, x, adj)
  np.testing.assert_allclose(got, want, rtol=1e-6)
  for g, w in zip(jax.tree_util.tree_leaves(got_grad),
                  jax.tree_util.tree_leaves(want_grad)):
    np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-6)
