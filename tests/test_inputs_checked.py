"""No silently wrong result from odd inputs: the task is said and checked,
a target table that fits no task is refused, and --resume names any input
that changed (targets, split files, node and edge features)."""

import gzip
import json
import shutil

import numpy as np
import pytest

from diffpool_jax import tasks
from diffpool_jax.run import Run, RunConfig, load_dataset
from diffpool_jax.run.store import RunFolderError
from tests.helpers import write_gzipped

GRAPHS = 24


def toy_tables(targets=None, edge_feat=None):
  """An OGB-layout set of GRAPHS paths of 3 to 6 nodes: node codes, bond
  codes, one 0/1 target column (or `targets`, one line per graph), a
  16/4/4 split."""
  rng = np.random.default_rng(0)
  sizes = 3 + np.arange(GRAPHS) % 4
  edges = [f"{i},{i + 1}" for n in sizes for i in range(n - 1)]
  labels = [str(int(v)) for v in rng.integers(0, 2, GRAPHS)]
  labels[:2] = ["0", "1"]
  return {
      "raw/num-node-list": "\n".join(map(str, sizes)) + "\n",
      "raw/num-edge-list": "\n".join(str(n - 1) for n in sizes) + "\n",
      "raw/edge": "\n".join(edges) + "\n",
      "raw/node-feat": "\n".join(f"{i % 3},{i % 2}" for n in sizes
                                 for i in range(n)) + "\n",
      "raw/edge-feat": edge_feat or "\n".join(
          str(i % 3) for i in range(len(edges))) + "\n",
      "raw/graph-label": "\n".join(targets or labels) + "\n",
      "split/scaffold/train": "\n".join(map(str, range(16))) + "\n",
      "split/scaffold/valid": "\n".join(map(str, range(16, 20))) + "\n",
      "split/scaffold/test": "\n".join(map(str, range(20, 24))) + "\n",
  }


def write_set(root, tables, name="ogbg_toy"):
  """`tables` written (gzipped) into root/name, over what is there."""
  write_gzipped(root / name, tables)
  return root


@pytest.fixture(autouse=True)
def own_cache(tmp_path, monkeypatch):
  monkeypatch.setenv("DIFFPOOL_JAX_DATA", str(tmp_path / "cache"))


def task_of_table(tmp_path, lines, task="auto", name="ogbg_toy"):
  root = write_set(tmp_path, toy_tables(lines), name)
  dataset = load_dataset(RunConfig(dataset=name.replace("_", "-"),
                                   data_root=str(root)))
  return tasks.resolve_task(dataset, task)


def column(values):
  return [str(v) for v in values]


# --- the task, inferred and said, or refused -------------------------------

def test_the_task_and_its_source_are_said(tmp_path):
  task, source = task_of_table(tmp_path / "a", None)
  assert task == tasks.Task("binary", 1, "rocauc")
  assert source == "inferred: 1 target column, every label 0, 1 or missing"
  assert tasks.describe(task, source) == (
      "binary, 1 column, scored by rocauc (inferred: 1 target column, every "
      "label 0, 1 or missing)")
  classes = column(np.arange(GRAPHS) % 3)
  task, source = task_of_table(tmp_path / "b", classes)
  assert task == tasks.Task("classification", 3, "accuracy")
  assert source == "inferred: one column of 3 integer class ids"
  values = column(np.linspace(-1, 2, GRAPHS).round(3))
  task, source = task_of_table(tmp_path / "c", values, task="regression")
  assert (task, source) == (tasks.Task("regression", 1, "rmse"),
                            "given: task='regression'")


