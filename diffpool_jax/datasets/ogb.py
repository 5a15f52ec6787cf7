"""Reader for the Open Graph Benchmark's graph-property sets (Hu et al.,
NeurIPS 2020) in OGB's own raw layout, without the `ogb` package (which
needs PyTorch).

A set's folder (`ogbg_molhiv/`, as OGB's zip unpacks it) holds::

  raw/num-node-list.csv.gz   nodes of each graph, one line per graph
  raw/num-edge-list.csv.gz   edges of each graph, one line per graph
  raw/edge.csv.gz            "src,dst" per edge, 0-based within its graph,
                             graphs one after another (one line per
                             undirected bond for the molecule sets)
  raw/node-feat.csv.gz       optional: integer node features, a row a node
  raw/edge-feat.csv.gz       optional: integer edge features, a row an edge
  raw/graph-label.csv.gz     one row per graph, one column per task; NaN
                             (or an empty field) where a label is missing
  split/NAME/{train,valid,test}.csv.gz   0-based graph indices

Files may be plain `.csv` too. Edges are symmetrised and de-duplicated (the
edge features follow each entry); the integer node and edge features become
`node_labels` and `edge_labels`; the targets are kept as they are
(`GraphDataset.targets`, float32 with NaN) with the official split
(`official_split`).
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Dict, Optional

import numpy as np

from diffpool_jax import tasks
from diffpool_jax.datasets import processed
from diffpool_jax.datasets.dataset import GraphDataset
from diffpool_jax.datasets.download import default_cache_dir, download_archive
from diffpool_jax.datasets.tables import (coalesce, entries_by_graph,
                                          find_one, parse_table, read_bytes,
                                          read_column, read_table,
                                          smallest_integers, split_by_graph)

# Change whenever this reader's output for the same files changes.
OGB_READER_VERSION = 1
OGB_URL = "http://snap.stanford.edu/ogb/data/graphproppred/csv_mol_download"
SPLIT_PARTS = ("train", "valid", "test")
MARKER = "raw/num-node-list.csv.gz"


# OGB's task table (its master.csv) for the graph-property sets this
# reader can read: name -> (task kind, target columns). A set named here
# must fit its entry; another set's task is inferred from its targets.
OGB_TASKS = {
    "ogbg-molbace": ("binary", 1), "ogbg-molbbbp": ("binary", 1),
    "ogbg-molclintox": ("binary", 2), "ogbg-molmuv": ("binary", 17),
    "ogbg-molpcba": ("binary", 128), "ogbg-molsider": ("binary", 27),
    "ogbg-moltox21": ("binary", 12), "ogbg-moltoxcast": ("binary", 617),
    "ogbg-molhiv": ("binary", 1), "ogbg-molesol": ("regression", 1),
    "ogbg-molfreesolv": ("regression", 1), "ogbg-mollipo": ("regression", 1),
    "ogbg-ppa": ("classification", 1),
}


def folder_name(name: str) -> str:
  """OGB's folder for a data set name: "ogbg-molhiv" -> "ogbg_molhiv"."""
  return name.replace("-", "_")


def find_file(folder: Path, stem: str) -> Optional[Path]:
  """folder/stem.csv.gz or folder/stem.csv, or None; ValueError naming
  both when both are there."""
  return find_one(folder, stem, (".csv.gz", ".csv"))


def is_ogb_folder(root: Optional[str | os.PathLike], name: str) -> bool:
  """Whether `root` (None: the cache folder) holds OGB set `name`."""
  base = Path(root) if root is not None else default_cache_dir()
  return find_file(base / folder_name(name) / "raw", "num-node-list") is not None


