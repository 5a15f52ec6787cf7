"""Protocols as objects: training stops by the same rule the protocol
selects with, so stopping never changes a result."""

import json

import numpy as np
import pytest

from diffpool_jax.protocols import (PROTOCOLS, FairProtocol, early_stopping,
                                    errica_protocol, fair_protocol)


def test_a_later_tie_with_lower_loss_keeps_training_going():
  """Epoch 3 ties epoch 1's accuracy with a lower loss, so it is the best
  epoch and patience (2) counts from it: the run stops at epoch 6, not 4
  (a first-best rule would have stopped at 4, before epochs 4 and 5 that
  the selection still considers)."""
  val_acc = np.array([0.5, 0.6, 0.5, 0.6, 0.5, 0.5, 0.5, 0.9])
  val_loss = np.array([1.0, 1.0, 1.0, 0.5, 1.0, 1.0, 1.0, 0.1])
  fair = PROTOCOLS["fair"]
  seen = lambda e: (val_acc[:e, None], val_loss[:e, None], 2)
  assert not fair.stopped(*seen(5))
  assert not fair.stopped(*seen(6))
  assert fair.stopped(*seen(7))
  assert early_stopping(val_acc, val_loss, 2) == (3, True)


def test_all_members_must_run_out_of_patience():
  flat = np.full(6, 0.5)
  rising = np.linspace(0.1, 0.6, 6)
  losses = np.ones((6, 2))
  fair = FairProtocol()
  assert not fair.stopped(np.stack([flat, rising], 1), losses, 2)
  assert fair.stopped(np.stack([flat, flat], 1), losses, 2)


def test_stopping_never_changes_the_selection():
  """Random histories with ties in accuracy: the fair protocol gives the
  same result on the epochs run until training may stop as on all epochs.
  (The earlier first-best stopping rule changed 3 of these 20 results.)"""
  epochs, shape, patience = 80, (2, 1, 1), 6
  stopped_early = 0
  for seed in range(20):
    rng = np.random.default_rng(seed)
    val_acc = rng.integers(0, 4, size=(epochs, *shape)) / 3.0
    val_loss = rng.random((epochs, *shape))
    test_acc = rng.random((epochs, *shape))
    members = lambda table: table.reshape(epochs, -1)
    stop = next((e for e in range(epochs) if FairProtocol().stopped(
        members(val_acc)[:e + 1], members(val_loss)[:e + 1], patience)),
                epochs - 1)
    stopped_early += stop < epochs - 1
    cut = slice(0, stop + 1)
    assert (fair_protocol(val_acc[cut], val_loss[cut], test_acc[cut],
                          patience)
            == fair_protocol(val_acc, val_loss, test_acc, patience)), seed
  assert stopped_early == 20


def test_paper_protocol_never_stops_and_has_no_holdout():
  paper = PROTOCOLS["paper"]
  assert paper.holdout == 0.0 and PROTOCOLS["fair"].holdout == 0.1
  assert not paper.stopped(np.zeros((100, 3)), np.zeros((100, 3)), 0)
  tables = {"test_score": np.random.default_rng(0).random((4, 2, 1, 1))}
  summary = paper.summary(tables, 10)
  assert summary["protocol"] == "paper" and "optimistic" in summary["note"]
  assert summary["score"] == pytest.approx(
      tables["test_score"].mean(axis=(1, 2, 3)).max())


def known_choice_tables():
  """2 folds, 4 seeds (0-1 select, 2-3 assess), 3 points, 4 epochs.

  Selection seeds: point 1 has the best validation accuracy (0.8 at
  epoch 2). Traps: point 2 has the best test accuracy everywhere and the
  best validation accuracy on the assessment seeds, which must not count.
  Assessment seeds of point 1 peak on validation at epochs 1 and 3.
  """
  epochs, folds, seeds, points = 4, 2, 4, 3
  val_acc = np.full((epochs, folds, seeds, points), 0.5)
  val_loss = np.ones_like(val_acc)
  test_acc = np.full_like(val_acc, 0.3)
  val_acc[2, :, :2, 1] = 0.8                  # selection: point 1 wins
  val_acc[:, :, :2, 2] = 0.6                  # selection: point 2 second
  val_acc[:, :, 2:, 2] = 0.99                 # assessment seeds: not used
  test_acc[:, :, :, 2] = 0.95                 # the test's favourite
  val_acc[1, :, 2, 1] = 0.7                   # assessment run 1 stops at 1
  val_acc[3, :, 3, 1] = 0.7                   # assessment run 2 stops at 3
  test_acc[1, 0, 2, 1], test_acc[3, 0, 3, 1] = 0.6, 0.8    # fold 0: 0.7
  test_acc[1, 1, 2, 1], test_acc[3, 1, 3, 1] = 0.4, 0.6    # fold 1: 0.5
  return val_acc, val_loss, test_acc