def test_a_known_ogb_set_declares_its_task_and_is_held_to_it(tmp_path):
  task, source = task_of_table(tmp_path / "a", None, name="ogbg_molbace")
  assert task == tasks.Task("binary", 1, "rocauc")
  assert source == "OGB's task table for ogbg-molbace"
  stray = column(np.arange(GRAPHS) % 2)
  stray[7] = "2"
  with pytest.raises(ValueError, match=r"task='binary': ogbg-molbace has "
                     r"target 2 in column 0 at line 8 of .*ogbg_molbace/raw/"
                     r"graph-label.csv.gz; a binary task takes 0, 1"):
    task_of_table(tmp_path / "b", stray, name="ogbg_molbace")
  with pytest.raises(ValueError, match=r"graph-label.csv.gz: has 2 "
                     r"column\(s\); OGB's ogbg-molbace has 1 \(binary"):
    task_of_table(tmp_path / "c", [f"{v},1" for v in np.arange(GRAPHS) % 2],
                  name="ogbg_molbace")


@pytest.mark.parametrize("edit, message", [
    # class ids with one empty field
    (lambda c: c[:3] + [""] + c[4:],
     r"integer class ids and 1 missing label\(s\) \(first at line 4 of "
     r".*graph-label.csv.gz\); a class task needs every label"),
    # a 0/1 column with one stray 2
    (lambda c: [str(int(v) % 2) for v in c[:5]] + ["2"]
     + [str(int(v) % 2) for v in c[6:]],
     r"class 2 has a single graph \(line 6 of .*graph-label.csv.gz\)"),
])
def test_targets_that_fit_no_task_are_refused(tmp_path, edit, message):
  lines = edit(column(np.arange(GRAPHS) % 3))
  with pytest.raises(ValueError, match=message):
    task_of_table(tmp_path, lines)


def test_a_column_without_any_label_is_refused_whatever_the_task(tmp_path):
  lines = [f"{v:.2f}," for v in np.linspace(0, 1, GRAPHS)]
  for task in ("auto", "regression"):
    with pytest.raises(ValueError, match="target column 1 has no label in "
                       "any of its 24 graphs"):
      task_of_table(tmp_path / task, lines, task=task)


def test_binary_beside_numbers_is_refused_unless_the_task_is_given(tmp_path):
  lines = [f"{i % 2},{i / 7:.3f}" for i in range(GRAPHS)]
  with pytest.raises(ValueError, match=r"target columns \[0\] hold only 0 "
                     r"and 1 but columns \[1\] other numbers"):
    task_of_table(tmp_path / "a", lines)
  task, _ = task_of_table(tmp_path / "b", lines, task="regression")
  assert task == tasks.Task("regression", 2, "rmse")


def test_a_given_task_is_checked_against_the_values(tmp_path):
  with pytest.raises(ValueError, match="task='classification': ogbg-toy's "
                     "targets are not one column of integer class ids"):
    task_of_table(tmp_path / "a", column(np.linspace(0, 1, GRAPHS)),
                  task="classification")
  with pytest.raises(ValueError, match=r"task='binary': ogbg-toy has target "
                     r"2 in column 0 at line 3 of"):
    task_of_table(tmp_path / "b", column(np.arange(GRAPHS) % 3),
                  task="binary")


def test_a_set_of_one_class_says_so_without_contrary_advice():
  from diffpool_jax.datasets import synthetic_hierarchical
  data = synthetic_hierarchical(num_graphs=10, communities=(2, 3),
                                community_size=(3, 4), seed=0)
  one = data.subset(np.flatnonzero(data.labels == 0))
  one = one.__class__(**{**one.__dict__, "label_values": one.label_values[:1]})
  for task in ("auto", "classification"):
    with pytest.raises(ValueError, match=r"have the same class label "
                       r"\(.*\), so there is nothing to classify") as error:
      tasks.resolve_task(one, task)
    assert "binary" not in str(error.value)


# --- --resume refuses a changed input and names it --------------------------

RUN = dict(dataset="ogbg-toy", seeds=1, epochs=2, batch_size=8,
           max_buckets=1, checkpoint_every=1, compile_effort="fast",
           model={"hidden_dim": 8, "embed_dim": 8, "num_layers": 1,
                  "mlp_hidden": [8], "pool_ratios": [0.5], "conv": "gine"})


