"""Array work that every reader shares: finding a table's one file (two
versions of one table are refused), numeric tables read in one pass
(plain or gzip, comma or space separated) with errors naming the file and
line, per-graph splitting, and coalescing of adjacency entries."""

from __future__ import annotations

import gzip
import io
import warnings
import zlib
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from diffpool_jax.datasets.blocks import RowBlocks


# Suffixes of a compressed copy of a table: "X.csv" and "X.csv.gz" are two
# versions of one table.
COMPRESSION_SUFFIXES = (".gz", ".bz2", ".xz", ".zst", ".zip")


def table_name(path: Path) -> str:
  """A file's name without its compression suffix: the table it holds."""
  for suffix in COMPRESSION_SUFFIXES:
    if path.name.endswith(suffix):
      return path.name[:-len(suffix)]
  return path.name


def check_one_file_per_table(files: Sequence[Path]) -> None:
  """ValueError naming both files when two of `files` in one folder hold
  the same table (plain beside compressed, or two compressions): which one
  a reader takes would be a silent choice."""
  seen: Dict[Tuple[Path, str], Path] = {}
  for path in sorted(files):
    key = (path.parent, table_name(path))
    if key in seen:
      first, second = seen[key], path
      newer, older = sorted(
          (first, second), key=lambda p: p.stat().st_mtime, reverse=True)
      raise ValueError(
          f"{path.parent}: two versions of table {key[1]}: {first.name} and "
          f"{second.name}; remove the one you do not mean to use ({newer.name}"
          f" is the newer, {older.name} the older)")
    seen[key] = path


def find_one(folder: Path, stem: str, suffixes: Sequence[str]
             ) -> Optional[Path]:
  """folder/stem + the one of `suffixes` that exists, or None; ValueError
  (check_one_file_per_table) when more than one does."""
  found = [folder / (stem + suffix) for suffix in suffixes
           if (folder / (stem + suffix)).is_file()]
  check_one_file_per_table(found)
  return found[0] if found else None


def read_lines(path: Path) -> List[str]:
  """The file's lines (gzip or plain), without a final empty line.

  Raises ValueError naming the file when it cannot be read as text (a
  truncated or fake .gz, binary content).
  """
  opener = gzip.open if path.suffix == ".gz" else open
  try:
    with opener(path, "rt") as handle:
      lines = handle.read().splitlines()
  except (OSError, EOFError, zlib.error, UnicodeDecodeError) as error:
    raise ValueError(f"{path}: cannot be read as text "
                     f"({type(error).__name__}: {error})") from None
  while lines and not lines[-1].strip():
    lines.pop()
  return lines


def check_row(path: Path, number: int, line: str, tokens: List[str], dtype,
              columns: int) -> None:
  """Raises ValueError naming file and line unless the row has `columns`
  values of `dtype` (that fit in it)."""
  if not tokens:
    raise ValueError(f"{path}: line {number} is empty")
  if len(tokens) != columns:
    raise ValueError(f"{path}: line {number} has {len(tokens)} values, "
                     f"expected {columns} (as on line 1)")
  try:
    np.array(tokens, dtype=dtype)
  except ValueError:
    raise ValueError(f"{path}: line {number} is not numeric: "
                     f"{line.strip()!r}") from None
  except OverflowError:
    raise ValueError(f"{path}: line {number}: a value is too large for "
                     f"{np.dtype(dtype).name}: {line.strip()!r}") from None


def read_table(path: Path, dtype, expected_rows: Optional[int] = None,
               what: str = "") -> np.ndarray:
  """Reads a comma/space separated numeric table into [rows, columns].

  Every row must have as many values as the first. Raises ValueError
  naming the file and line for empty, ragged, non-numeric or too large
  values, and for a row count other than `expected_rows`. The whole file
  is parsed as one buffer (`parse_table`); only when that fails is it read
  line by line to name the offending line.
  """
  values = parse_table(read_bytes(path), dtype)
  if values is None:
    values = read_table_by_line(path, dtype)
  if expected_rows is not None and len(values) != expected_rows:
    raise ValueError(f"{path}: has {len(values)} lines, expected "
                     f"{expected_rows} ({what})")
  return values


def read_column(path: Path, dtype, value: str,
                expected_rows: Optional[int] = None, what: str = ""
                ) -> np.ndarray:
  """A one-column table (`read_table`) as [rows]; ValueError naming the
  file unless its rows hold one `value` each ("graph id", "count")."""
  values = read_table(path, dtype, expected_rows, what)
  if values.shape[1] != 1:
    raise ValueError(f"{path}: line 1 has {values.shape[1]} values, "
                     f"expected one {value}")
  return values[:, 0]


def read_bytes(path: Path) -> bytes:
  """The file's bytes (gzip or plain); ValueError naming the file when it
  cannot be read (a truncated or fake .gz)."""
  try:
    if path.suffix == ".gz":
      with gzip.open(path, "rb") as handle:
        return handle.read()
    return path.read_bytes()
  except (OSError, EOFError, zlib.error) as error:
    raise ValueError(f"{path}: cannot be read as text "
                     f"({type(error).__name__}: {error})") from None


