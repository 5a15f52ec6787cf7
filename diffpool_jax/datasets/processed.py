"""The processed cache every reader shares: the parsed graphs saved once in
the data cache folder (`processed/READER/NAME.npz` in `$DIFFPOOL_JAX_DATA`
or `~/.cache/diffpool_jax`, like PyTorch Geometric's `processed/`, but never
inside the raw data's folder, which may be shared or read-only), read back
while the raw files and the reader are unchanged (`cached`).

The key hashes this layout's version, the reader's name, version and
options and every raw file's name, size and content; a cache with another
key, or one that cannot be read, is never used (the raw files are parsed
again and the cache rewritten), and a folder that cannot be written only
costs the next read its parsing.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import tempfile
import time
from pathlib import Path
from typing import Callable, Dict, Optional, Sequence

import numpy as np

from diffpool_jax.datasets.blocks import RowBlocks, block_counts, stacked
from diffpool_jax.datasets.dataset import GraphDataset
from diffpool_jax.datasets.download import default_cache_dir
from diffpool_jax.datasets.tables import (check_one_file_per_table,
                                          smallest_integers)

# Change whenever what is stored changes (every reader's caches go).
READER_VERSION = 4
# Per-graph fields stored concatenated, with the count of rows per graph.
NODE_FIELDS = ("node_labels", "node_attributes")
ENTRY_FIELDS = ("edges", "edge_labels", "edge_attributes")
SPLIT_PREFIX = "split_"


def raw_key(files: Sequence[Path], reader: str, version: int,
            options: Dict[str, object]) -> str:
  """A hash of this layout's version, the reader's name, version and
  options, and each raw file (name, size and content)."""
  digest = hashlib.blake2b(repr((READER_VERSION, reader, version,
                                 sorted(options.items()))).encode(),
                           digest_size=32)
  for path in sorted(files):
    digest.update(f"{path.name}:{path.stat().st_size}:".encode())
    with open(path, "rb") as handle:
      for block in iter(lambda: handle.read(1 << 24), b""):
        digest.update(block)
  return digest.hexdigest()


def cache_path(name: str, reader: str) -> Path:
  """Where the processed copy of `name` read by `reader` lives (one per
  reader and name: a copy of other raw files with the same name replaces
  it)."""
  return default_cache_dir() / "processed" / reader / f"{name}.npz"


def cached(reader: str, version: int, name: str, files: Sequence[Path],
           options: Dict[str, object], parse: Callable[[], GraphDataset],
           use_cache: bool = True) -> GraphDataset:
  """The data set `parse()` gives, read back from the processed cache while
  the raw `files`, the reader (`reader` at `version`) and its `options`
  are unchanged; `origin` says which path was taken, and how long it took
  (the data set has no features yet). Either way the per-graph fields are
  `RowBlocks`, edges int32 and the integer labels in their smallest type
  (`compact`). ValueError when two of `files` are versions of one table
  (tables.check_one_file_per_table), so every reader using the cache
  refuses them."""
  check_one_file_per_table(files)
  start = time.perf_counter()
  key = raw_key(files, reader, version, options) if use_cache else ""
  path = cache_path(name, reader)
  dataset = load(path, key) if use_cache else None
  if dataset is not None:
    origin = f"read from the processed cache {path}"
  else:
    dataset = compact(parse())
    folders = sorted({str(f.parent) for f in files})
    origin = f"parsed the raw files in {', '.join(folders)}"
    if use_cache:
      origin += (f"; processed cache written to {path}"
                 if save(path, dataset, key)
                 else f"; processed cache not written ({path.parent} is "
                 "not writable)")
  origin += f" ({reader} reader, {time.perf_counter() - start:.1f} s)"
  return dataclasses.replace(dataset, origin=origin)


def compact(dataset: GraphDataset) -> GraphDataset:
  """The parsed data set with its per-graph fields as `RowBlocks`, local
  edge ids as int32 and integer labels in their smallest type: what the
  cache stores, so a first and a cached read give the same arrays."""
  blocks = {}
  for field in NODE_FIELDS + ENTRY_FIELDS:
    parts = getattr(dataset, field)
    if parts is not None:
      rows = stacked(parts)
      if field.endswith("_labels"):
        rows = smallest_integers(rows)
      elif field == "edges":
        rows = rows.astype(np.int32, copy=False)  # local ids, < 2**31
      blocks[field] = RowBlocks(rows, block_counts(parts))
  return dataclasses.replace(dataset, **blocks)


def save(path: Path, dataset: GraphDataset, key: str) -> bool:
  """Writes the parsed, `compact` data set (features are not kept: they
  are rebuilt on reading) atomically; False when the folder cannot be
  written. Targets that float16 holds exactly (0/1 labels, NaN) are
  stored as float16."""
  arrays = {"key": np.array(key), "name": np.array(dataset.name),
            "n_node": dataset.n_node, "labels": dataset.labels,
            "label_values": dataset.label_values,
            "n_entry": block_counts(dataset.edges)}
  for field in NODE_FIELDS + ENTRY_FIELDS:
    parts = getattr(dataset, field)
    if parts is not None:
      arrays[field] = stacked(parts)
  for field in ("graph_attributes", "targets"):
    if getattr(dataset, field) is not None:
      arrays[field] = getattr(dataset, field)
  targets = arrays.get("targets")
  if targets is not None and np.array_equal(
      targets.astype(np.float16).astype(targets.dtype), targets,
      equal_nan=True):
    arrays["targets"] = targets.astype(np.float16)
  for part, ids in (dataset.official_split or {}).items():
    arrays[SPLIT_PREFIX + part] = ids
  temporary = None
  try:
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    with os.fdopen(handle, "wb") as stream:
      np.savez(stream, **arrays)
    os.replace(temporary, path)
    return True
  except OSError:
    if temporary is not None and os.path.exists(temporary):
      os.remove(temporary)
    return False


def load(path: Path, key: str) -> Optional[GraphDataset]:
  """The data set kept at `path` (no features yet) when its key is `key`;
  None when absent, stale or damaged."""
  try:
    with np.load(path, allow_pickle=False) as stored:
      if str(stored["key"]) != key:
        return None
      arrays = {name: stored[name] for name in stored.files}
    n_node, n_entry = arrays["n_node"], arrays["n_entry"]
    split = lambda field, counts: (RowBlocks(arrays[field], counts)
                                   if field in arrays else None)
    targets = arrays.get("targets")
    return GraphDataset(
        name=str(arrays["name"]), n_node=n_node,
        edges=split("edges", n_entry), labels=arrays["labels"],
        label_values=arrays["label_values"], features=[], feature_kind="",
        node_labels=split("node_labels", n_node),
        node_attributes=split("node_attributes", n_node),
        edge_labels=split("edge_labels", n_entry),
        edge_attributes=split("edge_attributes", n_entry),
        graph_attributes=arrays.get("graph_attributes"),
        targets=None if targets is None else targets.astype(np.float32),
        official_split={name[len(SPLIT_PREFIX):]: ids
                        for name, ids in arrays.items()
                        if name.startswith(SPLIT_PREFIX)} or None)
  except Exception:                    # absent, truncated, not an npz
    return None

