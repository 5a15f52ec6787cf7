"""The TU and OGB readers under fuzzing (hypothesis): each raw file of a
tiny set is corrupted at random (truncated, bytes flipped in the text or in
the gzip stream, lines dropped or duplicated, columns swapped or dropped, a
number changed). Every corruption must either end in a one-line ValueError
or FileNotFoundError naming the file at fault, or load exactly the data set
that a reference reading of the corrupted tables gives: never a traceback,
never a silently different data set.

The reference reads each table with the readers' shared tokenizer
(`tables.read_table`, tested on its own in test_tu.py and test_ogb.py) and
assembles the data set in plain Python, line by line, from the formats'
definitions (TU: 1-based node ids, graph indicator sorted and contiguous;
OGB: per-graph counts, 0-based ids within each graph; both: symmetrised,
de-duplicated edges without self-loops, each entry's edge features from
the first line that lists it, else from the first that lists it
reversed).
"""

import gzip
import random
from pathlib import Path

import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings, strategies as st  # noqa: E402

from diffpool_jax.datasets import tables  # noqa: E402
from diffpool_jax.datasets.ogb import load_ogb  # noqa: E402
from diffpool_jax.datasets.tu import load_tu  # noqa: E402

TU_FILES = {
    "A": "1, 2\n2, 1\n2, 3\n3, 2\n1, 2\n4, 5\n5, 4\n6, 7\n7, 8\n8, 9\n9, 6\n",
    "graph_indicator": "1\n1\n1\n2\n2\n3\n3\n3\n3\n4\n",
    "graph_labels": "-1\n1\n1\n-1\n",
    "node_labels": "0\n1\n0\n2\n2\n1\n0\n0\n1\n3\n",
    "edge_labels": "1\n1\n2\n2\n1\n3\n3\n1\n2\n1\n2\n",
    "node_attributes": "0.5, 1\n1.5, 2\n-1, 0\n3, 3\n2, 1\n0, 0\n1, 1\n"
                       "2, 2\n0.25, 4\n9, 9\n",
}
OGB_FILES = {
    "raw/num-node-list": "3\n2\n4\n1\n",
    "raw/num-edge-list": "3\n1\n4\n0\n",
    "raw/edge": "0,1\n1,2\n0,1\n0,1\n0,1\n1,2\n2,3\n3,0\n",
    "raw/node-feat": "5,0\n6,1\n5,0\n7,1\n6,0\n6,0\n5,1\n7,0\n6,1\n8,1\n",
    "raw/edge-feat": "1\n2\n3\n4\n1\n2\n3\n4\n",
    "raw/graph-label": "1,0.5\n0,\nnan,1.25\n1,2\n",
    "split/scaffold/train": "0\n3\n",
    "split/scaffold/valid": "1\n",
    "split/scaffold/test": "2\n",
}


class Refused(Exception):
  """The reference's refusal (any reason)."""


def table(path: Path, dtype, rows=None):
  try:
    return tables.read_table(path, dtype, rows)
  except ValueError as error:
    raise Refused(str(error)) from None


def edges_with_lines(pairs, count):
  """{(i, j): its line} symmetrised, self-loops dropped, global ids: the
  first line listing (i, j), else the first listing (j, i)."""
  forward, backward = {}, {}
  for line, (a, b) in enumerate(pairs):
    if a != b:
      forward.setdefault((a, b), line)
      backward.setdefault((b, a), line)
  return {**backward, **forward}


def reference_tu(folder: Path, name: str):
  """(n_node, per-graph sorted local edges, labels, label values, node
  labels, per-graph edge labels, node attributes), or Refused."""
  path = lambda t: next(folder.glob(f"{name}_{t}.txt*"))
  raw = table(path("graph_labels"), np.float64)
  if raw.shape[1] != 1 or not np.all(np.isfinite(raw)) or np.any(
      raw != np.round(raw)) or np.any(np.abs(raw) >= 2.0**53):
    raise Refused("labels")
  labels = raw[:, 0].astype(np.int64)
  indicator = table(path("graph_indicator"), np.int64)
  if indicator.shape[1] != 1:
    raise Refused("indicator columns")
  indicator = [int(v) for v in indicator[:, 0]]
  graphs = len(labels)
  if indicator[0] != 1 or indicator[-1] != graphs or any(
      b - a not in (0, 1) for a, b in zip(indicator, indicator[1:])):
    raise Refused("indicator")
  nodes = len(indicator)
  pairs = table(path("A"), np.int64)
  if pairs.shape[1] != 2:
    raise Refused("A columns")
  pairs = [(int(a) - 1, int(b) - 1) for a, b in pairs]
  for a, b in pairs:
    if not (0 <= a < nodes and 0 <= b < nodes) or (
        indicator[a] != indicator[b]):
      raise Refused("A ids")
  first = edges_with_lines(pairs, nodes)
  starts = [indicator.index(g + 1) for g in range(graphs)]
  n_node = [indicator.count(g + 1) for g in range(graphs)]
  edges = [sorted((a - starts[indicator[a] - 1], b - starts[indicator[a] - 1])
                  for a, b in first if indicator[a] == g + 1)
           for g in range(graphs)]
  node_labels = table(path("node_labels"), np.int64, nodes)
  edge_labels = table(path("edge_labels"), np.int64, len(pairs))
  attributes = table(path("node_attributes"), np.float32, nodes)
  if not np.all(np.isfinite(attributes)):
    raise Refused("attributes")
  per_edge = [[edge_labels[first[(a + starts[g], b + starts[g])]].tolist()
               for a, b in edges[g]] for g in range(graphs)]
  values = sorted(set(labels.tolist()))
  return (n_node, edges, [values.index(v) for v in labels], values,
          node_labels.tolist(), per_edge, attributes.tolist())