WHITESPACE = b" \t\r\n\f\v"


def parse_table(data: bytes, dtype) -> Optional[np.ndarray]:
  """[rows, columns] values of a whole table, parsed in one pass (NumPy's
  C parser), or None when the table is not well formed (empty, a blank
  line, ragged rows, a value that is not a `dtype` number): the caller
  then reads it line by line for a message naming the line."""
  end = len(data)
  while end and data[end - 1] in WHITESPACE:      # trailing blank lines
    end -= 1
  lines = data.count(b"\n", 0, end) + 1 if end else 0
  if lines == 0:
    return None
  text = io.BytesIO(data.replace(b",", b" "))
  del data                              # the caller's copy may go now
  try:
    with warnings.catch_warnings():   # "no data": the line count says so
      warnings.simplefilter("ignore", UserWarning)
      values = np.loadtxt(text, dtype=dtype, comments=None, ndmin=2)
  except (ValueError, OverflowError, UnicodeDecodeError):
    return None
  # The parser skips blank lines: a count that differs means there was one.
  return values if len(values) == lines else None


def read_table_by_line(path: Path, dtype) -> np.ndarray:
  """The table read line by line (slow): names the file and line of the
  first empty, ragged, non-numeric or too large row."""
  lines = read_lines(path)
  if not lines:
    raise ValueError(f"{path}: the file is empty")
  rows = [line.replace(",", " ").split() for line in lines]
  columns = len(rows[0])
  counts = np.fromiter(map(len, rows), np.int64, len(rows))
  ragged = np.flatnonzero(counts != columns)
  if columns == 0 or len(ragged):
    number = 0 if columns == 0 else int(ragged[0])
    check_row(path, number + 1, lines[number], rows[number], dtype, columns)
  try:
    values = np.array([token for row in rows for token in row], dtype=dtype)
  except (ValueError, OverflowError):
    for number, (line, row) in enumerate(zip(lines, rows), start=1):
      check_row(path, number, line, row, dtype, columns)
    raise
  return values.reshape(len(lines), columns)


def split_by_graph(values: np.ndarray, starts: np.ndarray) -> RowBlocks:
  """Per-graph pieces of rows, graph i's from its start offset `starts[i]`
  (starts[0] == 0, non-decreasing) to the next graph's."""
  return RowBlocks(values, np.diff(starts, append=len(values)))


def smallest_integers(values: np.ndarray) -> np.ndarray:
  """Integer `values` in the smallest integer type that holds them all
  (atom and bond features fit a byte: a ninth of int64's memory)."""
  if not len(values):
    return values
  low, high = int(values.min()), int(values.max())
  for dtype in (np.uint8, np.int8, np.uint16, np.int16, np.int32):
    if np.iinfo(dtype).min <= low and high <= np.iinfo(dtype).max:
      return values.astype(dtype, copy=False)
  return values


def coalesce(pairs: np.ndarray, num_nodes: int, keep_self_loops: bool,
             need_lines: bool = True
             ) -> Tuple[np.ndarray, Optional[np.ndarray]]:
  """Symmetrised, de-duplicated entries sorted by (row, col) and, when
  `need_lines`, for each the A line it came from (else None): the first
  line listing it in its own direction, else the first listing it
  reversed."""
  lines = np.arange(len(pairs)) if need_lines else None
  if not keep_self_loops:
    keep = pairs[:, 0] != pairs[:, 1]
    if not keep.all():
      pairs = pairs[keep]
      lines = None if lines is None else lines[keep]
  count = len(pairs)
  keys = np.empty(2 * count, np.int64)            # row * n + col, both ways
  np.multiply(pairs[:, 0], num_nodes, out=keys[:count])
  keys[:count] += pairs[:, 1]
  np.multiply(pairs[:, 1], num_nodes, out=keys[count:])
  keys[count:] += pairs[:, 0]
  if need_lines:
    keys, first = np.unique(keys, return_index=True)
    lines = np.concatenate([lines, lines])[first]
  else:
    keys.sort()                                   # in place, no index
    fresh = np.ones(len(keys), bool)
    np.not_equal(keys[1:], keys[:-1], out=fresh[1:])
    keys = keys[fresh]
  entries = np.empty((len(keys), 2), np.int64)
  np.floor_divide(keys, num_nodes, out=entries[:, 0])
  np.remainder(keys, num_nodes, out=entries[:, 1])
  return entries, lines


def entries_by_graph(entries: np.ndarray, node_graph: np.ndarray,
                     node_starts: np.ndarray
                     ) -> Tuple[RowBlocks, np.ndarray]:
  """Per graph [E_i, 2] entries with local node ids, from `entries` [E, 2]
  of global ids sorted by row (as `coalesce` gives them; modified in
  place), `node_graph` [N] each node's 0-based graph and `node_starts` [G]
  each graph's first node; also [G] each graph's first entry."""
  entry_graph = node_graph[entries[:, 0]]
  entry_starts = np.searchsorted(entry_graph, np.arange(len(node_starts)))
  entries -= node_starts[entry_graph][:, None]
  return split_by_graph(entries, entry_starts), entry_starts