def load_ogb(name: str, root: Optional[str | os.PathLike] = None,
             download: bool = True, split: str = "scaffold",
             keep_self_loops: bool = False, features: str = "default",
             cache: bool = True) -> GraphDataset:
  """Loads OGB graph-property set `name` (e.g. "ogbg-molhiv") from
  `root/ogbg_molhiv/` or the download cache.

  Args:
    name: OGB's name ("ogbg-molbace") or its folder's ("ogbg_molbace").
    root: a folder holding the set's folder; default the cache folder
      (`$DIFFPOOL_JAX_DATA`, else `~/.cache/diffpool_jax`).
    download: when absent, download OGB's zip of a molecule set
      (ogbg-mol*) once into `root` (or the cache folder); otherwise
      FileNotFoundError.
    split: the split folder under `split/` ("scaffold" for the molecules).
    keep_self_loops: keep `i, i` edges (dropped by default).
    features: node feature kind (see `node_features`); "default" is
      "codes" (the integer node features, embedded by the model, as OGB's
      AtomEncoder) where the set has node features.
    cache: keep the parsed graphs in the processed cache (see
      datasets.processed).

  Returns:
    A `GraphDataset` with `targets` [G, T] and `official_split`. Where the
    targets are one column of integer classes without a missing label,
    `labels` are those classes (0..C-1); otherwise `labels` are all 0
    and `label_values` empty (the task is not a single class).
  """
  base = Path(root) if root is not None else default_cache_dir()
  folder = base / folder_name(name)
  if not is_ogb_folder(base, name):
    short = folder_name(name).removeprefix("ogbg_")
    if not download or not short.startswith("mol"):
      raise FileNotFoundError(
          f"OGB data set {name!r} not found: no {folder / MARKER}"
          + ("; pass download=True or put OGB's unpacked folder there"
             if not download else "; only the molecule sets (ogbg-mol*) "
             "download here: put OGB's unpacked folder there"))
    download_archive(f"{OGB_URL}/{short.removeprefix('mol')}.zip", base,
                     folder_name(name), MARKER, f"OGB data set {name!r}",
                     "OGB's unpacked folder (raw/, split/)")
  files = sorted(p for part in ("raw", f"split/{split}")
                 for p in (folder / part).glob("*.csv*"))
  dataset = processed.cached(
      "ogb", OGB_READER_VERSION, folder_name(name), files,
      {"split": split, "keep_self_loops": keep_self_loops},
      lambda: parse_ogb(folder, folder_name(name).replace("_", "-"), split,
                        keep_self_loops), use_cache=cache)
  dataset = with_declared_task(dataset, required(folder / "raw",
                                                 "graph-label"))
  if features == "default" and dataset.node_labels is not None:
    features = "codes"
  return dataset.with_features(features)


def with_declared_task(dataset: GraphDataset, path: Path) -> GraphDataset:
  """The data set with its targets' file and, for a set in OGB_TASKS, its
  declared task, after checking that the targets fit it (ValueError
  naming the file and line)."""
  dataset = dataclasses.replace(dataset, targets_file=str(path))
  if dataset.name not in OGB_TASKS:
    return dataset
  kind, columns = OGB_TASKS[dataset.name]
  if dataset.targets.shape[1] != columns:
    raise ValueError(f"{path}: has {dataset.targets.shape[1]} column(s); "
                     f"OGB's {dataset.name} has {columns} ({kind} task)")
  dataset = dataclasses.replace(
      dataset, declared_task=(kind, f"OGB's task table for {dataset.name}"))
  tasks.check_fits(dataset, kind)
  return dataset


def required(folder: Path, stem: str) -> Path:
  """The path of a required table; FileNotFoundError naming it."""
  path = find_file(folder, stem)
  if path is None:
    raise FileNotFoundError(f"OGB data set in {folder.parent}: missing "
                            f"required file {folder / stem}.csv[.gz]")
  return path


def read_counts(path: Path, rows: Optional[int] = None) -> np.ndarray:
  """[G] non-negative counts, one per line (`rows` of them when given: one
  per line of num-node-list)."""
  counts = read_column(path, np.int64, "count", rows,
                       "one per graph, as num-node-list")
  if np.any(counts < 0):
    line = int(np.argmax(counts < 0)) + 1
    raise ValueError(f"{path}: line {line}: count {counts[line - 1]} is "
                     "negative")
  return counts


def read_targets(path: Path, num_graphs: int) -> np.ndarray:
  """[G, T] float32 targets; "nan" or an empty field is a missing label."""
  values = parse_table(fill_empty_fields(read_bytes(path)), np.float64)
  if values is None:                   # names the line
    values = read_table(path, np.float64)
  if len(values) != num_graphs:
    raise ValueError(f"{path}: has {len(values)} lines, expected "
                     f"{num_graphs} (one per graph, as num-node-list)")
  if np.any(np.isinf(values)):
    line = int(np.argmax(np.isinf(values).any(axis=1))) + 1
    raise ValueError(f"{path}: line {line}: a target is infinite")
  return values.astype(np.float32)


def fill_empty_fields(data: bytes, filler: bytes = b"nan") -> bytes:
  """Comma-separated lines (trailing blank lines and carriage returns
  dropped) with `filler` in every empty field: a line's first or last,
  one between two commas, an empty line. Byte replacements, each a pass
  over the data (a regular expression takes several times longer)."""
  data = b"\n" + data.replace(b"\r", b"").rstrip() + b"\n"
  for empty, full in ((b",,", b"," + filler + b","),
                      (b"\n\n", b"\n" + filler + b"\n")):
    for _ in range(2):        # matches do not overlap: ",,," needs two passes
      data = data.replace(empty, full)
  data = data.replace(b"\n,", b"\n" + filler + b",")
  return data.replace(b",\n", b"," + filler + b"\n")[1:-1]


