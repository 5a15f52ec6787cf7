"""Reader for the TU graph-classification benchmarks (Morris et al. 2020).

The raw format (1-based ids, one file per table, plain `.txt` or `.txt.gz`):
`NAME_A.txt` one "row, col" line per directed adjacency entry;
`NAME_graph_indicator.txt` the graph id of node i on line i;
`NAME_graph_labels.txt` one label per graph; optional
`NAME_node_labels.txt`, `NAME_node_attributes.txt`, `NAME_edge_labels.txt`
(one per A line), `NAME_edge_attributes.txt`, `NAME_graph_attributes.txt`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import numpy as np

from diffpool_jax.datasets import processed
from diffpool_jax.datasets.dataset import GraphDataset
from diffpool_jax.datasets.download import download_tu, default_cache_dir
from diffpool_jax.datasets.tables import (coalesce, entries_by_graph, find_one,
                                          read_column, read_lines,
                                          read_table, split_by_graph)

# Change whenever this reader's output for the same files changes.
TU_READER_VERSION = 2


def find_table(folder: Path, name: str, table: str) -> Optional[Path]:
  """The path of NAME_table.txt or NAME_table.txt.gz in folder, or None;
  ValueError naming both when both are there."""
  return find_one(folder, f"{name}_{table}", (".txt", ".txt.gz"))


def read_graph_labels(path: Path) -> np.ndarray:
  """[G] int64 class labels, one per line. Raises ValueError naming file
  and line for a value that is not an integer class id (1, -1 and 1.0 are;
  0.5, nan, inf and integers beyond float64's exact range are not)."""
  values = read_column(path, np.float64, "graph label")
  with np.errstate(invalid="ignore"):
    bad = (~np.isfinite(values) | (values != np.round(values))
           | (np.abs(values) >= 2.0**53))
  if np.any(bad):
    number = int(np.argmax(bad)) + 1
    raise ValueError(
        f"{path}: line {number}: graph label {read_lines(path)[number - 1]!r}"
        " is not an integer class id (regression targets are not "
        "supported)")
  return values.astype(np.int64)


def check_indicator(path: Path, indicator: np.ndarray, num_graphs: int,
                    label_path: Path) -> None:
  """Graph ids must run 1..num_graphs (the graph labels' line count),
  sorted, every graph with a node."""
  if indicator.min() < 1:
    line = int(np.argmax(indicator < 1)) + 1
    raise ValueError(f"{path}: line {line}: graph id {indicator[line - 1]} "
                     "is below 1")
  steps = np.diff(indicator)
  if np.any(steps < 0):
    line = int(np.argmax(steps < 0)) + 2
    raise ValueError(f"{path}: line {line}: graph ids are not sorted "
                     f"({indicator[line - 2]} then {indicator[line - 1]})")
  if np.any(steps > 1) or indicator[0] != 1:
    line = 1 if indicator[0] != 1 else int(np.argmax(steps > 1)) + 2
    missing = 1 if indicator[0] != 1 else indicator[line - 2] + 1
    raise ValueError(f"{path}: line {line}: graph ids jump to "
                     f"{indicator[line - 1]}; graph {missing} has no nodes "
                     "(zero-node graphs are not allowed)")
  if indicator[-1] > num_graphs:
    raise ValueError(
        f"{label_path}: has {num_graphs} lines, but {path} names graphs up "
        f"to {indicator[-1]}: one graph label per graph is missing")
  if indicator[-1] < num_graphs:
    raise ValueError(
        f"{label_path}: has {num_graphs} lines, but {path} names graphs "
        f"only up to {indicator[-1]}: graphs {indicator[-1] + 1}.."
        f"{num_graphs} would have no nodes (zero-node graphs are not "
        "allowed)")


def read_edges(path: Path, indicator: np.ndarray, indicator_path: Path
               ) -> np.ndarray:
  """Reads A.txt: [E, 2] 0-based global node pairs, one per line (checked
  against the graph indicator read from `indicator_path`)."""
  pairs = read_table(path, np.int64)
  if pairs.shape[1] != 2:
    raise ValueError(f"{path}: line 1 has {pairs.shape[1]} values, expected "
                     "2 (row, col)")
  num_nodes = len(indicator)
  if len(pairs) and (pairs.min() < 1 or pairs.max() > num_nodes):
    bad = (pairs < 1) | (pairs > num_nodes)
    line = int(np.argmax(bad.any(1))) + 1
    raise ValueError(f"{path}: line {line}: node id "
                     f"{pairs[line - 1][bad[line - 1]][0]} is outside "
                     f"1..{num_nodes} (the node count of "
                     f"{indicator_path.name})")
  pairs -= 1
  crossing = indicator[pairs[:, 0]] != indicator[pairs[:, 1]]
  if np.any(crossing):
    line = int(np.argmax(crossing)) + 1
    raise ValueError(f"{path}: line {line}: the edge joins nodes of graphs "
                     f"{indicator[pairs[line - 1, 0]]} and "
                     f"{indicator[pairs[line - 1, 1]]} (by "
                     f"{indicator_path.name})")
  return pairs


def load_tu(name: str, root: Optional[str | os.PathLike] = None,
            download: bool = True, keep_self_loops: bool = False,
            features: str = "default", url: Optional[str] = None,
            cache: bool = True) -> GraphDataset:
  """Loads TU data set `name` from `root/name/` or the download cache.

  Args:
    name: the data set's TU name, e.g. "ENZYMES", "IMDB-BINARY".
    root: a folder holding `name/name_A.txt` etc. (plain or .gz). Default:
      the cache folder `$DIFFPOOL_JAX_DATA`, else `~/.cache/diffpool_jax`.
    download: when the files are missing, download the official zip once
      into `root` (or the cache folder); otherwise raise FileNotFoundError.
    keep_self_loops: keep `i, i` adjacency entries (dropped by default).
    features: node feature kind (see `node_features`), "default" picks node
      labels + attributes where present, else degrees.
    url: the base URL of the zips (default: the official TU site).
    cache: keep the parsed graphs in the cache folder's `processed/` and
      read them back while the raw files, the reader and `keep_self_loops`
      are unchanged (see datasets.processed); `origin` says which path was
      taken.

  Returns:
    A `GraphDataset`. Duplicate adjacency entries are coalesced, edges are
    symmetrised, isolated nodes are kept, graph labels are mapped to 0..C-1
    (`label_values` keeps the originals).
  """
  folder_root = Path(root) if root is not None else default_cache_dir()
  folder = folder_root / name
  if find_table(folder, name, "A") is None:
    if not download:
      raise FileNotFoundError(
          f"TU data set {name!r} not found: no {folder / (name + '_A.txt')}"
          "[.gz]; pass download=True or put the files there")
    download_tu(name, folder_root, url=url)

  files = sorted(folder.glob(f"{name}_*.txt*"))
  dataset = processed.cached(
      "tu", TU_READER_VERSION, name, files,
      {"keep_self_loops": keep_self_loops},
      lambda: parse_tu(folder, name, keep_self_loops), use_cache=cache)
  return dataset.with_features(features)


def parse_tu(folder: Path, name: str, keep_self_loops: bool = False
             ) -> GraphDataset:
  """Parses the raw TU files of `name` in `folder` (see `load_tu`); the
  result has no features yet."""
  def required(table: str) -> Path:
    path = find_table(folder, name, table)
    if path is None:
      raise FileNotFoundError(
          f"TU data set {name!r}: missing required file "
          f"{folder / (name + '_' + table + '.txt')}[.gz]")
    return path

  label_path = required("graph_labels")
  raw_labels = read_graph_labels(label_path)
  num_graphs = len(raw_labels)
  indicator_path = required("graph_indicator")
  indicator = read_column(indicator_path, np.int64, "graph id")
  check_indicator(indicator_path, indicator, num_graphs, label_path)
  num_nodes = len(indicator)
  n_node = np.bincount(indicator - 1, minlength=num_graphs)
  node_starts = np.concatenate([[0], np.cumsum(n_node)[:-1]])

  a_path = required("A")
  pairs = read_edges(a_path, indicator, indicator_path)
  num_lines = len(pairs)
  entry_tables = [find_table(folder, name, table) is not None
                  for table in ("edge_labels", "edge_attributes")]
  entries, source_lines = coalesce(pairs, num_nodes, keep_self_loops,
                                   need_lines=any(entry_tables))
  del pairs
  edges, entry_starts = entries_by_graph(entries, indicator - 1, node_starts)

  def optional(table: str, dtype, rows: int, what: str):
    path = find_table(folder, name, table)
    if path is None:
      return None
    values = read_table(path, dtype, rows, what)
    if not np.all(np.isfinite(values)):
      number = int(np.argmax(~np.isfinite(values).all(axis=1))) + 1
      raise ValueError(f"{path}: line {number}: a value is not finite "
                       f"({read_lines(path)[number - 1].strip()!r})")
    return values

  per_node = f"one per node of {indicator_path.name}"
  per_line = f"one per line of {a_path.name}"
  node_labels = optional("node_labels", np.int64, num_nodes, per_node)
  node_attributes = optional("node_attributes", np.float32, num_nodes,
                             per_node)
  edge_labels = optional("edge_labels", np.int64, num_lines, per_line)
  edge_attributes = optional("edge_attributes", np.float32, num_lines,
                             per_line)
  graph_attributes = optional("graph_attributes", np.float32, num_graphs,
                              "one per graph")
  per_node = lambda v: None if v is None else split_by_graph(v, node_starts)
  per_entry = lambda v: (None if v is None else
                         split_by_graph(v[source_lines], entry_starts))

  label_values, labels = np.unique(raw_labels, return_inverse=True)
  dataset = GraphDataset(
      name=name, n_node=n_node, edges=edges, labels=labels.astype(np.int64),
      label_values=label_values, features=[], feature_kind="",
      node_labels=per_node(node_labels),
      node_attributes=per_node(node_attributes),
      edge_labels=per_entry(edge_labels),
      edge_attributes=per_entry(edge_attributes),
      graph_attributes=graph_attributes)
  return dataset
