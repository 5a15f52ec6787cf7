"""The OGB graph-property reader, the reader registry, the processed cache
per reader and the fixed-split protocol."""

import gzip
import json
from pathlib import Path

import numpy as np
import pytest

from diffpool_jax.datasets import processed
from diffpool_jax.datasets.ogb import fill_empty_fields, load_ogb
from diffpool_jax.datasets.readers import (READERS, Reader, find_format,
                                           read_dataset, register_reader)
from diffpool_jax.protocols import PROTOCOLS, fixed_split_protocol
from diffpool_jax.run import RunConfig
from diffpool_jax.run.members import load_dataset, make_folds
from diffpool_jax.tasks import Task, task_of
from tests.helpers import write_gzipped

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "ogb"

# Three graphs: a path 0-1-2 (with a repeated bond), a single node, and
# an edge 0-1; two tasks, one label missing ("nan", and an empty field).
TOY = {
    "raw/num-node-list": "3\n1\n2\n",
    "raw/num-edge-list": "3\n0\n1\n",
    "raw/edge": "0,1\n1,2\n2,1\n0,1\n",
    "raw/node-feat": "5,0\n6,1\n5,0\n7,1\n6,0\n6,0\n",
    "raw/edge-feat": "1\n2\n3\n4\n",
    "raw/graph-label": "1,0\n0,\nnan,1\n",
    "split/scaffold/train": "0\n2\n",
    "split/scaffold/valid": "1\n",
    "split/scaffold/test": "",
}


def write_ogb(tmp_path, changes=None, name="ogbg_toy") -> Path:
  """A toy OGB folder under tmp_path (gzipped tables); returns the root."""
  write_gzipped(tmp_path / name, {**TOY, **(changes or {})})
  return tmp_path


@pytest.fixture(autouse=True)
def own_cache(tmp_path, monkeypatch):
  monkeypatch.setenv("DIFFPOOL_JAX_DATA", str(tmp_path / "cache"))


def test_the_reader_gives_graphs_features_targets_and_split(tmp_path):
  root = write_ogb(tmp_path, {"split/scaffold/valid": "1\n",
                              "split/scaffold/test": ""})
  with pytest.raises(ValueError, match="ogbg_toy/split/scaffold/test.csv.gz"
                     ": the file is empty"):
    load_ogb("ogbg-toy", root=root, download=False)
  root = write_ogb(tmp_path, {"split/scaffold/train": "0\n",
                              "split/scaffold/test": "2\n"})
  data = load_ogb("ogbg-toy", root=root, download=False)
  np.testing.assert_array_equal(data.n_node, [3, 1, 2])
  np.testing.assert_array_equal(data.edges[0], [[0, 1], [1, 0], [1, 2],
                                                [2, 1]])
  assert data.edges[1].shape == (0, 2)
  np.testing.assert_array_equal(data.edges[2], [[0, 1], [1, 0]])
  # each entry keeps the features of its first line, read forwards
  # before backwards: (1,2) and (2,1) are lines of their own here
  np.testing.assert_array_equal(data.edge_labels[0][:, 0], [1, 1, 2, 3])
  np.testing.assert_array_equal(data.edge_labels[2][:, 0], [4, 4])
  np.testing.assert_array_equal(data.node_labels[2], [[6, 0], [6, 0]])
  np.testing.assert_array_equal(data.targets,
                                [[1, 0], [0, np.nan], [np.nan, 1]])
  assert data.num_classes == 0                 # two tasks: no single class
  assert {k: v.tolist() for k, v in data.official_split.items()} == {
      "train": [0], "valid": [1], "test": [2]}
  # default: the atom features as codes (values 5, 6, 7 and 0, 1 ranked)
  assert data.feature_kind == "codes"
  np.testing.assert_array_equal(data.features[0], [[0, 0], [1, 1], [0, 0]])
  hot = load_ogb("ogbg_toy", root=root, download=False, features="labels")
  assert hot.features[0].shape == (3, 3 + 2)   # one-hot per column
  again = load_ogb("ogbg_toy", root=root, download=False)
  assert "read from the processed cache" in again.origin
  assert "ogb reader" in again.origin
  np.testing.assert_array_equal(again.targets, data.targets)
  assert again.official_split.keys() == data.official_split.keys()


