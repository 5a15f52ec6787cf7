"""The vectorised TU reader against the line-by-line one, and the
processed cache: used while nothing changed, never stale, never fatal."""

import numpy as np
import pytest

from diffpool_jax.datasets import GraphDataset, load_tu, processed
from diffpool_jax.datasets.blocks import RowBlocks, block_counts, stacked
from diffpool_jax.datasets.tables import (parse_table, read_table_by_line,
                                          smallest_integers)
from tests.test_tu import GOOD, write_set


@pytest.fixture(autouse=True)
def own_cache(tmp_path, monkeypatch):
  """A processed cache of this test's own (the same raw files elsewhere
  would be found in a shared one, by content)."""
  monkeypatch.setenv("DIFFPOOL_JAX_DATA", str(tmp_path / "cache"))


def assert_same_graphs(a, b):
  assert a.name == b.name and a.feature_kind == b.feature_kind
  for field in ("n_node", "labels", "label_values", "graph_attributes"):
    np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
  for field in ("edges", "features", "node_labels", "node_attributes",
                "edge_labels", "edge_attributes"):
    left, right = getattr(a, field), getattr(b, field)
    assert (left is None) == (right is None), field
    for x, y in zip(left or (), right or ()):
      assert x.dtype == y.dtype, field
      np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize("text, dtype", [
    ("1, 2\n3, 4\n", np.int64), ("1,2\r\n3,4\r\n\n\n", np.int64),
    ("7\n8\n9", np.int64), ("0.5, -1e-3, 2\n3, 4, 5.25\n", np.float32),
    ("  1 ,  2\n3 4\n", np.int64), ("1,,2\n3,4\n", np.int64)])
def test_one_pass_parse_equals_the_line_by_line_reader(tmp_path, text, dtype):
  path = tmp_path / "table.txt"
  path.write_text(text)
  fast = parse_table(path.read_bytes(), dtype)
  slow = read_table_by_line(path, dtype)
  assert fast is not None and fast.dtype == slow.dtype
  np.testing.assert_array_equal(fast, slow)


@pytest.mark.parametrize("text", ["1, 2\n\n3, 4\n", "1, 2\n3\n", "1, x\n",
                                  "", "\n1, 2\n", "1.5, 2\n",
                                  "99999999999999999999, 1\n"])
def test_one_pass_parse_hands_bad_tables_to_the_line_reader(text):
  assert parse_table(text.encode(), np.int64) is None


def test_second_read_comes_from_the_cache_and_equals_the_first(tmp_path):
  root = write_set(tmp_path, GOOD)
  first = load_tu("TOY", root=root, download=False)
  assert "parsed the raw files" in first.origin
  assert "processed cache written to" in first.origin
  second = load_tu("TOY", root=root, download=False)
  assert second.origin.startswith("read from the processed cache")
  assert_same_graphs(first, second)
  uncached = load_tu("TOY", root=root, download=False, cache=False)
  assert_same_graphs(first, uncached)
  assert "cache" not in uncached.origin.split(" (")[0]


def test_changed_raw_files_are_parsed_again(tmp_path):
  root = write_set(tmp_path, GOOD)
  first = load_tu("TOY", root=root, download=False)
  labels = root / "TOY" / "TOY_graph_labels.txt"
  assert labels.read_text() == "-1\n1\n"
  labels.write_text("1\n-1\n")              # same size, labels swapped
  second = load_tu("TOY", root=root, download=False)
  assert "parsed the raw files" in second.origin
  np.testing.assert_array_equal(second.labels, 1 - first.labels)


def test_a_new_reader_version_parses_again(tmp_path, monkeypatch):
  root = write_set(tmp_path, GOOD)
  load_tu("TOY", root=root, download=False)
  monkeypatch.setattr(processed, "READER_VERSION",
                      processed.READER_VERSION + 1)
  assert "parsed" in load_tu("TOY", root=root, download=False).origin


@pytest.mark.parametrize("damage", [b"", b"not an npz at all", None])
def test_a_damaged_cache_is_never_used(tmp_path, damage):
  root = write_set(tmp_path, GOOD)
  first = load_tu("TOY", root=root, download=False)
  path = processed.cache_path("TOY", "tu")
  data = path.read_bytes()
  if damage is None:                   # same size, bytes flipped mid-file
    middle = len(data) // 2
    damage = data[:middle] + bytes(b ^ 0xFF for b in data[middle:middle + 64]
                                   ) + data[middle + 64:]
  path.write_bytes(damage)
  again = load_tu("TOY", root=root, download=False)
  assert_same_graphs(first, again)
  if processed.load(path, "any") is None and "parsed" in again.origin:
    assert "processed cache written" in again.origin      # and repaired
    assert load_tu("TOY", root=root, download=False).origin.startswith(
        "read from")