def reference_ogb(folder: Path):
  """(n_node, per-graph sorted local edges, node codes, per-graph edge
  codes, targets with NaN as None, split), or Refused."""
  raw = folder / "raw"
  path = lambda stem: next(p for p in folder.glob(f"{stem}.csv*"))
  n_node = table(path("raw/num-node-list"), np.int64)
  if n_node.shape[1] != 1 or np.any(n_node < 1):
    raise Refused("num-node-list")
  n_node = n_node[:, 0].tolist()
  graphs = len(n_node)
  n_edge = table(path("raw/num-edge-list"), np.int64, graphs)
  if n_edge.shape[1] != 1 or np.any(n_edge < 0):
    raise Refused("num-edge-list")
  n_edge = n_edge[:, 0].tolist()
  local = table(path("raw/edge"), np.int64, sum(n_edge))
  if local.shape[1] != 2:
    raise Refused("edge columns")
  starts = np.concatenate([[0], np.cumsum(n_node)[:-1]]).tolist()
  pairs, owner = [], []
  for g, count in enumerate(n_edge):
    for _ in range(count):
      a, b = (int(v) for v in local[len(pairs)])
      if not (0 <= a < n_node[g] and 0 <= b < n_node[g]):
        raise Refused("edge ids")
      pairs.append((a + starts[g], b + starts[g]))
      owner.append(g)
  first = edges_with_lines(pairs, sum(n_node))
  graph_of = [g for g, n in enumerate(n_node) for _ in range(n)]
  edges = [sorted((a - starts[g], b - starts[g]) for a, b in first
                  if graph_of[a] == g) for g in range(graphs)]
  codes = table(path("raw/node-feat"), np.int64, sum(n_node))
  edge_codes = table(path("raw/edge-feat"), np.int64, len(pairs))
  per_edge = [[edge_codes[first[(a + starts[g], b + starts[g])]].tolist()
               for a, b in edges[g]] for g in range(graphs)]
  try:
    from diffpool_jax.datasets.ogb import read_targets
    targets = read_targets(path("raw/graph-label"), graphs)
  except ValueError as error:
    raise Refused(str(error)) from None
  split, seen = {}, set()
  for part in ("train", "valid", "test"):
    ids = table(path(f"split/scaffold/{part}"), np.int64)
    if ids.shape[1] != 1:
      raise Refused("split columns")
    ids = ids[:, 0].tolist()
    if any(not 0 <= i < graphs or i in seen for i in ids) or len(
        set(ids)) != len(ids):
      raise Refused("split ids")
    seen |= set(ids)
    split[part] = sorted(ids)
  if len(seen) != graphs:
    raise Refused("split partition")
  return (n_node, edges, codes.tolist(), per_edge,
          [[None if np.isnan(v) else float(v) for v in row]
           for row in targets], split)


def tu_view(data):
  node_labels = np.concatenate(list(data.node_labels)).tolist()
  attributes = np.concatenate(list(data.node_attributes)).tolist()
  return (data.n_node.tolist(),
          [sorted(map(tuple, e.tolist())) for e in data.edges],
          data.labels.tolist(), data.label_values.tolist(), node_labels,
          [[row.tolist() for row in sorted_rows(e, l)]
           for e, l in zip(data.edges, data.edge_labels)], attributes)


def sorted_rows(edges, values):
  order = sorted(range(len(edges)), key=lambda i: tuple(edges[i]))
  return [np.asarray(values[i]) for i in order]


def ogb_view(data):
  return (data.n_node.tolist(),
          [sorted(map(tuple, e.tolist())) for e in data.edges],
          np.concatenate(list(data.node_labels)).tolist(),
          [[row.tolist() for row in sorted_rows(e, l)]
           for e, l in zip(data.edges, data.edge_labels)],
          [[None if np.isnan(v) else float(v) for v in row]
           for row in data.targets],
          {k: v.tolist() for k, v in data.official_split.items()})


# --- corruptions ---------------------------------------------------------------

def lines_of(text):
  return text.split("\n")


