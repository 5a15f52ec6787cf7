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

from diffpool_jax.datasets.dataset import GraphDataset
from diffpool_jax.datasets.download import default_cache_dir

# Change whenever what is stored changes (every reader's caches go).
READER_VERSION = 3
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
  (the data set has no features yet)."""
  start = time.perf_counter()
  key = raw_key(files, reader, version, options) if use_cache else ""
  path = cache_path(name, reader)
  dataset = load(path, key) if use_cache else None
  if dataset is not None:
    origin = f"read from the processed cache {path}"
  else:
    dataset = parse()
    folders = sorted({str(f.parent) for f in files})
    origin = f"parsed the raw files in {', '.join(folders)}"
    if use_cache:
      origin += (f"; processed cache written to {path}"
                 if save(path, dataset, key)
                 else f"; processed cache not written ({path.parent} is "
                 "not writable)")
  origin += f" ({reader} reader, {time.perf_counter() - start:.1f} s)"
  return dataclasses.replace(dataset, origin=origin)


def save(path: Path, dataset: GraphDataset, key: str) -> bool:
  """Writes the parsed data set (features are not kept: they are rebuilt
  on reading) atomically; False when the folder cannot be written."""
  arrays = {"key": np.array(key), "name": np.array(dataset.name),
            "n_node": dataset.n_node, "labels": dataset.labels,
            "label_values": dataset.label_values,
            "n_entry": np.array([len(e) for e in dataset.edges], np.int64)}
  for field in NODE_FIELDS + ENTRY_FIELDS:
    parts = getattr(dataset, field)
    if parts is not None:
      arrays[field] = np.concatenate(parts)
  if dataset.n_node.max() < 2**31:      # local ids: half the bytes on disk
    arrays["edges"] = arrays["edges"].astype(np.int32)
  for field in ("graph_attributes", "targets"):
    if getattr(dataset, field) is not None:
      arrays[field] = getattr(dataset, field)
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
    node_starts = np.cumsum(n_node)[:-1]
    entry_starts = np.cumsum(n_entry)[:-1]
    split = lambda field, starts: (np.split(arrays[field], starts)
                                   if field in arrays else None)
    arrays["edges"] = arrays["edges"].astype(np.int64)
    return GraphDataset(
        name=str(arrays["name"]), n_node=n_node,
        edges=split("edges", entry_starts), labels=arrays["labels"],
        label_values=arrays["label_values"], features=[], feature_kind="",
        node_labels=split("node_labels", node_starts),
        node_attributes=split("node_attributes", node_starts),
        edge_labels=split("edge_labels", entry_starts),
        edge_attributes=split("edge_attributes", entry_starts),
        graph_attributes=arrays.get("graph_attributes"),
        targets=arrays.get("targets"),
        official_split={name[len(SPLIT_PREFIX):]: ids
                        for name, ids in arrays.items()
                        if name.startswith(SPLIT_PREFIX)} or None)
  except Exception:                    # absent, truncated, not an npz
    return None