def test_an_unwritable_cache_folder_only_costs_parsing(tmp_path, monkeypatch):
  blocker = tmp_path / "file"
  blocker.write_text("not a folder")
  monkeypatch.setenv("DIFFPOOL_JAX_DATA", str(blocker))
  root = write_set(tmp_path, GOOD)
  dataset = load_tu("TOY", root=root, download=False)
  assert "processed cache not written" in dataset.origin
  assert blocker.read_text() == "not a folder"
  assert dataset.num_graphs == 2


def test_the_cache_keeps_the_reader_options_apart(tmp_path):
  root = write_set(tmp_path, GOOD)
  loops = load_tu("TOY", root=root, download=False, keep_self_loops=True)
  plain = load_tu("TOY", root=root, download=False)
  assert "parsed" in plain.origin          # another key: not the loops copy
  assert sum(map(len, loops.edges)) >= sum(map(len, plain.edges))


def test_data_benchmark_reads_three_ways(tmp_path):
  import json
  import subprocess
  import sys
  from tests.test_train_command import REPO
  root = write_set(tmp_path, GOOD, gz=True)
  out = tmp_path / "report.json"
  done = subprocess.run(
      [sys.executable, "-m", "experiments.benchmarks.data", "--dataset",
       "TOY", "--data-root", str(root), "--out", str(out)],
      cwd=REPO, capture_output=True, text=True, timeout=300)
  assert done.returncode == 0, done.stderr[-2000:]
  reads = json.loads(out.read_text())["reads"]
  assert [r["read"] for r in reads] == ["line by line", "one pass", "cached"]
  assert "parsed the raw files" in reads[0]["origin"]
  assert reads[2]["origin"].startswith("read from the processed cache")
  assert all(r["graphs"] == 2 and r["entries"] == reads[0]["entries"]
             for r in reads)
  assert "one pass vs line by line" in done.stdout


def test_row_blocks_read_as_the_list_of_per_graph_arrays():
  rows = np.arange(14).reshape(7, 2)
  counts = np.array([3, 0, 4])
  blocks = RowBlocks(rows, counts)
  expected = np.split(rows, np.cumsum(counts)[:-1])
  assert len(blocks) == 3
  for got, want in zip(blocks, expected, strict=True):
    np.testing.assert_array_equal(got, want)
  np.testing.assert_array_equal(blocks[-1], expected[2])
  np.testing.assert_array_equal(blocks[np.int64(1)], expected[1])
  assert [b.tolist() for b in blocks[1:]] == [e.tolist() for e in expected[1:]]
  with pytest.raises(IndexError, match="graph 3 outside 0..2"):
    blocks[3]
  assert stacked(blocks) is rows
  np.testing.assert_array_equal(stacked(expected), rows)
  np.testing.assert_array_equal(block_counts(expected), counts)
  with pytest.raises(ValueError, match="7 rows, but the per-graph counts "
                     "sum to 6"):
    RowBlocks(rows, [3, 3])


@pytest.mark.parametrize("values, dtype", [
    ([0, 5, 255], np.uint8), ([-1, 127], np.int8), ([0, 256], np.uint16),
    ([-129, 3], np.int16), ([0, 2**31 - 1], np.int32),
    ([-1, 2**31], np.int64)])
def test_labels_are_kept_in_the_smallest_integer_type(values, dtype):
  narrow = smallest_integers(np.array(values, np.int64))
  assert narrow.dtype == dtype
  assert narrow.tolist() == values


def test_first_and_cached_reads_give_the_same_compact_arrays(tmp_path):
  root = write_set(tmp_path, GOOD)
  first = load_tu("TOY", root=root, download=False)
  second = load_tu("TOY", root=root, download=False)
  for dataset in (first, second):
    assert isinstance(dataset.edges, RowBlocks)
    assert dataset.edges.rows.dtype == np.int32
    assert dataset.node_labels.rows.dtype == np.uint8
  assert_same_graphs(first, second)


@pytest.mark.parametrize("targets", [
    np.array([[1, 0], [np.nan, 1]], np.float32),            # float16 on disk
    np.array([[0.1], [-1234.567], [np.nan]], np.float32)])  # float32 on disk
def test_cached_targets_are_exactly_the_parsed_ones(tmp_path, targets):
  dataset = GraphDataset(
      name="T", n_node=np.ones(len(targets), np.int64),
      edges=[np.zeros((0, 2), np.int64)] * len(targets),
      labels=np.zeros(len(targets), np.int64),
      label_values=np.zeros(0), features=[], feature_kind="",
      targets=targets)
  path = tmp_path / "T.npz"
  assert processed.save(path, processed.compact(dataset), "key")
  back = processed.load(path, "key")
  assert back.targets.dtype == np.float32
  np.testing.assert_array_equal(back.targets, targets)