def corrupt_text(text: str, kind: str, rng: random.Random) -> str:
  lines = lines_of(text)
  row = rng.randrange(len(lines))
  if kind == "truncate":
    return text[:rng.randrange(len(text) + 1)]
  if kind == "flip":
    data = bytearray(text.encode())
    for _ in range(rng.randint(1, 3)):
      if data:
        data[rng.randrange(len(data))] = rng.randrange(256)
    return data.decode("latin-1")
  if kind == "drop_line":
    del lines[row]
  elif kind == "duplicate_line":
    lines.insert(row, lines[row])
  elif kind in ("swap_columns", "drop_column"):
    separator = "," if "," in text else " "
    out = []
    for number, line in enumerate(lines):
      fields = line.split(separator)
      if (number == row or rng.random() < 0.5) and len(fields) > 1:
        if kind == "swap_columns":
          fields[0], fields[-1] = fields[-1], fields[0]
        else:
          del fields[rng.randrange(len(fields))]
      out.append(separator.join(fields))
    lines = out
  elif kind == "change_number":
    fields = lines[row].replace(",", " ").split()
    if fields:
      fields[rng.randrange(len(fields))] = rng.choice(
          ["0", "1", "-1", "7", "999", "2.5", "nan", "inf", "", "x", "1e400"])
      lines[row] = ", ".join(fields)
  return "\n".join(lines)


KINDS = ("truncate", "flip", "drop_line", "duplicate_line", "swap_columns",
         "drop_column", "change_number", "gzip_bytes")


def write(folder: Path, files, target: str, kind: str, seed: int,
          suffix: str):
  """The files under folder (gzipped), `target` corrupted by `kind`."""
  rng = random.Random(seed)
  for stem, text in files.items():
    path = folder / f"{stem}{suffix}"
    path.parent.mkdir(parents=True, exist_ok=True)
    if stem == target and kind != "gzip_bytes":
      text = corrupt_text(text, kind, rng)
    data = gzip.compress(text.encode("latin-1"), mtime=0)
    if stem == target and kind == "gzip_bytes":
      data = bytearray(data)
      if rng.random() < 0.5:
        data = data[:rng.randrange(len(data))]
      else:
        data[rng.randrange(len(data))] ^= 1 + rng.randrange(255)
    path.write_bytes(bytes(data))


def check(load, reference, view, target_name):
  """Both refuse (the reader in one line naming the file), or both load
  and agree."""
  try:
    expected = reference()
  except (Refused, StopIteration):
    expected = None
  try:
    data = load()
  except (ValueError, FileNotFoundError) as error:
    message = str(error)
    assert "\n" not in message, message
    assert target_name in message, (target_name, message)
    assert expected is None, ("refused what the reference reads", message)
    hypothesis.event("refused")
    return
  assert expected is not None, "loaded what the reference refuses"
  assert view(data) == expected
  hypothesis.event("read")


FUZZ = settings(max_examples=400, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow])


def tu_case(folder: Path, target: str, kind: str, seed: int):
  """The TU set in folder/TOY with `target` corrupted: (load, reference,
  view, the corrupted file's name)."""
  folder = folder / "TOY"
  write(folder, {f"TOY_{k}": v for k, v in TU_FILES.items()},
        f"TOY_{target}", kind, seed, ".txt.gz")
  return (lambda: load_tu("TOY", root=folder.parent, download=False,
                          cache=False),
          lambda: reference_tu(folder, "TOY"), tu_view, f"TOY_{target}")


def ogb_case(folder: Path, target: str, kind: str, seed: int):
  """The OGB set in folder/ogbg_toy with `target` corrupted (as tu_case)."""
  folder = folder / "ogbg_toy"
  write(folder, OGB_FILES, target, kind, seed, ".csv.gz")
  return (lambda: load_ogb("ogbg-toy", root=folder.parent, download=False,
                           cache=False),
          lambda: reference_ogb(folder), ogb_view, target.split("/")[-1])


FORMATS = {"tu": (TU_FILES, tu_case), "ogb": (OGB_FILES, ogb_case)}


@pytest.mark.parametrize("form", sorted(FORMATS))
def test_readers_refuse_or_read_what_the_bytes_say(tmp_path_factory, form):
  files, case = FORMATS[form]

  @FUZZ
  @given(target=st.sampled_from(sorted(files)), kind=st.sampled_from(KINDS),
         seed=st.integers(0, 2**16))
  def corrupted(target, kind, seed):
    check(*case(tmp_path_factory.mktemp(form), target, kind, seed))

  corrupted()


def test_the_clean_sets_read_as_the_reference_says(tmp_path):
  folder = tmp_path / "TOY"
  write(folder, {f"TOY_{k}": v for k, v in TU_FILES.items()}, "", "", 0,
        ".txt.gz")
  data = load_tu("TOY", root=tmp_path, download=False, cache=False)
  assert tu_view(data) == reference_tu(folder, "TOY")
  assert data.n_node.tolist() == [3, 2, 4, 1]
  folder = tmp_path / "ogbg_toy"
  write(folder, OGB_FILES, "", "", 0, ".csv.gz")
  data = load_ogb("ogbg-toy", root=tmp_path, download=False, cache=False)
  assert ogb_view(data) == reference_ogb(folder)
  assert data.n_node.tolist() == [3, 2, 4, 1]