GOOD_SPLIT = {"split/scaffold/train": "0\n", "split/scaffold/test": "2\n"}


@pytest.mark.parametrize("changes, message", [
    ({"raw/node-feat": "5,0\n6\n5,0\n7,1\n6,0\n6,0\n"},
     r"raw/node-feat.csv.gz: line 2 has 1 values, expected 2"),
    ({"raw/node-feat": "5,0\n6,1\n"},
     r"raw/node-feat.csv.gz: has 2 lines, expected 6"),
    ({"raw/num-edge-list": "3\n0\n"},
     r"raw/num-edge-list.csv.gz: has 2 lines, expected 3"),
    ({"raw/edge": "0,1\n1,2\n2,1\n"},
     r"raw/edge.csv.gz: has 3 lines, expected 4"),
    ({"raw/edge": "0,1\n1,3\n2,1\n0,1\n"},
     r"raw/edge.csv.gz: line 2: node 3 \(dst\) is outside graph 0's 0..2"),
    ({"raw/edge": "0,1\n1,2\n2,1\n0,2\n"},
     r"raw/edge.csv.gz: line 4: node 2 \(dst\) is outside graph 2's 0..1"),
    ({"raw/edge": "-1,1\n1,2\n2,1\n0,1\n"},
     r"raw/edge.csv.gz: line 1: node -1 \(src\) is outside graph 0's"),
    ({"raw/num-node-list": "3\n0\n2\n", "raw/node-feat": "5,0\n6,1\n5,0\n"
      "6,0\n6,0\n"}, r"num-node-list.csv.gz: line 2: graph 1 has no nodes"),
    ({"raw/graph-label": "1,0\n0,x\nnan,1\n"},
     r"raw/graph-label.csv.gz: line 2 is not numeric"),
    ({"raw/graph-label": "1,0\n0,1\n"},
     r"raw/graph-label.csv.gz: has 2 lines, expected 3"),
    ({**GOOD_SPLIT, "split/scaffold/valid": "0\n1\n"},
     r"split/scaffold/valid.csv.gz: line 1: graph 0 is also in train"),
    ({**GOOD_SPLIT, "split/scaffold/valid": "3\n"},
     r"valid.csv.gz: line 1: graph index 3 is outside 0..2"),
    ({**GOOD_SPLIT, "split/scaffold/test": "1\n"},
     r"test.csv.gz: line 1: graph 1 is also in valid"),
    ({"split/scaffold/train": "0\n", "split/scaffold/valid": "1\n",
      "split/scaffold/test": "1\n"}, r"graph 1 is also in valid"),
])
def test_bad_input_names_the_file_and_line(tmp_path, changes, message):
  root = write_ogb(tmp_path, changes)
  with pytest.raises(ValueError, match=message):
    load_ogb("ogbg-toy", root=root, download=False)


def test_missing_files_are_named(tmp_path):
  with pytest.raises(FileNotFoundError, match="OGB data set 'ogbg-toy' not "
                     "found: no .*ogbg_toy/raw/num-node-list.csv.gz; pass "
                     "download=True"):
    load_ogb("ogbg-toy", root=tmp_path, download=False)
  with pytest.raises(FileNotFoundError, match="only the molecule sets"):
    load_ogb("ogbg-ppa", root=tmp_path)
  root = write_ogb(tmp_path, {**GOOD_SPLIT, "raw/edge": None})
  with pytest.raises(FileNotFoundError, match="missing required file "
                     ".*ogbg_toy/raw/edge.csv"):
    load_ogb("ogbg-toy", root=root, download=False)


