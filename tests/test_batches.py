"""dp.batches: one's own loop gets padded batches of one shape that cover
the chosen graphs once, in a seeded order."""

import numpy as np
import pytest

import diffpool_jax as dp
from diffpool_jax.datasets import synthetic_hierarchical


@pytest.fixture(scope="module")
def data():
  return synthetic_hierarchical(num_graphs=23, communities=(2, 3),
                                community_size=(3, 5), seed=1)


def test_batches_have_one_shape_and_cover_the_ids_once(data):
  ids = np.arange(3, 20)                                   # 17 graphs
  out = list(dp.batches(data, ids, batch_size=5))
  assert len(out) == 4
  n = int(data.n_node.max())
  assert {b.x.shape for b in out} == {(5, n, data.num_node_features)}
  assert {b.adj.shape for b in out} == {(5, n, n)}
  assert [int(b.graph_mask.sum()) for b in out] == [5, 5, 5, 2]
  labels = np.concatenate([b.labels[b.graph_mask] for b in out])
  np.testing.assert_array_equal(labels, data.labels[ids])
  first = out[0]
  for slot, g in enumerate(ids[:5]):
    k = data.n_node[g]
    dense = np.zeros((k, k))
    dense[data.edges[g][:, 0], data.edges[g][:, 1]] = 1
    np.testing.assert_array_equal(first.adj[slot, :k, :k], dense)
    np.testing.assert_allclose(first.x[slot, :k], data.features[g])
    assert not first.node_mask[slot, k:].any()


def test_shuffle_is_a_permutation_drawn_from_the_seed(data):
  ids = np.arange(23)
  order = lambda seed: np.concatenate([
      b.labels[b.graph_mask] for b in dp.batches(data, ids, 4, shuffle=True,
                                                 seed=seed)])
  expected = data.labels[np.random.default_rng(7).permutation(ids)]
  np.testing.assert_array_equal(order(7), expected)
  np.testing.assert_array_equal(order(7), order(7))
  assert sorted(order(8)) == sorted(data.labels)


def test_sparse_batches_and_a_given_node_count(data):
  batch = next(dp.batches(data, [0, 1], 2, num_nodes=40, sparse=True))
  assert isinstance(batch.adj, dp.EdgeList) and batch.x.shape[1] == 40


@pytest.mark.parametrize("ids, size, message", [
    ([0, 23], 2, "graph id 23 is outside the data set's 23 graphs"),
    ([-1], 2, "graph id -1 is outside"),
    ([[0, 1]], 2, "ids has shape (1, 2)"),
    ([0], 0, "batch_size=0; must be an integer >= 1"),
])
def test_bad_arguments_are_named(data, ids, size, message):
  with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(
      ")", r"\)")):
    list(dp.batches(data, ids, size))