@pytest.fixture(scope="module")
def started(tmp_path_factory):
  """A finished 2-epoch run on the toy set (its data folder, its run)."""
  base = tmp_path_factory.mktemp("started")
  root = write_set(base / "data", toy_tables(
      column(np.linspace(-1, 1, GRAPHS).round(3))))
  out = base / "run"
  Run(RunConfig(**RUN, task="regression", data_root=str(root)),
      out).fit(progress=False)
  return base


def edited_tables():
  values = column(np.linspace(-1, 1, GRAPHS).round(3))
  tables = toy_tables(values)
  edited_values = values[:5] + ["0.123"] + values[6:]
  edges = tables["raw/edge-feat"].split("\n")
  return {
      "the class labels or target columns": {"raw/graph-label":
                             "\n".join(edited_values) + "\n"},
      "the data set's official split files": {
          "split/scaffold/valid": "16\n17\n18\n20\n",
          "split/scaffold/test": "19\n21\n22\n23\n"},
      "the edge labels or attributes": {
          "raw/edge-feat": "\n".join(["2"] + edges[1:])},
      "the node labels or attributes": {
          "raw/node-feat": tables["raw/node-feat"].replace("0,1", "1,1", 1)},
  }


@pytest.mark.parametrize("what", sorted(edited_tables()))
def test_resume_names_the_input_that_changed(started, tmp_path, what):
  data = shutil.copytree(started / "data", tmp_path / "data")
  out = shutil.copytree(started / "run", tmp_path / "run")
  write_set(data, edited_tables()[what])
  before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
  config = RunConfig(**{**RUN, "epochs": 3}, task="regression",
                     data_root=str(data))
  with pytest.raises(RunFolderError, match=f"^resume: {what} .*changed "
                     "since the run"):
    Run(config, out).fit(resume=True, progress=False)
  assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before


def test_resume_with_the_same_inputs_goes_on(started, tmp_path):
  out = shutil.copytree(started / "run", tmp_path / "run")
  config = RunConfig(**{**RUN, "epochs": 3}, task="regression",
                     data_root=str(started / "data"))
  results = Run(config, out).fit(resume=True, progress=False)
  assert results["epochs_run"] == 3
  assert results["task"] == "regression"
  assert results["task_outputs"] == 1
  assert results["task_source"] == "given: task='regression'"
  saved = json.loads((out / "config.json").read_text())["inputs"]
  assert set(saved) == {"data", "targets", "node_inputs", "edge_inputs",
                        "official_split"}


# --- one file per table ------------------------------------------------------

def test_two_versions_of_one_ogb_table_are_refused(tmp_path):
  root = write_set(tmp_path, toy_tables())
  raw = root / "ogbg_toy" / "raw"
  (raw / "graph-label.csv").write_text("1\n" * GRAPHS)
  with pytest.raises(ValueError, match=r"ogbg_toy/raw: two versions of "
                     r"table graph-label.csv: graph-label.csv and "
                     r"graph-label.csv.gz; remove the one you do not mean "
                     r"to use \(graph-label.csv is the newer"):
    load_dataset(RunConfig(dataset="ogbg-toy", data_root=str(root)))


def test_two_versions_of_one_tu_table_are_refused(tmp_path):
  from diffpool_jax.datasets.tu import load_tu
  folder = tmp_path / "TOY"
  folder.mkdir()
  tables = {"A": "1, 2\n2, 1\n3, 4\n4, 3\n", "graph_indicator": "1\n1\n2\n2\n",
            "graph_labels": "1\n2\n"}
  for table, text in tables.items():
    (folder / f"TOY_{table}.txt").write_text(text)
  assert load_tu("TOY", root=tmp_path, download=False).num_graphs == 2
  (folder / "TOY_graph_labels.txt.gz").write_bytes(gzip.compress(b"2\n1\n"))
  with pytest.raises(ValueError, match="two versions of table "
                     "TOY_graph_labels.txt: TOY_graph_labels.txt and "
                     "TOY_graph_labels.txt.gz"):
    load_tu("TOY", root=tmp_path, download=False)


