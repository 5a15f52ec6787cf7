"""The host-side graph data set type shared by the TU and synthetic loaders."""

from __future__ import annotations

import collections.abc
import dataclasses
from typing import Dict, List, Optional, Sequence

import numpy as np


class RowBlocks(collections.abc.Sequence):
  """Per-graph arrays kept as one: item i is the view
  rows[offsets[i]:offsets[i + 1]]. Reads as a list of arrays (len,
  indexing, iteration) without one array object per graph, which for
  hundreds of thousands of graphs costs seconds to build and a few
  hundred bytes a graph.

  Args:
    rows: [R, ...] every graph's rows, graph after graph.
    counts: [G] rows per graph (summing to R).
  """

  def __init__(self, rows: np.ndarray, counts: np.ndarray):
    counts = np.asarray(counts, np.int64)
    if counts.sum() != len(rows) or np.any(counts < 0):
      raise ValueError(f"RowBlocks: {len(rows)} rows, but the per-graph "
                       f"counts sum to {int(counts.sum())}")
    self.rows = rows
    self.counts = counts
    self._offsets = [0] + np.cumsum(counts).tolist()

  def __len__(self) -> int:
    return len(self.counts)

  def __getitem__(self, index):
    if isinstance(index, slice):
      return [self[i] for i in range(*index.indices(len(self)))]
    index = int(index)
    if index < 0:
      index += len(self)
    if not 0 <= index < len(self):
      raise IndexError(f"graph {index} outside 0..{len(self) - 1}")
    return self.rows[self._offsets[index]:self._offsets[index + 1]]

  def __iter__(self):
    offsets = self._offsets
    for start, end in zip(offsets[:-1], offsets[1:]):
      yield self.rows[start:end]


def stacked(blocks: Sequence[np.ndarray]) -> np.ndarray:
  """[R, ...] all rows of per-graph arrays, graph after graph (no copy
  for `RowBlocks`)."""
  if isinstance(blocks, RowBlocks):
    return blocks.rows
  return np.concatenate(blocks)


def block_counts(blocks: Sequence[np.ndarray]) -> np.ndarray:
  """[G] rows per graph of per-graph arrays."""
  if isinstance(blocks, RowBlocks):
    return blocks.counts
  return np.array([len(block) for block in blocks], np.int64)


@dataclasses.dataclass(frozen=True)
class GraphDataset:
  """Graphs as per-graph NumPy arrays (host side), with their features.

  Each per-graph field is a sequence of arrays: a list, or a `RowBlocks`
  (one array cut into per-graph views; what the readers give).

  Attributes:
    name: data set name.
    n_node: [G] int node counts (isolated nodes included).
    edges: per graph an [E_i, 2] int array of directed adjacency entries with
      local 0-based ids; undirected edges appear in both directions, sorted,
      without duplicates.
    labels: [G] int class ids 0..C-1.
    label_values: [C] the original label value of each class id.
    features: per graph an [n_i, F] float32 node feature array.
    feature_kind: how `features` was built (see `node_features`).
    node_labels: per graph [n_i, L] int node labels (the readers give the
      smallest integer type that holds the set's values), or None.
    node_attributes: per graph [n_i, D] float node attributes, or None.
    edge_labels: per graph [E_i, L] int labels aligned with `edges` (as
      node_labels), or None.
    edge_attributes: per graph [E_i, D] float attributes, or None.
    graph_attributes: [G, D] float graph attributes, or None.
    targets: [G, T] float32 graph-property targets as the data set gives
      them (one column per task; NaN where a label is missing), or None
      where `labels` are all there is (TU sets).
    official_split: the data set's own split, {"train", "valid", "test"}
      -> sorted graph indices (OGB's), or None.
    communities: per graph [n_i] true community ids (synthetic sets), or None.
    origin: one line on where the graphs came from (e.g. "parsed ...
      (cache written)" or "read from the processed cache ...").
  """
  name: str
  n_node: np.ndarray
  edges: List[np.ndarray]
  labels: np.ndarray
  label_values: np.ndarray
  features: List[np.ndarray]
  feature_kind: str
  node_labels: Optional[List[np.ndarray]] = None
  node_attributes: Optional[List[np.ndarray]] = None
  edge_labels: Optional[List[np.ndarray]] = None
  edge_attributes: Optional[List[np.ndarray]] = None
  graph_attributes: Optional[np.ndarray] = None
  targets: Optional[np.ndarray] = None
  official_split: Optional[Dict[str, np.ndarray]] = None
  communities: Optional[List[np.ndarray]] = None
  origin: str = ""

  def __len__(self) -> int:
    return len(self.n_node)

  @property
  def num_graphs(self) -> int:
    return len(self.n_node)

  @property
  def num_classes(self) -> int:
    return len(self.label_values)

  @property
  def num_node_features(self) -> int:
    return int(self.features[0].shape[1])

  @property
  def max_nodes(self) -> int:
    return int(self.n_node.max())

  def subset(self, indices: Sequence[int]) -> "GraphDataset":
    """The graphs at `indices`, in that order (class ids unchanged)."""
    indices = np.asarray(indices, dtype=np.int64)
    pick = lambda items: None if items is None else [items[i] for i in indices]
    return dataclasses.replace(
        self, n_node=self.n_node[indices], edges=pick(self.edges),
        labels=self.labels[indices], features=pick(self.features),
        node_labels=pick(self.node_labels),
        node_attributes=pick(self.node_attributes),
        edge_labels=pick(self.edge_labels),
        edge_attributes=pick(self.edge_attributes),
        graph_attributes=(None if self.graph_attributes is None
                          else self.graph_attributes[indices]),
        targets=None if self.targets is None else self.targets[indices],
        official_split=None,
        communities=pick(self.communities))

  def with_features(self, kind: str = "default", **options) -> "GraphDataset":
    """A copy whose `features` are rebuilt by `node_features(self, kind)`."""
    from diffpool_jax.datasets.features import node_features
    return dataclasses.replace(
        self, features=node_features(self, kind, **options), feature_kind=kind)

  def stats(self) -> Dict[str, object]:
    """Summary: graphs, classes with counts, node counts, edges."""
    counts = np.bincount(self.labels, minlength=self.num_classes)
    entries = stacked(self.edges)          # local ids: equal only in a graph
    num_entries = len(entries)
    self_loops = int(np.sum(entries[:, 0] == entries[:, 1]))
    return {
        "name": self.name,
        "graphs": self.num_graphs,
        "classes": self.num_classes,
        "class_counts": {str(v): int(c)
                         for v, c in zip(self.label_values, counts)},
        "nodes": int(self.n_node.sum()),
        "nodes_min": int(self.n_node.min()),
        "nodes_mean": round(float(self.n_node.mean()), 2),
        "nodes_median": float(np.median(self.n_node)),
        "nodes_max": int(self.n_node.max()),
        "edges": (num_entries - self_loops) // 2 + self_loops,
        "adjacency_entries": num_entries,
        "node_features": self.num_node_features,
        "feature_kind": self.feature_kind,
    }