def test_a_split_that_leaves_a_graph_out_is_refused(tmp_path):
  root = write_ogb(tmp_path, {
      **GOOD_SPLIT, "raw/num-node-list": "3\n1\n2\n1\n",
      "raw/num-edge-list": "3\n0\n1\n0\n",
      "raw/node-feat": TOY["raw/node-feat"] + "5,1\n",
      "raw/graph-label": TOY["raw/graph-label"] + "1,1\n"})
  with pytest.raises(ValueError, match="graph 3 is in none of train, valid "
                     "and test"):
    load_ogb("ogbg-toy", root=root, download=False)


def test_formats_are_found_by_layout_then_by_name(tmp_path):
  root = write_ogb(tmp_path, GOOD_SPLIT)
  assert find_format("ogbg-toy", root) == "ogb"
  assert find_format("ogbg-hiv-not-here", tmp_path / "none") == "ogb"
  assert find_format("ENZYMES", tmp_path) == "tu"
  assert find_format("synthetic", None) == "synthetic"
  with pytest.raises(ValueError, match=r"format='csv'; expected 'auto' or "
                     r"one of \('synthetic', 'tu', 'ogb'"):
    find_format("x", None, "csv")
  assert RunConfig(dataset="ogbg-toy", data_root=str(root)).protocol == \
      "fixed"
  assert RunConfig(dataset="ogbg-toy", data_root=str(root)).seeds == 10
  assert RunConfig(dataset="MUTAG").protocol == "fair"


def test_the_processed_cache_is_kept_per_reader(tmp_path):
  assert processed.cache_path("X", "ogb") != processed.cache_path("X", "tu")
  root = write_ogb(tmp_path, GOOD_SPLIT)
  load_ogb("ogbg-toy", root=root, download=False)
  assert processed.cache_path("ogbg_toy", "ogb").is_file()
  label = root / "ogbg_toy" / "raw" / "graph-label.csv.gz"
  label.write_bytes(gzip.compress(b"0,0\n0,\nnan,1\n"))   # changed raw file
  again = load_ogb("ogbg-toy", root=root, download=False)
  assert "parsed the raw files" in again.origin
  assert again.targets[0].tolist() == [0, 0]


def test_official_split_needs_the_fixed_protocol(tmp_path):
  root = write_ogb(tmp_path, {**GOOD_SPLIT,
                              "raw/graph-label": "1\n0\n1\n"})
  config = RunConfig(dataset="ogbg-toy", data_root=str(root), seeds=2)
  data = load_dataset(config)
  assert data.num_classes == 2
  (fold,) = make_folds(config, data)
  assert (fold.train.tolist(), fold.validation.tolist(),
          fold.test.tolist()) == ([0], [1], [2])
  from diffpool_jax.errors import InputError
  with pytest.raises(InputError, match="has an official train/valid/test "
                     "split; protocol='fair' would cross-validate"):
    make_folds(RunConfig(dataset="ogbg-toy", data_root=str(root),
                         protocol="fair"), data)
  with pytest.raises(InputError, match="protocol='fixed' needs one fixed "
                     "split"):
    make_folds(RunConfig(dataset="MUTAG", protocol="fixed"),
               data.__class__(**{**data.__dict__, "official_split": None}))
  two_tasks = load_dataset(RunConfig(dataset="ogbg-toy", data_root=str(
      write_ogb(tmp_path / "two", GOOD_SPLIT)), seeds=2))
  assert task_of(two_tasks) == Task("binary", 2, "rocauc")


