"""Size buckets: pad each graph to its bucket's size, not the largest graph.

A few static padded sizes are chosen from the node-count distribution so
that each compiles once; the choice minimises the total cost of the padded
graphs (by default the padded adjacency entries N^2; `padded_graph_cost`
models a DiffPool step) by dynamic programming over the candidate sizes:
the sizes of a fixed ladder (`size_ladder`), so that runs over different
data sets meet in the persistent compilation cache, or the exact node
counts of the data set.
"""

from __future__ import annotations

from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from diffpool_jax.graphs import GraphBatch, dense_batch, sparse_batch

DEFAULT_MAX_BUCKETS = 5
MAX_CANDIDATES = 2048
# The ladder of padded sizes: multiples of LADDER_STEP up to LADDER_LINEAR,
# then steps of about LADDER_RATIO, rounded up to a multiple of LADDER_STEP
# (8, 16, ..., 128, 144, 168, 192, 216, 248, 280, 320, 360, 408, 464, 528,
# 600, 680, ...): at most 12.5 % more nodes than the largest graph of a
# bucket beyond 128 (1.25x steps cost the main job's 87-node graphs 104
# slots and 25 % more training time).
LADDER_STEP = 8
LADDER_LINEAR = 128
LADDER_RATIO = 1.125
# Cost of one edge-list entry (gather, scale, segment_sum, and their
# gradients) in units of one entry of a dense [N,N] x [N,F] matmul, measured
# on a 2-core CPU with experiments/benchmarks/scale.py (15 for small entry
# budgets, up to 40 for budgets past the cache): a bucket uses the edge list
# when its N^2 is larger than this many times its entry slots.
SPARSE_ENTRY_COST = 24