def test_a_registered_reader_gets_the_refusal_from_the_cache(tmp_path):
  """A reader that hands its files to processed.cached is covered."""
  from diffpool_jax.datasets import processed
  (tmp_path / "nodes.tsv").write_text("1\n")
  (tmp_path / "nodes.tsv.bz2").write_bytes(b"x")
  with pytest.raises(ValueError, match="two versions of table nodes.tsv"):
    processed.cached("mine", 1, "toy", sorted(tmp_path.glob("nodes*")), {},
                     lambda: None)


# --- messages: the field, flag, file or line, and nothing created ----------

def train_refused(argv, tmp_path):
  """The SystemExit message of diffpool-train `argv`, run in tmp_path."""
  from diffpool_jax.cli import train
  with pytest.raises(SystemExit) as stopped:
    train.main([str(a) for a in argv])
  assert stopped.value.code not in (0, None)
  return str(stopped.value.code)


@pytest.mark.parametrize("content, message", [
    ({"model": "abc"}, r"--config .*c.json: model='abc'; must be a mapping"),
    ({"grid": "abc"}, r"--config .*c.json: grid='abc'; must be a mapping"),
    ({"model": {"pool_options": 3}},
     r"--config .*c.json: model.pool_options=3; must be a mapping"),
    ({"dataset": 7}, r"--config .*c.json: dataset=7; must be a string"),
    ({"lr": []}, r"lr=\(\); expected a number or a list of numbers \(at "
                 r"least one\)"),
])
def test_config_values_of_the_wrong_type_name_the_field(tmp_path, content,
                                                          message):
  path = tmp_path / "c.json"
  path.write_text(json.dumps(content))
  import re
  assert re.search(message, train_refused(
      ["--config", path, "--out", tmp_path / "run"], tmp_path))
  assert not (tmp_path / "run").exists()


def test_lr_without_a_value_is_named(tmp_path):
  message = train_refused(["--lr", "--out", tmp_path / "run"], tmp_path)
  assert "lr=(); expected a number or a list of numbers (at least one)" in (
      message)


def test_an_import_that_exits_is_reported(tmp_path):
  module = tmp_path / "quitter.py"
  module.write_text("import sys\nsys.exit(0)\n")
  message = train_refused(["--import", module], tmp_path)
  assert message.startswith(f"--import {module}: the module exited while "
                            "being imported (SystemExit(0)); nothing was "
                            "trained")


def test_a_mistyped_data_root_creates_nothing(tmp_path):
  missing = tmp_path / "typo" / "data"
  message = train_refused(["--dataset", "MUTAG", "--data-root", missing,
                           "--out", tmp_path / "run"], tmp_path)
  assert f"--data-root {missing} is not a folder (mistyped?)" in message
  assert "download" not in message.split(";")[0]
  assert not (tmp_path / "typo").exists() and not (tmp_path / "run").exists()


def test_a_run_says_its_task_first(tmp_path, train_here):
  root = write_set(tmp_path / "data",
                   toy_tables(column(np.arange(GRAPHS) % 2)))
  done = train_here("--dataset", "ogbg-toy", "--data-root", root,
                    "--out", tmp_path / "run", "--epochs", "1", "--seeds",
                    "1", "--no-plots", "--hidden-dim", "8",
                    "--model.num-layers", "1", "--max-buckets", "1")
  assert done.returncode == 0, done.stderr
  lines = done.stdout.splitlines()
  said = [i for i, line in enumerate(lines) if line.startswith(
      "ogbg-toy: task binary, 1 column, scored by rocauc (inferred: 1 "
      "target column, every label 0, 1 or missing)")]
  assert said and said[0] <= 2, lines[:4]
  results = json.loads((tmp_path / "run" / "results.json").read_text())
  assert (results["task"], results["task_outputs"], results["task_source"]) \
      == ("binary", 1, "inferred: 1 target column, every label 0, 1 or "
          "missing")
