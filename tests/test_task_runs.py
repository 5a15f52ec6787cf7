"""Runs of binary (several tasks, missing labels) and regression tasks:
the targets travel with the padded graphs, every evaluated graph is scored
once by its member with the task's metric, selection follows the metric's
direction, and the commands report it."""

import gzip
import json

import numpy as np
import pytest

from diffpool_jax import tasks
from diffpool_jax.datasets.buckets import bucketed_batches
from diffpool_jax.engine import pipeline
from diffpool_jax.protocols import early_stopping, fixed_split_protocol
from diffpool_jax.run import Run, RunConfig

SMALL_MODEL = ("--hidden-dim", "8", "--model.num-layers", "2",
               "--model.pool-ratios", "0.5")


def write_molecules(root, labels, name="ogbg_gen"):
  """An OGB folder of len(labels) paths of 2, 3, 4, 2, ... atoms with
  integer atom and bond features and `labels` as graph-label lines; the
  official split: the first half train, the next quarter valid, the rest
  test. Returns `root`."""
  count = len(labels)
  sizes = [2 + g % 3 for g in range(count)]
  edges = [f"{i},{i + 1}" for size in sizes for i in range(size - 1)]
  tables = {
      "raw/num-node-list": sizes, "raw/num-edge-list": [s - 1 for s in sizes],
      "raw/edge": edges,
      "raw/node-feat": [f"{(g + i) % 3},{i % 2}"
                        for g, size in enumerate(sizes) for i in range(size)],
      "raw/edge-feat": [str(i % 2) for i in range(len(edges))],
      "raw/graph-label": labels,
      "split/scaffold/train": range(count // 2),
      "split/scaffold/valid": range(count // 2, 3 * count // 4),
      "split/scaffold/test": range(3 * count // 4, count)}
  for stem, rows in tables.items():
    path = root / name / f"{stem}.csv.gz"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress("".join(f"{r}\n" for r in rows).encode()))
  return root


def binary_labels(count=24):
  """Two tasks: the first is 1 on the 4-atom graphs; the second is missing
  on every third graph."""
  return [f"{int(g % 3 == 2)},{'nan' if g % 3 == 0 else g % 2}"
          for g in range(count)]


@pytest.fixture(autouse=True)
def own_cache(tmp_path, monkeypatch):
  monkeypatch.setenv("DIFFPOOL_JAX_DATA", str(tmp_path / "cache"))


def test_a_binary_task_trains_and_reports_roc_auc(tmp_path, train_here):
  root = write_molecules(tmp_path, binary_labels())
  out = tmp_path / "run"
  done = train_here("--dataset", "ogbg-gen", "--data-root", root, "--seeds",
                    "2", "--epochs", "2", "--out", out, "--quiet",
                    "--no-plots", *SMALL_MODEL)
  assert done.returncode == 0, done.stderr
  assert "protocol fixed" in done.stdout and "mean rocauc" in done.stdout
  results = json.loads((out / "results.json").read_text())
  assert (results["task"], results["metric"]) == ("binary", "rocauc")
  assert results["score"] == pytest.approx(np.mean(results["seed_scores"]))
  for row in results["member_table"]:
    assert 0 <= row["val_rocauc"] <= 1 and 0 <= row["test_rocauc"] <= 1
  rows = [json.loads(line) for line in
          (out / "metrics.jsonl").read_text().splitlines()]
  assert "val_rocauc" in rows[0] and "val_acc" not in rows[0]
  assert "train_acc" not in rows[0]


def test_a_regression_task_trains_and_reports_rmse(tmp_path, train_here):
  labels = [f"{0.5 * (2 + g % 3) - 1:.2f}" for g in range(24)]
  root = write_molecules(tmp_path, labels)
  out = tmp_path / "run"
  done = train_here("--dataset", "ogbg-gen", "--data-root", root, "--seeds",
                    "2", "--epochs", "3", "--out", out, "--quiet",
                    "--no-plots", *SMALL_MODEL)
  assert done.returncode == 0, done.stderr
  assert "mean rmse" in done.stdout
  results = json.loads((out / "results.json").read_text())
  assert (results["task"], results["metric"]) == ("regression", "rmse")
  for row, seed_score in zip(results["member_table"],
                             results["seed_scores"]):
    # each seed is reported at its epoch of least validation RMSE
    history = [json.loads(line) for line in
               (out / "metrics.jsonl").read_text().splitlines()]
    val = [r["val_rmse"] for r in history if r["member"] == row["member"]]
    assert row["selected_epoch"] == int(np.argmin(val))
    assert row["test_rmse"] == pytest.approx(seed_score)


def slot_graphs(schedule, data):
  """[M, T, B] graph of each slot, found one slot at a time (the reference
  for pipeline.graph_ids)."""
  ids = np.full(schedule.indices.shape, -1)
  for m, t, b in np.ndindex(*ids.shape):
    position = schedule.indices[m, t, b]
    if position >= 0:
      (ids[m, t, b],) = np.flatnonzero(
          (data.which == schedule.bucket_ids[t]) & (data.position == position))
  return ids


def test_every_evaluated_graph_is_scored_once_by_its_member(tmp_path):
  root = write_molecules(tmp_path, binary_labels())
  config = RunConfig(dataset="ogbg-gen", data_root=str(root), seeds=2,
                     epochs=1, batch_size=4,
                     model={"hidden_dim": 8, "num_layers": 1})
  run = Run(config, tmp_path / "run")
  schedule = run.session.evaluation_schedules()["val"]
  ids = slot_graphs(schedule, run.session.data)
  np.testing.assert_array_equal(pipeline.graph_ids(schedule,
                                                   run.session.data), ids)
  for member_ids in ids:
    assert sorted(member_ids[member_ids >= 0]) == list(range(12, 18))
  # Member 0 ranks every graph by its own label, member 1 upside down.
  targets = np.nan_to_num(run.dataset.targets[np.maximum(ids, 0)], nan=0.5)
  outputs = np.where((ids >= 0)[..., None], targets, 100.0)   # [M, T, B, 2]
  outputs[1] = 1 - outputs[1]
  scores = run.member_scores(np.moveaxis(outputs, 0, 1), schedule)
  np.testing.assert_allclose(scores, [1.0, 0.0])


def test_targets_go_with_the_padded_graphs():
  from diffpool_jax.datasets import synthetic_hierarchical
  data = synthetic_hierarchical(num_graphs=10, seed=0)
  targets = np.arange(20, dtype=np.float32).reshape(10, 2)
  buckets = np.array([int(np.median(data.n_node)), int(data.n_node.max())])
  batches = bucketed_batches(data, buckets, ladder=True, targets=targets)
  which = np.where(data.n_node <= buckets[0], 0, 1)
  for b, batch in enumerate(batches):
    members = np.flatnonzero(which == b)
    np.testing.assert_array_equal(batch.targets[:len(members)],
                                  targets[members])
    assert np.all(np.isnan(batch.targets[len(members):]))
  assert bucketed_batches(data, buckets)[0].targets is None


def test_the_task_and_metric_can_be_chosen_and_bad_choices_are_named(
    tmp_path):
  root = write_molecules(tmp_path, binary_labels())
  config = lambda **fields: RunConfig(dataset="ogbg-gen",
                                      data_root=str(root), seeds=1,
                                      epochs=1, **fields)
  assert Run(config(metric="ap"), tmp_path / "a").task == tasks.Task(
      "binary", 2, "ap")
  assert Run(config(task="regression"), tmp_path / "b").task == tasks.Task(
      "regression", 2, "rmse")
  with pytest.raises(ValueError, match="task='classification': ogbg-gen's "
                     "targets are not one column of integer class ids"):
    Run(config(task="classification"), tmp_path / "c")
  with pytest.raises(ValueError, match="metric='rmse' does not score a "
                     "binary task"):
    Run(config(metric="rmse"), tmp_path / "d")
  with pytest.raises(ValueError, match="task='multilabel'; expected 'auto'"):
    config(task="multilabel")
  one_class = write_molecules(tmp_path / "one",
                              ["1,1"] * 12 + ["0,nan"] * 12)
  with pytest.raises(ValueError, match="the valid part of fold 0: no target "
                     "column has both a positive and a negative label"):
    Run(RunConfig(dataset="ogbg-gen", data_root=str(one_class), seeds=1),
        tmp_path / "e")


def test_selection_follows_the_metric_direction():
  rmse = np.array([0.9, 0.5, 0.7, 0.4, 0.8])
  loss = np.zeros(5)
  assert early_stopping(rmse, loss, patience=10, higher=False) == (3, False)
  assert early_stopping(rmse, loss, patience=10) == (0, False)
  assert early_stopping(rmse, loss, patience=1, higher=False) == (1, True)
  # [E, 1, S, P]: seed 0 is best at epoch 1, seed 1 at epoch 2
  val = np.array([[0.9, 0.9], [0.2, 0.8], [0.5, 0.3]])[:, None, :, None]
  test = np.array([[1.0, 1.0], [2.0, 3.0], [4.0, 5.0]])[:, None, :, None]
  result = fixed_split_protocol(val, np.zeros_like(val), test, 10, False)
  assert result["seed_scores"] == [2.0, 5.0]
  assert result["selected_epochs"] == [[1, 2]]


def test_a_sweep_selects_the_point_of_least_validation_rmse(tmp_path,
                                                            capsys):
  from diffpool_jax.cli import sweep
  labels = [f"{0.5 * (2 + g % 3) - 1:.2f}" for g in range(24)]
  root = write_molecules(tmp_path, labels)
  grid_file = tmp_path / "grid.json"
  grid_file.write_text(json.dumps({
      "run": {"dataset": "ogbg-gen", "data_root": str(root), "seeds": 2,
              "epochs": 2, "batch_size": 4,
              "model": {"hidden_dim": 8, "num_layers": 1}},
      "scalar": {"lr": [1e-3, 3e-2]}}))
  grid = sweep.load_grid(grid_file, {})
  result = sweep.run_sweep(grid, tmp_path / "out", progress=False)
  assert result["metric"] == "rmse"
  val = [row["val_mean"] for row in result["rows"]]
  best = int(np.argmin(val))
  assert result["selection"]["selected_points"] == [best]
  assert [row["selected_folds"] for row in result["rows"]] == [
      int(p == best) for p in range(2)]
  sweep.print_summary(result, grid)
  assert "test rmse" in capsys.readouterr().out
  assert (tmp_path / "out" / "sweep.png").stat().st_size > 0
