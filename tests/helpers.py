"""Random padded graph batches shared by the tests."""

import numpy as np

from diffpool_jax.graphs import GraphBatch, dense_batch


def random_graph(rng, num_nodes, num_features, edge_prob=0.3):
  """One random undirected graph: ([E,2] edges, [n,F] features)."""
  upper = np.triu(rng.random((num_nodes, num_nodes)) < edge_prob, 1)
  rows, cols = np.nonzero(upper | upper.T)
  features = rng.normal(size=(num_nodes, num_features)).astype(np.float32)
  return np.stack([rows, cols], 1), features


def random_batch(rng, sizes, num_nodes, num_features=5, num_classes=3,
                 edge_prob=0.3) -> GraphBatch:
  """Random graphs with the given node counts, padded to `num_nodes`."""
  graphs = [random_graph(rng, n, num_features, edge_prob) for n in sizes]
  labels = rng.integers(0, num_classes, size=len(sizes))
  return dense_batch([g[0] for g in graphs], [g[1] for g in graphs], labels,
                     num_nodes)


def repad(batch: GraphBatch, num_nodes: int) -> GraphBatch:
  """The same graphs padded to a different node count."""
  n = batch.x.shape[1]
  grow = num_nodes - n
  return GraphBatch(
      x=np.pad(batch.x, ((0, 0), (0, grow), (0, 0))),
      adj=np.pad(batch.adj, ((0, 0), (0, grow), (0, grow))),
      node_mask=np.pad(batch.node_mask, ((0, 0), (0, grow))),
      labels=batch.labels, n_node=batch.n_node)


def write_gzipped(folder, tables, suffix=".csv.gz"):
  """Each {stem: text} of `tables` gzipped into folder/stem + suffix (a
  text of None is skipped)."""
  import gzip
  for stem, text in tables.items():
    if text is None:
      continue
    path = folder / f"{stem}{suffix}"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(text.encode()))
