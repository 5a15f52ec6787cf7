"""The processed cache of a TU data set: the parsed graphs saved once in
the data cache folder (`processed/NAME.npz` in `$DIFFPOOL_JAX_DATA` or
`~/.cache/diffpool_jax`, like PyTorch Geometric's `processed/`, but never
inside the raw data's folder, which may be shared or read-only), read back
while the raw files and the reader are unchanged.

The key hashes the reader's version and options and every raw file's name,
size and content; a cache with another key, or one that cannot be read, is
never used (the raw files are parsed again and the cache rewritten), and a
folder that cannot be written only costs the next read its parsing.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from typing import Dict, Optional

import numpy as np

from diffpool_jax.datasets.dataset import GraphDataset
from diffpool_jax.datasets.download import default_cache_dir

# Change whenever the reader's output for the same files changes.
READER_VERSION = 2
# Per-graph fields stored concatenated, with the count of rows per graph.
NODE_FIELDS = ("node_labels", "node_attributes")
ENTRY_FIELDS = ("edges", "edge_labels", "edge_attributes")


def raw_key(folder: Path, name: str, options: Dict[str, object]) -> str:
  """A hash of the reader's version, its options and each raw file of
  `name` in `folder` (NAME_*.txt[.gz]: name, size and content)."""
  digest = hashlib.blake2b(repr((READER_VERSION, sorted(options.items())))
                           .encode(), digest_size=32)
  for path in sorted(folder.glob(f"{name}_*.txt*")):
    digest.update(f"{path.name}:{path.stat().st_size}:".encode())
    with open(path, "rb") as handle:
      for block in iter(lambda: handle.read(1 << 24), b""):
        digest.update(block)
  return digest.hexdigest()


def cache_path(name: str) -> Path:
  """Where the processed copy of `name` lives (one per name: a copy of
  other raw files with the same name replaces it)."""
  return default_cache_dir() / "processed" / f"{name}.npz"


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
  if dataset.graph_attributes is not None:
    arrays["graph_attributes"] = dataset.graph_attributes
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
        graph_attributes=arrays.get("graph_attributes"))
  except Exception:                    # absent, truncated, not an npz
    return None

