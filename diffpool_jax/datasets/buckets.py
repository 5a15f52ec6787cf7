"""Size buckets: pad each graph to its bucket's size, not the largest graph.

A few static padded sizes are chosen from the node-count distribution so
that each compiles once; the choice minimises the padded adjacency entries
(the dense model's cost grows with N^2) by dynamic programming over the
distinct graph sizes.
"""

from __future__ import annotations

from typing import Dict, List, Optional, Sequence

import numpy as np

from diffpool_jax.graphs import GraphBatch, dense_batch, sparse_batch

DEFAULT_MAX_BUCKETS = 5
MAX_CANDIDATES = 2048


def choose_buckets(n_node: np.ndarray, max_buckets: int = DEFAULT_MAX_BUCKETS
                   ) -> np.ndarray:
  """Bucket sizes (ascending, the last is max(n_node)) that minimise the
  total padded adjacency entries sum_i bucket(n_i)^2.

  Args:
    n_node: [G] node counts.
    max_buckets: at most this many sizes.

  Returns:
    [K] int bucket sizes, K <= max_buckets.
  """
  if max_buckets < 1:
    raise ValueError(f"max_buckets={max_buckets}; need at least 1")
  n_node = np.asarray(n_node, np.int64)
  # Candidate sizes: the distinct node counts, on a coarser grid when there
  # are very many (keeps the U x U table small).
  step = max(1, -(-int(n_node.max()) // MAX_CANDIDATES))
  sizes, counts = np.unique(-(-n_node // step) * step, return_counts=True)
  sizes = np.minimum(sizes, n_node.max())
  cumulative = np.concatenate([[0], np.cumsum(counts)])
  num_sizes = len(sizes)
  squared = sizes.astype(np.float64) ** 2
  # spans[a, j]: graphs with sizes[a..j]; a bucket ending at sizes[j] and
  # covering them costs squared[j] * spans[a, j].
  spans = cumulative[None, 1:] - cumulative[:-1, None]
  valid = np.arange(num_sizes)[:, None] <= np.arange(num_sizes)[None, :]
  # best[k, j]: least cost of covering sizes[:j] with k buckets.
  best = np.full((max_buckets + 1, num_sizes + 1), np.inf)
  best[:, 0] = 0.0
  back = np.zeros((max_buckets + 1, num_sizes + 1), np.int64)
  for k in range(1, max_buckets + 1):
    cost = np.where(valid, best[k - 1, :-1, None] + squared[None] * spans,
                    np.inf)
    back[k, 1:] = np.argmin(cost, axis=0)
    best[k, 1:] = cost[back[k, 1:], np.arange(num_sizes)]
  k = int(np.argmin(best[1:, num_sizes])) + 1
  ends, j = [], num_sizes
  while j > 0:
    ends.append(sizes[j - 1])
    j, k = back[k, j], k - 1
  return np.array(sorted(ends), dtype=np.int64)


def assign_buckets(n_node: np.ndarray, buckets: np.ndarray) -> np.ndarray:
  """[G] index of the smallest bucket that holds each graph."""
  n_node = np.asarray(n_node)
  if n_node.max() > buckets[-1]:
    raise ValueError(f"a graph has {n_node.max()} nodes, more than the "
                     f"largest bucket {buckets[-1]}")
  return np.searchsorted(buckets, n_node, side="left")


def padding_waste(n_node: np.ndarray, buckets: Optional[np.ndarray] = None
                  ) -> Dict[str, float]:
  """Padded node slots / real nodes and padded adjacency entries / real
  entries (sum n_i^2), padding each graph to its bucket (default: to the
  largest graph)."""
  n_node = np.asarray(n_node, np.float64)
  if buckets is None:
    padded = np.full_like(n_node, n_node.max())
  else:
    padded = np.asarray(buckets, np.float64)[assign_buckets(n_node, buckets)]
  return {"node_slots": float(padded.sum() / n_node.sum()),
          "adjacency_entries": float((padded**2).sum() / (n_node**2).sum())}


def bucketed_batches(dataset, buckets: np.ndarray,
                     sparse: bool | Sequence[bool] = False
                     ) -> List[GraphBatch]:
  """All graphs of the data set, one padded `GraphBatch` per bucket.

  Graph g sits in bucket `assign_buckets(...)[g]` at the position given by
  `bucket_positions`. With `sparse` (one flag, or one per bucket),
  adjacencies are EdgeLists whose entry budget is the bucket's most entries
  per graph. Host-side NumPy arrays, ready for `jax.device_put`.
  """
  which = assign_buckets(dataset.n_node, buckets)
  flags = ([sparse] * len(buckets) if isinstance(sparse, bool)
           else list(sparse))
  out = []
  for b, size in enumerate(buckets):
    members = np.flatnonzero(which == b)
    build = sparse_batch if flags[b] else dense_batch
    out.append(build(
        [dataset.edges[g] for g in members],
        [dataset.features[g] for g in members],
        dataset.labels[members], int(size),
        batch_size=max(len(members), 1)))
  return out


def bucket_positions(n_node: np.ndarray, buckets: np.ndarray) -> np.ndarray:
  """[G] position of each graph inside its bucket's batch."""
  which = assign_buckets(n_node, buckets)
  positions = np.zeros(len(which), np.int64)
  for b in range(len(buckets)):
    members = np.flatnonzero(which == b)
    positions[members] = np.arange(len(members))
  return positions


def edge_waste(dataset, buckets: np.ndarray) -> Dict[str, float]:
  """Padded entry slots / real entries when each bucket stores its graphs'
  adjacency as an EdgeList with the bucket's largest entry count, and the
  dense alternative (padded N^2 per graph / real entries)."""
  which = assign_buckets(dataset.n_node, buckets)
  entries = np.array([len(e) for e in dataset.edges], np.float64)
  budget = np.zeros(len(buckets))
  np.maximum.at(budget, which, entries)
  dense = np.asarray(buckets, np.float64)[which] ** 2
  return {"sparse_entries": float(budget[which].sum() / entries.sum()),
          "dense_entries": float(dense.sum() / entries.sum())}


def waste_table(datasets: Sequence, max_buckets: int = DEFAULT_MAX_BUCKETS
                ) -> List[Dict[str, object]]:
  """Padding waste, pad-to-max vs buckets, one row per data set."""
  rows = []
  for dataset in datasets:
    buckets = choose_buckets(dataset.n_node, max_buckets)
    to_max = padding_waste(dataset.n_node)
    bucketed = padding_waste(dataset.n_node, buckets)
    rows.append({"dataset": dataset.name, "buckets": buckets.tolist(),
                 "max_node_slots": to_max["node_slots"],
                 "max_adjacency": to_max["adjacency_entries"],
                 "bucket_node_slots": bucketed["node_slots"],
                 "bucket_adjacency": bucketed["adjacency_entries"]})
  return rows
