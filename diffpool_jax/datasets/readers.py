"""Data set formats found by name: a reader is a function
`(name, root, features, **options) -> GraphDataset` and a test of whether a
folder holds a set in its format; `register_reader` adds one to `READERS`,
where a run's `format` (or, with "auto", the folder's layout) finds it.

A new format is one module with its reader and one `register_reader` call
(from any module; `--import` loads it for the commands); its parser should
use datasets.tables (tables, coalescing, per-graph splitting) and
datasets.processed.cached (the processed cache).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Dict, NamedTuple, Optional

from diffpool_jax.datasets.dataset import GraphDataset
from diffpool_jax.datasets.download import default_cache_dir
from diffpool_jax.datasets.ogb import is_ogb_folder, load_ogb
from diffpool_jax.datasets.synthetic import synthetic_hierarchical
from diffpool_jax.datasets.tu import find_table, load_tu
from diffpool_jax.errors import InputError, check_name
from diffpool_jax.protocols import PROTOCOLS


class Reader(NamedTuple):
  """A data set format.

  Attributes:
    load: `(name, root, features, **options) -> GraphDataset`; root None
      means the download cache (a reader may download there).
    holds: (root, name) -> whether `root` (None: the cache folder) holds
      set `name` in this format, for format "auto".
    claims: name -> whether the name alone says this format (e.g. OGB's
      "ogbg-" prefix), for "auto" when no folder holds the set yet.
    protocol: the protocol a run of its sets uses unless told
      (RunConfig.protocol "auto"): "fixed" where the sets carry their
      official split, else "fair".
  """
  load: Callable[..., GraphDataset]
  holds: Callable[[Optional[str], str], bool]
  claims: Callable[[str], bool] = lambda name: False
  protocol: str = "fair"


READERS: Dict[str, Reader] = {}


def register_reader(name: str, reader: Reader) -> Reader:
  """Adds `reader` to READERS under `name` (replacing one of that name)
  after checking it: a `Reader` whose load, holds and claims are
  functions and whose protocol is a registered one (protocols.PROTOCOLS).
  Returns it."""
  check_name("a reader", name)
  if not isinstance(reader, Reader):
    raise ValueError(f"reader {name!r}: expected a datasets.Reader, got "
                     f"{type(reader).__name__}")
  for field in ("load", "holds", "claims"):
    if not callable(getattr(reader, field)):
      raise ValueError(f"reader {name!r}: {field} must be a function")
  if reader.protocol not in PROTOCOLS:
    raise ValueError(f"reader {name!r}: protocol={reader.protocol!r}; "
                     f"expected one of {tuple(PROTOCOLS)}")
  READERS[name] = reader
  return reader


def find_format(name: str, root: Optional[str | os.PathLike],
                format: str = "auto") -> str:
  """The format of data set `name`: `format` itself unless "auto", else
  the first reader whose layout `root` holds, else the first that claims
  the name, else "tu" (TU's download by name). ValueError naming the
  format for an unknown one."""
  if format != "auto":
    if format not in READERS:
      raise ValueError(f"format={format!r}; expected 'auto' or one of "
                       f"{tuple(READERS)}")
    return format
  for reader_name, reader in READERS.items():
    if reader.holds(root, name):
      return reader_name
  for reader_name, reader in READERS.items():
    if reader.claims(name):
      return reader_name
  return "tu"


def read_dataset(name: str, root: Optional[str | os.PathLike] = None,
                 format: str = "auto", features: str = "default",
                 **options) -> GraphDataset:
  """Data set `name` read by the reader of `format` (see `find_format`),
  with node features of kind `features`; `options` go to the reader.
  InputError naming data_root when `root` is given but is not a folder:
  nothing is created or downloaded on a mistyped path (None: the cache
  folder)."""
  if root is not None and not Path(root).is_dir():
    raise InputError(
        f"{{data_root}} {root} is not a folder (mistyped?); give the folder "
        "that holds the data set's folder, or create it first to download "
        "there", "data_root")
  return READERS[find_format(name, root, format)].load(
      name, root, features, **options)


def tu_holds(root: Optional[str | os.PathLike], name: str) -> bool:
  base = Path(root) if root is not None else default_cache_dir()
  return find_table(base / name, name, "A") is not None


# The built-in set is generated, not read: no folder holds it, its name
# alone says its format.
register_reader("synthetic", Reader(
    lambda name, root, features, **options: synthetic_hierarchical(
        **options).with_features(features),
    lambda root, name: False, lambda name: name == "synthetic"))
register_reader("tu", Reader(
    lambda name, root, features, **options: load_tu(
        name, root=root, features=features, **options), tu_holds))
register_reader("ogb", Reader(
    lambda name, root, features, **options: load_ogb(
        name, root=root, features=features, **options), is_ogb_folder,
    lambda name: name.startswith(("ogbg-", "ogbg_")), protocol="fixed"))