def test_fixed_split_protocol_reports_over_seeds():
  rng = np.random.default_rng(0)
  val_acc = rng.random((6, 1, 4, 2))
  val_loss = rng.random((6, 1, 4, 2))
  test_acc = rng.random((6, 1, 4, 2))
  got = fixed_split_protocol(val_acc, val_loss, test_acc, patience=100)
  # patience beyond the epochs: each run's best validation epoch
  best = val_acc[:, 0].argmax(axis=0)                       # [S, P]
  val_at = np.take_along_axis(val_acc[:, 0], best[None], 0)[0]
  point = int(val_at.mean(axis=0).argmax())
  seeds = np.take_along_axis(test_acc[:, 0], best[None], 0)[0][:, point]
  assert got["selected_points"] == [point]
  np.testing.assert_allclose(got["seed_scores"], seeds)
  assert got["score"] == pytest.approx(seeds.mean())
  assert got["std"] == pytest.approx(seeds.std())
  tables = {"val_score": val_acc, "val_loss": val_loss,
            "test_score": test_acc}
  rows = PROTOCOLS["fixed"].point_scores(tables, patience=100)
  assert rows[point]["test_mean"] == pytest.approx(seeds.mean())
  assert rows[point]["test_std"] == pytest.approx(seeds.std())
  assert rows[point]["val_mean"] == pytest.approx(val_at[:, point].mean())
  with pytest.raises(Exception, match="needs one split, not 3 folds"):
    PROTOCOLS["fixed"].summary({"val_score": np.zeros((2, 3, 1, 1)),
                                "val_loss": np.zeros((2, 3, 1, 1)),
                                "test_score": np.zeros((2, 3, 1, 1))}, 5)


def test_a_reader_registered_in_a_test_trains_from_the_command_line(
    tmp_path, train_here):
  from diffpool_jax.datasets import synthetic_hierarchical
  calls = []

  def load_rings(name, root, features, **options):
    calls.append((name, root))
    data = synthetic_hierarchical(num_graphs=40, communities=(2, 3),
                                  community_size=(3, 5), seed=1)
    return data.with_features(features)

  register_reader("rings", Reader(load_rings,
                                  lambda root, name: name == "my-rings"))
  try:
    out = tmp_path / "run"
    done = train_here("--dataset", "my-rings", "--data-root", tmp_path,
                      "--folds", "2", "--epochs", "2", "--out", out,
                      "--protocol", "paper",
                      "--quiet", "--no-plots", "--hidden-dim", "8",
                      "--model.num-layers", "2", "--max-buckets", "1")
    assert done.returncode == 0, done.stderr
    assert calls == [("my-rings", str(tmp_path))]
    assert (out / "results.json").is_file()
  finally:
    READERS.pop("rings")


@pytest.mark.skipif(not (SHARED / "ogbg_molbace").is_dir(),
                    reason="the shared OGB sets (../shared/data/ogb) are "
                    "absent")
def test_the_shared_molecule_sets_read_with_their_official_splits():
  sizes = {"ogbg-molbace": (1513, 1210, 151, 152, 2),
           "ogbg-molbbbp": (2039, 1631, 204, 204, 2),
           "ogbg-molesol": (1128, 902, 113, 113, 0)}
  for name, (graphs, train, valid, test, classes) in sizes.items():
    data = read_dataset(name, SHARED)
    split = data.official_split
    assert (len(data), len(split["train"]), len(split["valid"]),
            len(split["test"]), data.num_classes) == (graphs, train, valid,
                                                      test, classes)
    assert data.node_labels[0].shape[1] == 9
    assert data.edge_labels[0].shape[1] == 3
    assert all(np.array_equal(np.sort(e[:, ::-1], axis=0),
                              np.sort(e, axis=0)) for e in data.edges[:50])


@pytest.mark.parametrize("data, filled", [
    (b"1,0\n0,\nnan,1\n", b"1,0\n0,nan\nnan,1"),
    (b",,,\r\n1,,2\r\n", b"nan,nan,nan,nan\n1,nan,2"),
    (b"\n\n3\n\n", b"nan\nnan\n3"),          # empty lines of one column
    (b",1\n1,\n", b"nan,1\n1,nan"),
    (b"0.5\n", b"0.5")])
def test_every_empty_target_field_is_filled(data, filled):
  assert fill_empty_fields(data) == filled
