"""The TU reader: real data sets, a hand-made set, and every bad input."""

import gzip
import json
import re
from pathlib import Path

import numpy as np
import pytest

from diffpool_jax.datasets import load_split_file, load_tu

# Figures of ../shared/data/README.md.
EXPECTED = {
    "ENZYMES": (600, {1: 100, 2: 100, 3: 100, 4: 100, 5: 100, 6: 100},
                19580, 126),
    "PROTEINS": (1113, {1: 663, 2: 450}, 43471, 620),
    "DD": (1178, {1: 691, 2: 487}, 334925, 5748),
    "MUTAG": (188, {-1: 63, 1: 125}, 3371, 28),
    "IMDB-BINARY": (1000, {0: 500, 1: 500}, 19773, 136),
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_real_sets_match_published_counts(tu_root, name):
  graphs, classes, nodes, max_nodes = EXPECTED[name]
  dataset = load_tu(name, root=tu_root, download=False)
  stats = dataset.stats()
  assert stats["graphs"] == graphs
  assert stats["class_counts"] == {str(k): v for k, v in classes.items()}
  assert stats["nodes"] == nodes and stats["nodes_max"] == max_nodes
  assert sorted(np.unique(dataset.labels)) == list(range(len(classes)))
  assert [int(v) for v in dataset.label_values] == sorted(classes)
  # Every node is kept (isolated ones included) and edges are symmetric.
  assert sum(len(f) for f in dataset.features) == nodes
  for edges in dataset.edges[:50]:
    assert {tuple(e) for e in edges} == {tuple(e) for e in edges[:, ::-1]}


def test_real_set_details(tu_root):
  enzymes = load_tu("ENZYMES", root=tu_root)
  assert enzymes.num_node_features == 3 + 18      # labels + attributes
  imdb = load_tu("IMDB-BINARY", root=tu_root)
  assert imdb.feature_kind == "default" and imdb.node_labels is None
  # IMDB lists every edge 4 times; after coalescing each entry is unique.
  assert all(len(np.unique(e, axis=0)) == len(e) for e in imdb.edges)
  mutag = load_tu("MUTAG", root=tu_root)
  assert all(len(l) == len(e) for l, e in zip(mutag.edge_labels, mutag.edges))
  dd = load_tu("DD", root=tu_root)
  assert dd.num_node_features == 82             # distinct label values


def test_errica_splits_are_read_exactly(tu_root, splits_root):
  path = splits_root / "ENZYMES_splits.json"
  raw = json.loads(path.read_text())
  folds = load_split_file(path, num_graphs=600)
  assert len(folds) == 10
  for fold, entry in zip(folds, raw):
    assert fold.test.tolist() == entry["test"]
    assert fold.train.tolist() == entry["model_selection"][0]["train"]
    assert fold.validation.tolist() == entry["model_selection"][0][
        "validation"]
  tests = np.concatenate([f.test for f in folds])
  assert sorted(tests.tolist()) == list(range(600))


# A tiny hand-made TU set: graph 1 is a triangle plus an isolated node and
# a duplicate entry and a self-loop; graph 2 is one edge.
GOOD = {
    "A": "1, 2\n2, 1\n2, 3\n3, 2\n1, 3\n3, 1\n1, 2\n2, 2\n5, 6\n6, 5\n",
    "graph_indicator": "1\n1\n1\n1\n2\n2\n",
    "graph_labels": "-1\n1\n",
    "node_labels": "0\n1\n0\n2\n1\n1\n",
    "node_attributes": "0.5, 1\n1.5, 2\n0, 0\n1, 1\n2, 2\n3, 3\n",
    "edge_labels": "1\n1\n2\n2\n3\n3\n1\n9\n4\n4\n",
}


def write_set(root: Path, tables: dict, name: str = "TOY",
              gz: bool = False) -> Path:
  folder = root / name
  folder.mkdir(parents=True, exist_ok=True)
  for table, text in tables.items():
    path = folder / f"{name}_{table}.txt"
    if gz:
      with gzip.open(str(path) + ".gz", "wt") as handle:
        handle.write(text)
    else:
      path.write_text(text)
  return root


@pytest.mark.parametrize("gz", [False, True])
def test_hand_made_set(tmp_path, gz):
  dataset = load_tu("TOY", root=write_set(tmp_path, GOOD, gz=gz),
                    download=False)
  np.testing.assert_array_equal(dataset.n_node, [4, 2])
  np.testing.assert_array_equal(dataset.labels, [0, 1])
  np.testing.assert_array_equal(dataset.label_values, [-1, 1])
  np.testing.assert_array_equal(
      dataset.edges[0], [[0, 1], [0, 2], [1, 0], [1, 2], [2, 0], [2, 1]])
  np.testing.assert_array_equal(dataset.edges[1], [[0, 1], [1, 0]])
  np.testing.assert_array_equal(dataset.edge_labels[0][:, 0],
                                [1, 3, 1, 2, 3, 2])
  # Default features: one-hot labels (values 0, 1, 2) then attributes.
  assert dataset.features[0].shape == (4, 5)
  np.testing.assert_array_equal(dataset.features[0][3], [0, 0, 1, 1, 1])
  with_loops = load_tu("TOY", root=tmp_path, keep_self_loops=True)
  assert [1, 1] in with_loops.edges[0].tolist()
  assert with_loops.stats()["edges"] == 5 and dataset.stats()["edges"] == 4


def broken(table, text):
  return {**GOOD, table: text}


BAD_INPUTS = [
    # (tables, error type, message pattern)
    (broken("graph_indicator", "1, 1\n" * 4 + "2, 2\n" * 2), ValueError,
     r"TOY_graph_indicator.txt: line 1 has 2 values, expected one graph id"),
    ({k: v for k, v in GOOD.items() if k != "graph_indicator"},
     FileNotFoundError, r"missing required file .*TOY_graph_indicator"),
    ({k: v for k, v in GOOD.items() if k != "graph_labels"},
     FileNotFoundError, r"missing required file .*TOY_graph_labels"),
    (broken("node_labels", "0\n1\n0\n2\n1\n"), ValueError,
     r"TOY_node_labels.txt: has 5 lines, expected 6"),
    (broken("node_attributes", "1, 1\n" * 7), ValueError,
     r"TOY_node_attributes.txt: has 7 lines, expected 6"),
    (broken("edge_labels", "1\n" * 9), ValueError,
     r"TOY_edge_labels.txt: has 9 lines, expected 10"),
    (broken("graph_labels", "-1\n1\n1\n"), ValueError,
     r"TOY_graph_labels.txt: has 3 lines, but .*TOY_graph_indicator.txt "
     r"names graphs only up to 2"),
    # A graph_labels file one line short is blamed on itself.
    (broken("graph_labels", "-1\n"), ValueError,
     r"TOY_graph_labels.txt: has 1 lines, but .*TOY_graph_indicator.txt "
     r"names graphs up to 2: one graph label per graph is missing"),
    # Ragged rows that cancel out are caught at the first of them.
    (broken("node_attributes", "0.5, 1\n1.5\n0, 0, 7\n1, 1\n2, 2\n3, 3\n"),
     ValueError, r"TOY_node_attributes.txt: line 2 has 1 values, expected 2"),
    (broken("A", "1, 2\n2\n2, 3, 3\n3, 2\n"), ValueError,
     r"TOY_A.txt: line 2 has 1 values, expected 2"),
    # Graph labels must be integer class ids.
    (broken("graph_labels", "0.5\n1\n"), ValueError,
     r"TOY_graph_labels.txt: line 1: graph label '0.5' is not an integer"),
    (broken("graph_labels", "1\nnan\n"), ValueError,
     r"TOY_graph_labels.txt: line 2: graph label 'nan' is not an integer"),
    (broken("graph_labels", "inf\n1\n"), ValueError,
     r"TOY_graph_labels.txt: line 1: graph label 'inf' is not an integer"),
    (broken("graph_labels", "1\n12345678901234567891\n"), ValueError,
     r"TOY_graph_labels.txt: line 2: graph label '12345678901234567891'"),
    (broken("A", "1, 2\n2, 99999999999999999999\n"), ValueError,
     r"TOY_A.txt: line 2: a value is too large for int64"),
    (broken("node_attributes", "0.5, 1\n1.5, 2\n0, nan\n1, 1\n2, 2\n3, 3\n"),
     ValueError, r"TOY_node_attributes.txt: line 3: a value is not finite"),
    (broken("graph_indicator", "1\n1\n1\n1\n2\n"), ValueError,
     r"TOY_A.txt: line 9: node id 6 is outside 1..5"),
    (broken("graph_labels", "-1\nabc\n"), ValueError,
     r"TOY_graph_labels.txt: line 2 is not numeric: 'abc'"),
    (broken("A", "1, 2\n\n2, 1\n"), ValueError,
     r"TOY_A.txt: line 2 is empty"),
    (broken("A", "1, 2\n2, x\n"), ValueError,
     r"TOY_A.txt: line 2 is not numeric"),
    (broken("A", "1, 0\n"), ValueError,
     r"TOY_A.txt: line 1: node id 0 is outside 1..6"),
    (broken("A", "1, 5\n"), ValueError,
     r"TOY_A.txt: line 1: the edge joins nodes of graphs 1 and 2"),
    (broken("graph_indicator", "1\n1\n2\n1\n2\n2\n"), ValueError,
     r"TOY_graph_indicator.txt: line 4: graph ids are not sorted"),
    (broken("graph_indicator", "1\n1\n1\n1\n3\n3\n"), ValueError,
     r"TOY_graph_indicator.txt: line 5: graph ids jump to 3; graph 2 has "
     r"no nodes"),
    (broken("node_attributes", "0.5, 1\n1.5\n0, 0\n1, 1\n2, 2\n3, 3\n"),
     ValueError, r"TOY_node_attributes.txt: line 2 has 1 values, expected 2"),
    (broken("graph_labels", ""), ValueError, r"TOY_graph_labels.txt: the "
     r"file is empty"),
]


@pytest.mark.parametrize("tables, error, message", BAD_INPUTS)
def test_bad_input_raises_clear_error(tmp_path, tables, error, message):
  with pytest.raises(error, match=message):
    load_tu("TOY", root=write_set(tmp_path, tables), download=False)


def test_integer_valued_float_labels_are_class_ids(tmp_path):
  dataset = load_tu("TOY", root=write_set(
      tmp_path, broken("graph_labels", "-1.0\n1.0\n")), download=False)
  np.testing.assert_array_equal(dataset.label_values, [-1, 1])
  assert dataset.label_values.dtype == np.int64


@pytest.mark.parametrize("content", [b"not a gzip file", b"\x1f\x8b\x08"])
def test_unreadable_gz_names_the_file(tmp_path, content):
  root = write_set(tmp_path, {k: v for k, v in GOOD.items() if k != "A"})
  (root / "TOY" / "TOY_A.txt.gz").write_bytes(content)
  with pytest.raises(ValueError, match=r"TOY_A.txt.gz: cannot be read as "
                     "text"):
    load_tu("TOY", root=root, download=False)


def test_missing_set_without_download(tmp_path):
  with pytest.raises(FileNotFoundError, match="TU data set 'NOPE' not found"):
    load_tu("NOPE", root=tmp_path, download=False)


def test_feature_request_the_set_cannot_serve(tmp_path):
  tables = {k: v for k, v in GOOD.items() if k != "node_labels"}
  with pytest.raises(ValueError, match="needs node labels"):
    load_tu("TOY", root=write_set(tmp_path, tables), features="labels")


def test_split_file_errors(tmp_path):
  path = tmp_path / "splits.json"
  path.write_text("[{\"test\": [0, 7]}]")
  with pytest.raises(ValueError, match="fold 0 lacks test / model_selection"):
    load_split_file(path, num_graphs=5)
  path.write_text(json.dumps([{"test": [0, 7], "model_selection": [
      {"train": [1], "validation": [2]}]}]))
  with pytest.raises(ValueError, match="index outside 0..4"):
    load_split_file(path, num_graphs=5)
  path.write_text("{")
  with pytest.raises(ValueError, match="not valid JSON"):
    load_split_file(path, num_graphs=5)


def split_file(tmp_path, train, validation, test):
  path = tmp_path / "splits.json"
  path.write_text(json.dumps([{"test": test, "model_selection": [
      {"train": train, "validation": validation}]}]))
  return path


@pytest.mark.parametrize("parts, message", [
    (([0, 1, 2], [3], [2, 4]), "fold 0: graph 2 is in both train and test"),
    (([0, 1], [4], [3, 4]), "graph 4 is in both validation and test"),
    (([0, 1.0], [2], [3]), "fold 0 train: expected a list of integer"),
    (([0, 1], [2], []), "fold 0 test: is empty"),
    (([0, 1, 1], [2], [3]), "fold 0 train: lists a graph twice"),
    (([0, 1], [2], "3"), "fold 0 test: expected a list"),
])
def test_bad_split_folds_are_refused(tmp_path, parts, message):
  with pytest.raises(ValueError, match=message):
    load_split_file(split_file(tmp_path, *parts), num_graphs=5)


def test_fewer_folds_in_the_file_than_asked(tmp_path):
  from diffpool_jax.datasets import synthetic_hierarchical
  from diffpool_jax.run import RunConfig, make_folds
  dataset = synthetic_hierarchical(num_graphs=5, seed=0)
  path = split_file(tmp_path, [0, 1], [2], [3, 4])
  config = RunConfig(protocol="fair", folds=3, splits=str(path))
  with pytest.raises(ValueError, match="holds 1 folds, fewer than folds=3"):
    make_folds(config, dataset)
  assert len(make_folds(RunConfig(protocol="fair", folds=1,
                                  splits=str(path)), dataset)) == 1
  missing = tmp_path / "no_such_splits.json"
  for path, what in ((missing, "no such file"),
                     (tmp_path, "is a folder; give its NAME_splits.json")):
    with pytest.raises(ValueError,
                       match=f"^{re.escape(f'splits {path}: {what}')}$"):
      make_folds(RunConfig(protocol="fair", folds=2, splits=str(path)),
                 dataset)