def size_ladder(largest: int) -> np.ndarray:
  """[L] the ladder's sizes, ascending, up to the first that holds
  `largest` nodes (see LADDER_STEP)."""
  sizes = [LADDER_STEP]
  while sizes[-1] < largest:
    n = sizes[-1]
    grown = n + LADDER_STEP if n < LADDER_LINEAR else int(n * LADDER_RATIO)
    sizes.append(-(-grown // LADDER_STEP) * LADDER_STEP)
  return np.array(sizes, np.int64)


def on_ladder(counts: np.ndarray) -> np.ndarray:
  """Each count rounded up to the ladder's next size."""
  counts = np.asarray(counts, np.int64)
  ladder = size_ladder(int(counts.max(initial=1)))
  return ladder[np.searchsorted(ladder, counts, side="left")]


def choose_buckets(n_node: np.ndarray, max_buckets: int = DEFAULT_MAX_BUCKETS,
                   cost: Optional[Callable[[np.ndarray], np.ndarray]] = None,
                   min_gain: float = 0.0, ladder: bool = False) -> np.ndarray:
  """Bucket sizes (ascending, the last holds max(n_node)) that minimise the
  total cost sum_i cost(bucket(n_i)) of the padded graphs.

  Every bucket is one more branch to compile; with `min_gain`, buckets are
  added (up to max_buckets) only while one more cuts the least total cost
  by at least that fraction.

  Args:
    n_node: [G] node counts.
    max_buckets: at most this many sizes.
    cost: [U] padded sizes -> [U] cost of one graph padded to each (must
      grow with the size); default N^2, the padded adjacency entries.
    min_gain: in [0, 1): the saving a further bucket must bring.
    ladder: sizes from `size_ladder` (shared across data sets) instead of
      the data set's own node counts (the last is then max(n_node)).

  Returns:
    [K] int bucket sizes, K <= max_buckets.
  """
  if not 0 <= min_gain < 1:
    raise ValueError(f"min_gain={min_gain}; must be in [0, 1)")
  options = bucket_options(n_node, max_buckets, cost, ladder)
  return options[buckets_worth_compiling(options, min_gain)][0]


def buckets_worth_compiling(options: Sequence[Tuple[np.ndarray, float]],
                            min_gain: float) -> int:
  """The index into `bucket_options`'s list of the most buckets added
  while each one more cut the least total cost by at least `min_gain`."""
  k = 1
  while k < len(options) and options[k][1] < (1 - min_gain) * options[k - 1][1]:
    k += 1
  return k - 1


def candidate_sizes(n_node: np.ndarray, ladder: bool
                    ) -> Tuple[np.ndarray, np.ndarray]:
  """The padded sizes a bucket may take and how many graphs each holds
  alone ([U] ascending, [U]): the ladder's sizes, or the distinct node
  counts (on a coarser grid when there are very many, which keeps the
  U x U table of `bucket_options` small)."""
  n_node = np.asarray(n_node, np.int64)
  if ladder:
    return np.unique(on_ladder(n_node), return_counts=True)
  step = max(1, -(-int(n_node.max()) // MAX_CANDIDATES))
  sizes, counts = np.unique(-(-n_node // step) * step, return_counts=True)
  return np.minimum(sizes, n_node.max()), counts


def bucket_options(n_node: np.ndarray, max_buckets: int = DEFAULT_MAX_BUCKETS,
                   cost: Optional[Callable[[np.ndarray], np.ndarray]] = None,
                   ladder: bool = False
                   ) -> List[Tuple[np.ndarray, float]]:
  """For k = 1 .. max_buckets (as far as there are candidate sizes), the k
  bucket sizes of least total cost and that cost (see `choose_buckets`)."""
  if max_buckets < 1:
    raise ValueError(f"max_buckets={max_buckets}; need at least 1")
  sizes, counts = candidate_sizes(n_node, ladder)
  cumulative = np.concatenate([[0], np.cumsum(counts)])
  num_sizes = len(sizes)
  padded = sizes.astype(np.float64)
  per_graph = padded**2 if cost is None else np.asarray(cost(padded),
                                                         np.float64)
  # spans[a, j]: graphs with sizes[a..j]; a bucket ending at sizes[j] and
  # covering them costs per_graph[j] * spans[a, j].
  spans = cumulative[None, 1:] - cumulative[:-1, None]
  valid = np.arange(num_sizes)[:, None] <= np.arange(num_sizes)[None, :]
  # best[k, j]: least cost of covering sizes[:j] with k buckets.
  best = np.full((max_buckets + 1, num_sizes + 1), np.inf)
  best[:, 0] = 0.0
  back = np.zeros((max_buckets + 1, num_sizes + 1), np.int64)
  for k in range(1, max_buckets + 1):
    total = np.where(valid,
                     best[k - 1, :-1, None] + per_graph[None] * spans, np.inf)
    back[k, 1:] = np.argmin(total, axis=0)
    best[k, 1:] = total[back[k, 1:], np.arange(num_sizes)]
  options = []
  for count in range(1, min(max_buckets, num_sizes) + 1):
    ends, j, k = [], num_sizes, count
    while j > 0:
      ends.append(sizes[j - 1])
      j, k = back[k, j], k - 1
    options.append((np.array(sorted(ends), dtype=np.int64),
                    float(best[count, num_sizes])))
  return options


def padded_graph_cost(sizes: np.ndarray, width: int, clusters: np.ndarray,
                      entries_per_node: float, layers: int = 6
                      ) -> np.ndarray:
  """Multiply-adds of one DiffPool level-1 forward pass, per graph padded to
  each size: `layers` convolutions of `width` features per node, pooling
  (S^T Z, S^T S, S^T A S: about 3 width K + 2 K^2 per node) and the
  aggregations over A, dense (N^2) or on the edge list (SPARSE_ENTRY_COST
  per entry, entries_per_node entries per node), whichever is cheaper.

  Args:
    sizes: [U] padded node counts N.
    width: the GNN width F.
    clusters: [U] level-1 cluster slots K of each size (0: no pooling).
    entries_per_node: mean adjacency entries per node of the data set.
    layers: convolutions per graph at level 1 (embedding + assignment).
  """
  sizes = np.asarray(sizes, np.float64)
  clusters = np.asarray(clusters, np.float64)
  per_node = layers * width**2 + 3 * width * clusters + 2 * clusters**2
  entries = np.minimum(sizes**2, SPARSE_ENTRY_COST * entries_per_node * sizes)
  return sizes * per_node + entries * (layers * width + clusters)


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
                     sparse: bool | Sequence[bool] = False,
                     ladder: bool = False,
                     targets: Optional[np.ndarray] = None,
                     edge_features: Optional[Sequence[np.ndarray]] = None
                     ) -> List[GraphBatch]:
  """All graphs of the data set, one padded `GraphBatch` per bucket.

  Graph g sits in bucket `assign_buckets(...)[g]` at the position given by
  `bucket_positions`. With `sparse` (one flag, or one per bucket),
  adjacencies are EdgeLists whose entry budget is the bucket's most entries
  per graph. With `ladder`, a bucket's graph slots are its graph count
  rounded up to the ladder (`on_ladder`; the rest are padding graphs), so
  that data sets of similar sizes give the programs the same shapes.
  With `targets` [G, T] (binary or regression tasks), each batch carries
  its graphs' rows (NaN on padding graphs). With `edge_features` (per
  graph [E_i, D], aligned with `dataset.edges`) every bucket must be an
  edge list, whose entries carry them. Host-side NumPy arrays, ready for
  `jax.device_put`.
  """
  which = assign_buckets(dataset.n_node, buckets)
  flags = ([sparse] * len(buckets) if isinstance(sparse, bool)
           else list(sparse))
  out = []
  for b, size in enumerate(buckets):
    members = np.flatnonzero(which == b)
    build = sparse_batch if flags[b] else dense_batch
    extra = {}
    if edge_features is not None:
      if not flags[b]:
        raise ValueError(f"bucket {b} ({size} nodes) is dense: edge "
                         "features need the edge-list form")
      extra["edge_features"] = [edge_features[g] for g in members]
    batch = build(
        [dataset.edges[g] for g in members],
        [dataset.features[g] for g in members],
        dataset.labels[members], int(size),
        batch_size=int(on_ladder([max(len(members), 1)])[0]) if ladder
        else max(len(members), 1), **extra)
    if targets is not None:
      rows = np.full((len(batch.n_node), targets.shape[1]), np.nan,
                     np.float32)
      rows[:len(members)] = targets[members]
      batch = batch.replace(targets=rows)
    out.append(batch)
  return out


def bucket_entry_slots(edges: Sequence[np.ndarray], n_node: np.ndarray,
                       buckets: np.ndarray) -> np.ndarray:
  """[K] edge-list entry budget of each bucket: the most adjacency entries
  of any of its graphs (what `sparse_batch` pads every graph to)."""
  which = assign_buckets(n_node, buckets)
  slots = np.zeros(len(buckets), np.int64)
  np.maximum.at(slots, which, [len(e) for e in edges])
  return slots


def sparse_by_cost(buckets: np.ndarray, entry_slots: np.ndarray
                   ) -> List[bool]:
  """Per bucket, whether the edge list is cheaper than the dense [N,N]
  form: N^2 > SPARSE_ENTRY_COST * entry slots. Sparse large graphs (D&D)
  go on edges; dense graphs (collaboration or ego networks) stay dense."""
  return [int(n) ** 2 > SPARSE_ENTRY_COST * int(e)
          for n, e in zip(buckets, entry_slots)]


def bucket_positions(n_node: np.ndarray, buckets: np.ndarray) -> np.ndarray:
  """[G] position of each graph inside its bucket's batch."""
  which = assign_buckets(n_node, buckets)
  positions = np.zeros(len(which), np.int64)
  for b in range(len(buckets)):
    members = np.flatnonzero(which == b)
    positions[members] = np.arange(len(members))
  return positions


def waste_table(datasets: Sequence, max_buckets: int = DEFAULT_MAX_BUCKETS,
                ladder: bool = False) -> List[Dict[str, object]]:
  """Padding waste, pad-to-max vs buckets (sizes on the ladder or the
  exact node counts), one row per data set."""
  rows = []
  for dataset in datasets:
    buckets = choose_buckets(dataset.n_node, max_buckets, ladder=ladder)
    to_max = padding_waste(dataset.n_node)
    bucketed = padding_waste(dataset.n_node, buckets)
    rows.append({"dataset": dataset.name, "buckets": buckets.tolist(),
                 "max_node_slots": to_max["node_slots"],
                 "max_adjacency": to_max["adjacency_entries"],
                 "bucket_node_slots": bucketed["node_slots"],
                 "bucket_adjacency": bucketed["adjacency_entries"]})
  return rows