def test_errica_selection_picks_the_known_point_and_assesses_apart():
  result = errica_protocol(*known_choice_tables(), patience=10)
  assert result["selected_points"] == [1, 1]
  assert result["assessment_epochs"] == [[1, 3], [1, 3]]
  np.testing.assert_allclose(result["fold_scores"], [0.7, 0.5])
  assert result["score"] == pytest.approx(0.6)
  assert result["std"] == pytest.approx(0.1)
  np.testing.assert_allclose(result["selection_scores"][0], [0.5, 0.8, 0.6])
  # The fair protocol, selecting and scoring on the same runs, is fooled
  # by the assessment seeds' validation scores and picks point 2.
  fair = fair_protocol(*known_choice_tables(), patience=10)
  assert fair["selected_points"] == [2, 2]


def test_errica_needs_an_even_number_of_seeds():
  val_acc, val_loss, test_acc = known_choice_tables()
  with pytest.raises(ValueError, match="3 seeds; needs an even number"):
    errica_protocol(val_acc[:, :, :3], val_loss[:, :, :3],
                    test_acc[:, :, :3], 10)
  with pytest.raises(ValueError, match="seeds=3; the errica protocol"):
    PROTOCOLS["errica"].check(3)
  from diffpool_jax.run import RunConfig
  with pytest.raises(ValueError, match="seeds=1; the errica protocol"):
    RunConfig(protocol="errica", seeds=1)


def test_seeds_default_to_the_protocols_three_select_three_retrain():
  from diffpool_jax.run import RunConfig
  assert RunConfig(protocol="errica").seeds == 6
  assert RunConfig(protocol="fair").seeds == 1
  assert RunConfig(protocol="paper").seeds == 1
  assert RunConfig(protocol="errica", seeds=2).seeds == 2


def test_a_run_with_the_errica_protocol(tmp_path):
  """Two learning rates x 2 seeds per fold through Run: each fold's choice
  and its assessment runs are recorded."""
  from diffpool_jax.run import Run, RunConfig
  config = RunConfig(
      dataset="synthetic", protocol="errica", folds=2, seeds=2,
      lr=[1e-3, 1e-2], epochs=2, max_buckets=1,
      synthetic={"num_graphs": 80, "communities": [2, 3],
                 "community_size": [3, 4]},
      model={"hidden_dim": 8, "embed_dim": 8, "num_layers": 1,
             "mlp_hidden": [8], "pool_ratios": [0.5]})
  results = Run(config, tmp_path / "run").fit(progress=False)
  assert results["protocol"] == "errica"
  assert len(results["selected_points"]) == 2
  assert np.asarray(results["assessment_test"]).shape == (2, 1)
  assert np.asarray(results["selection_scores"]).shape == (2, 2)
  assert 0 <= results["score"] <= 1


class LastEpochProtocol:
  """A protocol written in one class, for the test below: the inner
  holdout of the fair protocol, no early stopping, every run scored at its
  last epoch; points ranked on validation."""
  name = "last"
  note = "every run at its last epoch"
  holdout = 0.1
  default_seeds = 1
  ranked_by = "val_mean"

  def check(self, seeds, points):
    pass

  def stopped(self, val_score, val_loss, patience, higher=True):
    return False

  def selected_epochs(self, tables, patience, higher=True):
    return np.full(tables["val_score"].shape[1:], len(tables["val_score"]) - 1)

  def point_scores(self, tables, patience, higher=True):
    val = tables["val_score"][-1].mean(axis=1)            # [F, P]
    test = tables["test_score"][-1].mean(axis=1)
    return [{"val_mean": float(val[:, p].mean()),
             "val_std": float(val[:, p].std()),
             "test_mean": float(test[:, p].mean()),
             "test_std": float(test[:, p].std()),
             "epochs": float(len(tables["val_score"]))}
            for p in range(val.shape[1])]

  def summary(self, tables, patience, higher=True):
    val = tables["val_score"][-1].mean(axis=1)            # [F, P]
    points = (val if higher else -val).argmax(axis=1)
    folds = tables["test_score"][-1].mean(axis=1)[np.arange(len(points)),
                                                 points]
    return {"protocol": self.name, "note": self.note,
            "score": float(folds.mean()), "std": float(folds.std()),
            "fold_scores": folds.tolist(),
            "selected_points": points.tolist()}