def read_split(folder: Path, num_graphs: int) -> Dict[str, np.ndarray]:
  """{part: sorted indices}; ValueError naming the file unless the parts
  are a partition of 0..G-1."""
  parts, owner = {}, np.full(num_graphs, -1)
  for number, part in enumerate(SPLIT_PARTS):
    path = required(folder, part)
    ids = read_column(path, np.int64, "graph index")
    outside = (ids < 0) | (ids >= num_graphs)
    if np.any(outside):
      line = int(np.argmax(outside)) + 1
      raise ValueError(f"{path}: line {line}: graph index {ids[line - 1]} "
                       f"is outside 0..{num_graphs - 1}")
    for line, graph in enumerate(ids, start=1):
      if owner[graph] >= 0:
        where = SPLIT_PARTS[owner[graph]]
        raise ValueError(f"{path}: line {line}: graph {graph} is also in "
                         f"{where if where != part else 'this file'}; the "
                         "split must be a partition")
      owner[graph] = number
    parts[part] = np.sort(ids)
  if np.any(owner < 0):
    raise ValueError(f"{folder}: graph {int(np.argmax(owner < 0))} is in "
                     "none of train, valid and test; the split must be a "
                     "partition")
  return parts


def read_edges(path: Path, n_node: np.ndarray, n_edge: np.ndarray
               ) -> np.ndarray:
  """[E, 2] global node ids of edge.csv's local pairs; ValueError naming
  the line of a pair outside its graph."""
  pairs = read_table(path, np.int64, int(n_edge.sum()),
                     "the sum of num-edge-list")
  if len(pairs) and pairs.shape[1] != 2:
    raise ValueError(f"{path}: line 1 has {pairs.shape[1]} values, expected "
                     "2 (src, dst)")
  pairs = pairs.reshape(-1, 2)
  edge_graph = np.repeat(np.arange(len(n_node)), n_edge)
  outside = (pairs < 0) | (pairs >= n_node[edge_graph][:, None])
  if np.any(outside):
    line, column = (int(v) for v in np.argwhere(outside)[0])
    graph = edge_graph[line]
    raise ValueError(f"{path}: line {line + 1}: node {pairs[line, column]} "
                     f"({('src', 'dst')[column]}) is outside graph {graph}'s "
                     f"0..{n_node[graph] - 1} (from num-node-list)")
  node_starts = np.concatenate([[0], np.cumsum(n_node)[:-1]])
  return pairs + node_starts[edge_graph][:, None]


def parse_ogb(folder: Path, name: str, split: str = "scaffold",
              keep_self_loops: bool = False) -> GraphDataset:
  """Parses the raw OGB files in `folder` (see `load_ogb`); the result has
  no features yet."""
  raw = folder / "raw"
  n_node = read_counts(required(raw, "num-node-list"))
  num_graphs = len(n_node)
  n_edge = read_counts(required(raw, "num-edge-list"), num_graphs)
  if np.any(n_node == 0):
    line = int(np.argmax(n_node == 0)) + 1
    raise ValueError(f"{required(raw, 'num-node-list')}: line {line}: graph "
                     f"{line - 1} has no nodes (zero-node graphs are not "
                     "allowed)")
  num_nodes = int(n_node.sum())
  pairs = read_edges(required(raw, "edge"), n_node, n_edge)
  edge_feat_path = find_file(raw, "edge-feat")
  entries, source = coalesce(pairs, num_nodes, keep_self_loops,
                             need_lines=edge_feat_path is not None)
  node_graph = np.repeat(np.arange(num_graphs), n_node)
  node_starts = np.concatenate([[0], np.cumsum(n_node)[:-1]])
  edges, entry_starts = entries_by_graph(entries, node_graph, node_starts)

  def integer_table(stem: str, rows: int, what: str):
    # Narrowed here (not only by processed.compact): the bond table is
    # gathered by `source` below, a ninth of the bytes as uint8.
    path = find_file(raw, stem)
    return (None if path is None else
            smallest_integers(read_table(path, np.int64, rows, what)))

  node_feat = integer_table("node-feat", num_nodes,
                            "one per node of num-node-list")
  edge_feat = integer_table("edge-feat", len(pairs),
                            "one per line of edge")
  targets = read_targets(required(raw, "graph-label"), num_graphs)
  labels, label_values = class_labels(targets)
  return GraphDataset(
      name=name, n_node=n_node, edges=edges, labels=labels,
      label_values=label_values, features=[], feature_kind="",
      node_labels=(None if node_feat is None
                   else split_by_graph(node_feat, node_starts)),
      edge_labels=(None if edge_feat is None
                   else split_by_graph(edge_feat[source], entry_starts)),
      targets=targets,
      official_split=read_split(folder / "split" / split, num_graphs))


def class_labels(targets: np.ndarray):
  """([G] class ids, [C] their values) where `targets` [G, T] is one
  column of integers without a missing label; else zeros and no values."""
  column = targets[:, 0] if targets.shape[1] == 1 else None
  if (column is None or np.any(np.isnan(column))
      or np.any(column != np.round(column))):
    return np.zeros(len(targets), np.int64), np.zeros(0, np.float32)
  values, labels = np.unique(column, return_inverse=True)
  return labels.astype(np.int64), values
