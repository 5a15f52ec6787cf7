"""The host-side graph data set type shared by the TU and synthetic loaders."""

from __future__ import annotations

import dataclasses
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from diffpool_jax.datasets.blocks import (  # noqa: F401 (re-exported)
    RowBlocks, block_counts, stacked)
from diffpool_jax.datasets.features import node_features


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
    declared_task: (kind, where it is declared) when the data set's source
      says what its targets are (OGB's task table), else None: the task
      is inferred from the targets (tasks.inferred_kind).
    targets_file: the file the targets were read from, for messages.
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
  declared_task: Optional[Tuple[str, str]] = None
  targets_file: str = ""

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