def test_a_new_protocol_is_one_class(tmp_path, monkeypatch):
  """Added from this file alone, the protocol drives a run (its holdout,
  its stopping rule, its summary) and a sweep (its point scores, ranking
  and selection)."""
  from diffpool_jax.protocols import PROTOCOLS
  from diffpool_jax.cli import sweep
  from tests.test_scale import TINY_RUN
  monkeypatch.setitem(PROTOCOLS, "last", LastEpochProtocol())
  grid = sweep.Grid(
      run={**TINY_RUN, "protocol": "last", "epochs": 2, "checkpoint_every": 0,
           "synthetic": {**TINY_RUN["synthetic"], "num_graphs": 80}},
      scalar={"lr": [0.01, 0.001]}, shape={})
  result = sweep.run_sweep(grid, tmp_path / "sweep", progress=False)
  assert result["protocol"] == "last"
  assert result["selection"]["note"] == "every run at its last epoch"
  assert len(result["rows"]) == 2
  assert all(row["epochs"] == 2.0 for row in result["rows"])
  chosen = result["selection"]["selected_points"]
  assert sum(row["selected_folds"] for row in result["rows"]) == len(chosen)
  saved = json.loads((tmp_path / "sweep" / "shape_00" / "results.json")
                     .read_text())
  assert saved["protocol"] == "last" and saved["epochs_run"] == 2


def test_the_member_table_gives_every_member_at_its_selected_epoch(tmp_path):
  """Run.fit's member table: one row per member (2 folds x 1 seed x 2
  learning rates) with its hyper-parameters, the epoch the fair protocol
  reads it at (best validation accuracy, ties: lower loss, then earlier)
  and its figures there; the reported fold scores are rows of it."""
  from diffpool_jax.run import Run, RunConfig
  config = RunConfig(
      dataset="synthetic", folds=2, lr=[1e-3, 1e-2], epochs=3,
      max_buckets=1, checkpoint_every=0,
      synthetic={"num_graphs": 80, "communities": [2, 3],
                 "community_size": [3, 4]},
      model={"hidden_dim": 8, "embed_dim": 8, "num_layers": 1,
             "mlp_hidden": [8], "pool_ratios": [0.5]})
  assert config.protocol == "fair"                     # the default
  run = Run(config, tmp_path / "run")
  results = run.fit(progress=False)
  table = results["member_table"]
  assert [(r["fold"], r["seed"], r["point"]) for r in table] == [
      (0, 0, 0), (0, 0, 1), (1, 0, 0), (1, 0, 1)]
  assert [r["lr"] for r in table] == [1e-3, 1e-2, 1e-3, 1e-2]
  for row in table:
    m = row["member"]
    val_acc, val_loss = run.history["val_acc"][:, m], run.history["val_loss"][:, m]
    best = min(range(3), key=lambda e: (-val_acc[e], val_loss[e], e))
    assert row["selected_epoch"] == best
    for key in ("val_acc", "test_acc", "train_loss"):
      assert row[key] == pytest.approx(run.history[key][best, m])
    assert row["diverged_at"] is None
  for fold, point in enumerate(results["selected_points"]):
    row = table[2 * fold + point]
    assert results["fold_scores"][fold] == pytest.approx(row["test_acc"])
  saved = json.loads((tmp_path / "run" / "results.json").read_text())
  assert saved["member_table"] == table


def test_the_paper_protocol_refuses_to_choose_a_point_on_the_test_folds():
  from diffpool_jax.run import RunConfig
  with pytest.raises(ValueError, match=r"^protocol='paper' with 2 points"
                     r".*select on validation with protocol='fair'"):
    RunConfig(protocol="paper", lr=[1e-3, 1e-2])
  with pytest.raises(ValueError, match="'paper' with 4 points"):
    RunConfig(protocol="paper", grid={"dropout": [0, 0.1],
                                      "clip": [1, 2]})
  assert RunConfig(protocol="paper", lr=[1e-2]).points() == [{"lr": 1e-2}]
