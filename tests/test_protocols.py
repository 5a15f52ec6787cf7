"""Protocols as objects: training stops by the same rule the protocol
selects with, so stopping never changes a result."""

import numpy as np
import pytest

from diffpool_jax.protocols import (PROTOCOLS, FairProtocol, early_stopping,
                                    fair_protocol)


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
  tables = {"test_acc": np.random.default_rng(0).random((4, 2, 1, 1))}
  summary = paper.summary(tables, 10)
  assert summary["protocol"] == "paper" and "optimistic" in summary["note"]
  assert summary["accuracy"] == pytest.approx(
      tables["test_acc"].mean(axis=(1, 2, 3)).max())
