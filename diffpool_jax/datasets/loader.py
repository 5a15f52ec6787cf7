"""Padded batches of a data set for one's own training loop."""

from __future__ import annotations

from typing import Iterator, Optional, Sequence

import numpy as np

from diffpool_jax.graphs import GraphBatch, dense_batch, sparse_batch


def batches(dataset, ids: Sequence[int], batch_size: int,
            shuffle: bool = False, seed: int = 0,
            num_nodes: Optional[int] = None,
            sparse: bool = False) -> Iterator[GraphBatch]:
  """The graphs `ids` of `dataset` as padded batches (`GraphBatch`) of one shape.

  Every batch has `batch_size` graph slots and `num_nodes` node slots
  (the last one is filled with padding graphs, `graph_mask` False), so one
  compiled step serves them all. Host-side NumPy arrays, ready for
  `jax.device_put`.

  Args:
    dataset: a `GraphDataset` (edges, features, labels per graph).
    ids: graph indices, e.g. a `Fold`'s train ids.
    batch_size: B, graphs per batch (>= 1).
    shuffle: visit `ids` in a random order drawn from `seed` (pass the
      epoch as the seed for a new order every epoch).
    num_nodes: N (default: the data set's largest graph).
    sparse: adjacencies as EdgeLists instead of [B, N, N] matrices.

  Yields:
    `GraphBatch`: x [B, N, F], adj [B, N, N] (or an EdgeList), node_mask
    [B, N], labels [B], n_node [B], graph_mask [B].
  """
  ids = np.asarray(ids, np.int64)
  if ids.ndim != 1:
    raise ValueError(f"batches: ids has shape {ids.shape}; expected a "
                     "list of graph indices")
  if not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
    raise ValueError(f"batches: batch_size={batch_size!r}; must be an "
                     "integer >= 1")
  bad = ids[(ids < 0) | (ids >= len(dataset.n_node))]
  if len(bad):
    raise ValueError(f"batches: graph id {int(bad[0])} is outside the data "
                     f"set's {len(dataset.n_node)} graphs")
  if shuffle:
    ids = np.random.default_rng(seed).permutation(ids)
  num_nodes = int(dataset.n_node.max()) if num_nodes is None else num_nodes
  build = sparse_batch if sparse else dense_batch
  for start in range(0, len(ids), batch_size):
    chosen = ids[start:start + batch_size]
    yield build([dataset.edges[g] for g in chosen],
                [dataset.features[g] for g in chosen],
                dataset.labels[chosen], num_nodes, batch_size=batch_size)
