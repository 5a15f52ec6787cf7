"""Evaluation protocols: how a run's folds hold out validation graphs, when
its training may stop, and how per-epoch scores become the reported
number.

A protocol is an object with the members of `Protocol` (name, note,
holdout, default_seeds, ranked_by, check, stopped, selected_epochs,
summary, point_scores); `register_protocol` checks one and adds it to
`PROTOCOLS`, where runs, sweeps and the commands find it by name. Tables
are indexed [epoch, fold, seed, point] (point: hyper-parameter point) and
named "val_score", "val_loss", "test_score": the score is the task's
metric (accuracy, ROC-AUC, RMSE, ...; see tasks.py), better when larger
unless `higher` (higher_is_better) is False. Everything is pure NumPy so
it can be checked by hand.
"""

from __future__ import annotations

import typing
from typing import Dict, List, Mapping, Optional, Tuple

import numpy as np

from diffpool_jax.errors import InputError

PAPER_NOTE = ("optimistic: the epoch is chosen by the mean score on the "
              "test folds themselves (the DiffPool authors' protocol)")
FAIR_NOTE = ("Errica et al. 2020: model selection and early stopping on an "
             "inner validation holdout; test score at the selected epoch")
ERRICA_NOTE = ("Errica et al. 2020 with separate runs: per fold, the first "
               "half of the seeds select a point on the validation holdout, "
               "the second half (independent retrainings of the chosen "
               "point, early-stopped on validation) give the test score")
FIXED_NOTE = ("one fixed split (the data set's official train/valid/test, "
              "as OGB's leaderboard): each seed stops early on valid, the "
              "point of the best mean valid score is selected; test at "
              "each seed's selected epoch, mean and std over seeds")


def nan_best(values: np.ndarray, higher: bool = True) -> int:
  """Flat index of the best value (the largest, or with `higher` False the
  smallest), NaN (a diverged run) never chosen unless every value is NaN
  (then 0)."""
  values = np.asarray(values, np.float64).ravel()
  if np.all(np.isnan(values)):
    return 0
  return int(np.nanargmax(values) if higher else np.nanargmin(values))


def paper_protocol(test_score: np.ndarray, higher: bool = True
                   ) -> Dict[str, object]:
  """The DiffPool authors' protocol: every epoch, the mean test-fold
  score over folds (and seeds); report its best over epochs.

  Args:
    test_score: [E, F, S, P] scores; with several points P, each point is
      scored on its own and the best point is reported. NaN (a diverged
      member) excludes that epoch of that point.
    higher: whether a larger score is better.

  Returns:
    dict with score (mean over folds at the best epoch), std over folds,
    per-fold scores (mean over seeds), the epoch (0-based) and point.
  """
  per_fold = test_score.mean(axis=2)                     # [E, F, P]
  curve = per_fold.mean(axis=1)                        # [E, P]
  epoch, point = np.unravel_index(nan_best(curve, higher), curve.shape)
  folds = per_fold[epoch, :, point]
  return {"protocol": "paper", "note": PAPER_NOTE,
          "score": float(folds.mean()), "std": float(folds.std()),
          "fold_scores": folds.tolist(), "epoch": int(epoch),
          "point": int(point)}


def early_stopping(val_score: np.ndarray, val_loss: np.ndarray,
                   patience: int, higher: bool = True) -> Tuple[int, bool]:
  """Early stopping of one run on the epochs seen so far.

  The best epoch is the one with the best validation score (ties: lower
  validation loss, then earlier); the run stops at the first epoch that
  comes more than `patience` epochs after the best one before it, and no
  later epoch counts.

  Args:
    val_score, val_loss: [E] per-epoch validation score and loss.
    patience: epochs without improvement before stopping.
    higher: whether a larger score is better.

  Returns:
    (selected epoch, whether the run has stopped within these E epochs).
  """
  best = 0
  score = np.asarray(val_score) if higher else -np.asarray(val_score)
  for epoch in range(1, len(score)):
    if epoch - best > patience:
      return best, True
    better = (score[epoch] > score[best] or
              (score[epoch] == score[best] and
               val_loss[epoch] < val_loss[best]))
    if better:
      best = epoch
  return best, False


def early_stopping_epoch(val_score: np.ndarray, val_loss: np.ndarray,
                         patience: int, higher: bool = True) -> int:
  """The selected epoch of one run (see `early_stopping`)."""
  return early_stopping(val_score, val_loss, patience, higher)[0]


def stopping_epochs(val_score: np.ndarray, val_loss: np.ndarray,
                    patience: int, higher: bool = True) -> np.ndarray:
  """[F, S, P] the early-stopped epoch of every run (fold, seed, point) of
  [E, F, S, P] tables (see `early_stopping`)."""
  runs = val_score.shape[1:]
  epochs = np.zeros(runs, np.int64)
  for run in np.ndindex(*runs):
    epochs[run] = early_stopping_epoch(val_score[(slice(None),) + run],
                                       val_loss[(slice(None),) + run],
                                       patience, higher)
  return epochs


def at_epochs(table: np.ndarray, epochs: np.ndarray) -> np.ndarray:
  """[F, S, P] each run's value of an [E, F, S, P] table at its epoch."""
  return np.take_along_axis(table, epochs[None], 0)[0]


def fair_protocol(val_score: np.ndarray, val_loss: np.ndarray,
                  test_score: np.ndarray, patience: int, higher: bool = True
                  ) -> Dict[str, object]:
  """Errica et al.: per fold, each run (seed, point) stops early on its
  validation holdout; the point with the best mean validation score over
  seeds is selected; the fold's score is the mean test score of its
  seeds at their selected epochs. Reported: mean and std over folds.

  Args:
    val_score, val_loss, test_score: [E, F, S, P].
    patience: early-stopping patience in epochs.
    higher: whether a larger score is better.
  """
  num_folds = val_score.shape[1]
  epochs = stopping_epochs(val_score, val_loss, patience,
                           higher)                               # [F, S, P]
  chosen_val = at_epochs(val_score, epochs)
  chosen_test = at_epochs(test_score, epochs)
  points = np.array([nan_best(row, higher)
                     for row in chosen_val.mean(axis=1)], np.int64)  # [F]
  folds = chosen_test.mean(axis=1)[np.arange(num_folds), points]
  return {"protocol": "fair", "note": FAIR_NOTE,
          "score": float(folds.mean()), "std": float(folds.std()),
          "fold_scores": folds.tolist(),
          "selected_points": points.tolist(),
          "selected_epochs": epochs[np.arange(num_folds), :, points].tolist()}


def errica_protocol(val_score: np.ndarray, val_loss: np.ndarray,
                    test_score: np.ndarray, patience: int, higher: bool = True
                    ) -> Dict[str, object]:
  """Errica et al.'s model selection then assessment, from runs trained
  side by side: seeds [0, S/2) select, seeds [S/2, S) assess.

  Per outer fold: every selection run (seed, point) stops early on its
  validation holdout; the point with the best mean validation score over
  the selection seeds is chosen (the test folds are never looked at); the
  chosen point's R = S/2 assessment runs, trained independently, each stop
  early on their validation holdout, and the fold's score is the mean of
  their test scores at those epochs. Reported: mean and std over folds,
  and per fold everything the choice used.

  Args:
    val_score, val_loss, test_score: [E, F, S, P] with S even.
    patience: early-stopping patience in epochs.
    higher: whether a larger score is better.
  """
  num_folds, num_seeds = val_score.shape[1:3]
  if num_seeds < 2 or num_seeds % 2:
    raise ValueError(f"errica protocol: {num_seeds} seeds; needs an even "
                     "number >= 2 (half select, half assess)")
  half = num_seeds // 2
  stop = stopping_epochs(val_score, val_loss, patience,
                         higher)                                 # [F, S, P]
  scores = at_epochs(val_score, stop)[:, :half].mean(axis=1)       # [F, P]
  points = np.array([nan_best(row, higher) for row in scores], np.int64)
  folds = np.arange(num_folds)
  assessed = at_epochs(test_score, stop)[folds, half:, points]     # [F, R]
  return {"protocol": "errica", "note": ERRICA_NOTE,
          "score": float(assessed.mean(axis=1).mean()),
          "std": float(assessed.mean(axis=1).std()),
          "fold_scores": assessed.mean(axis=1).tolist(),
          "selected_points": points.tolist(),
          "selection_scores": scores.tolist(),
          "assessment_test": assessed.tolist(),
          "assessment_epochs": stop[folds, half:, points].tolist()}


def point_rows(val: np.ndarray, test: np.ndarray, epochs: np.ndarray
               ) -> List[Dict[str, Optional[float]]]:
  """Per point [P]: mean and std of the validation and test scores [U, P]
  over the units (folds, or the seeds of one split) and the mean stopping
  epoch `epochs` [P] (1-based)."""
  return [{"val_mean": float(val[:, p].mean()),
           "val_std": float(val[:, p].std()),
           "test_mean": float(test[:, p].mean()),
           "test_std": float(test[:, p].std()),
           "epochs": float(epochs[p])} for p in range(val.shape[1])]


class PaperProtocol:
  """The authors' protocol: no validation split, no early stopping; the
  epoch is chosen on the test folds (optimistic, labelled as such)."""
  name = "paper"
  note = PAPER_NOTE
  holdout = 0.0
  default_seeds = 1

  def check(self, seeds: int, points: int = 1) -> None:
    """InputError unless there is one point: the test folds choose the
    epoch here, and choosing the point there too would report the best of
    several test scores (select points with "fair" or "errica")."""
    if points > 1:
      raise InputError(
          f"{{protocol}}='paper' with {points} points (learning rates x "
          "grid values): this protocol chooses the epoch on the test "
          "folds and would choose the point there too; give one point, or "
          "select on validation with {protocol}='fair' (or 'errica')",
          "protocol")

  def stopped(self, val_score, val_loss, patience: int,
              higher: bool = True) -> bool:
    """Never: every epoch may be the one the test folds choose."""
    return False

  # The per-point score a sweep ranks its points by.
  ranked_by = "test_mean"

  def selected_epochs(self, tables: Mapping[str, np.ndarray],
                      patience: int, higher: bool = True) -> np.ndarray:
    """[F, S, P] the epoch each run is reported at: the one epoch of the
    best mean test-fold score, the same for every run."""
    epoch = paper_protocol(tables["test_score"], higher)["epoch"]
    return np.full(tables["test_score"].shape[1:], epoch, np.int64)

  def summary(self, tables: Mapping[str, np.ndarray], patience: int,
              higher: bool = True) -> dict:
    """`paper_protocol` of tables["test_score"] [E, F, S, P]."""
    return paper_protocol(tables["test_score"], higher)

  def point_scores(self, tables: Mapping[str, np.ndarray], patience: int,
                   higher: bool = True) -> List[Dict[str, Optional[float]]]:
    """Per point [P]: the test score over folds at the point's best
    mean test epoch (no validation), and that epoch (1-based)."""
    rows = []
    for p in range(tables["test_score"].shape[-1]):
      best = paper_protocol(tables["test_score"][..., p:p + 1], higher)
      folds = np.asarray(best["fold_scores"])
      rows.append({"val_mean": None, "val_std": None,
                   "test_mean": float(folds.mean()),
                   "test_std": float(folds.std()),
                   "epochs": best["epoch"] + 1.0})
    return rows


class FairProtocol:
  """Errica et al.'s protocol: a 10 % inner validation holdout (or the split
  file's), early stopping and point selection on it."""
  name = "fair"
  note = FAIR_NOTE
  holdout = 0.1
  default_seeds = 1

  def check(self, seeds: int, points: int = 1) -> None:
    """Any number of seeds and points."""

  def stopped(self, val_score: np.ndarray, val_loss: np.ndarray,
              patience: int, higher: bool = True) -> bool:
    """Whether every member's early stopping has run out of patience, by
    the same rule the summary selects with.

    Args:
      val_score, val_loss: [E, M] the epochs seen so far, per member.
    """
    return all(early_stopping(val_score[:, m], val_loss[:, m], patience,
                              higher)[1]
               for m in range(val_score.shape[1]))

  ranked_by = "val_mean"

  def selected_epochs(self, tables: Mapping[str, np.ndarray],
                      patience: int, higher: bool = True) -> np.ndarray:
    """[F, S, P] each run's early-stopped epoch (`stopping_epochs`)."""
    return stopping_epochs(tables["val_score"], tables["val_loss"],
                           patience, higher)

  def summary(self, tables: Mapping[str, np.ndarray], patience: int,
              higher: bool = True) -> dict:
    """`fair_protocol` of tables "val_score", "val_loss", "test_score"."""
    return fair_protocol(tables["val_score"], tables["val_loss"],
                         tables["test_score"], patience, higher)

  def point_scores(self, tables: Mapping[str, np.ndarray], patience: int,
                   higher: bool = True) -> List[Dict[str, Optional[float]]]:
    """Per point [P]: mean and std over folds of the validation and test
    score, each run at its early-stopped epoch, and the mean stopping
    epoch (1-based). tables: "val_score", "val_loss", "test_score"
    [E, F, S, P]."""
    stop = stopping_epochs(tables["val_score"], tables["val_loss"],
                           patience, higher)
    val = at_epochs(tables["val_score"], stop).mean(axis=1)         # [F, P]
    test = at_epochs(tables["test_score"], stop).mean(axis=1)       # [F, P]
    return point_rows(val, test, (stop + 1).mean(axis=(0, 1)))


class ErricaProtocol(FairProtocol):
  """Errica et al.'s selection and assessment with separate runs (see
  `errica_protocol`): the fair protocol's holdout and stopping rule, an
  even number of seeds."""
  name = "errica"
  note = ERRICA_NOTE
  default_seeds = 6          # 3 select a point, 3 retrain it (R = 3)

  def check(self, seeds: int, points: int = 1) -> None:
    """InputError unless seeds is even and >= 2."""
    if seeds < 2 or seeds % 2:
      raise InputError(f"{{seeds}}={seeds}; the errica protocol needs an "
                       "even number >= 2 (half select a point, half retrain "
                       "it for the test score), e.g. {seeds}=6", "seeds")

  def summary(self, tables: Mapping[str, np.ndarray], patience: int,
              higher: bool = True) -> dict:
    """`errica_protocol` of tables "val_score", "val_loss", "test_score"."""
    return errica_protocol(tables["val_score"], tables["val_loss"],
                           tables["test_score"], patience, higher)


def fixed_split_protocol(val_score: np.ndarray, val_loss: np.ndarray,
                         test_score: np.ndarray, patience: int,
                         higher: bool = True) -> Dict[str, object]:
  """One fixed split (F = 1): each run (seed, point) stops early on the
  validation part; the point with the best mean validation score over
  seeds is selected; reported: mean and std over seeds of the test score
  at each seed's selected epoch (OGB's leaderboard rule).

  Args:
    val_score, val_loss, test_score: [E, 1, S, P].
    patience: early-stopping patience in epochs.
    higher: whether a larger score is better.
  """
  epochs = stopping_epochs(val_score, val_loss, patience,
                           higher)[0]                            # [S, P]
  chosen_val = at_epochs(val_score, epochs[None])[0]
  point = nan_best(chosen_val.mean(axis=0), higher)
  seeds = at_epochs(test_score, epochs[None])[0][:, point]         # [S]
  return {"protocol": "fixed", "note": FIXED_NOTE,
          "score": float(seeds.mean()), "std": float(seeds.std()),
          "fold_scores": [float(seeds.mean())],
          "seed_scores": seeds.tolist(), "selected_points": [point],
          "selected_epochs": [epochs[:, point].tolist()]}


class FixedSplitProtocol(FairProtocol):
  """One fixed train/valid/test split (an OGB set's official one, or a
  split file of one fold), several seeds: the fair protocol's stopping and
  selection on valid, reported over seeds (`fixed_split_protocol`)."""
  name = "fixed"
  note = FIXED_NOTE
  default_seeds = 10         # OGB's leaderboard rule

  def summary(self, tables: Mapping[str, np.ndarray], patience: int,
              higher: bool = True) -> dict:
    """`fixed_split_protocol` of tables "val_score", "val_loss", "test_score"
    [E, 1, S, P]; InputError naming folds for more than one split."""
    if tables["val_score"].shape[1] != 1:
      raise InputError(f"{{protocol}}='fixed' needs one split, not "
                       f"{tables['val_score'].shape[1]} folds", "protocol")
    return fixed_split_protocol(tables["val_score"], tables["val_loss"],
                                tables["test_score"], patience, higher)

  def point_scores(self, tables: Mapping[str, np.ndarray], patience: int,
                   higher: bool = True) -> List[Dict[str, Optional[float]]]:
    """Per point [P]: mean and std over seeds of the valid and test
    scores, each run at its early-stopped epoch, and the mean stopping
    epoch (1-based). tables: "val_score", "val_loss", "test_score"
    [E, 1, S, P]."""
    stop = stopping_epochs(tables["val_score"], tables["val_loss"],
                           patience, higher)
    val = at_epochs(tables["val_score"], stop)[0]                   # [S, P]
    test = at_epochs(tables["test_score"], stop)[0]                 # [S, P]
    return point_rows(val, test, (stop[0] + 1).mean(axis=0))


class Protocol(typing.Protocol):
  """What a protocol provides (`register_protocol` checks each member).

  Attributes:
    name: its name (the `protocol` field, --protocol).
    note: one line on what its score means, written into results.
    holdout: fraction of each outer training fold kept for validation
      when folds are drawn without a split file, in [0, 1).
    default_seeds: seeds per fold when the run gives none.
    ranked_by: the per-point column a sweep ranks by ("val_mean" or
      "test_mean").
  """
  name: str
  note: str
  holdout: float
  default_seeds: int
  ranked_by: str

  def check(self, seeds: int, points: int = 1) -> None:
    """InputError unless the protocol can run with these seeds and points."""

  def stopped(self, val_score: np.ndarray, val_loss: np.ndarray,
              patience: int, higher: bool = True) -> bool:
    """Whether training may stop, given [E, M] tables so far."""

  def selected_epochs(self, tables: Mapping[str, np.ndarray],
                      patience: int, higher: bool = True) -> np.ndarray:
    """[F, S, P] the epoch each run is reported at."""

  def summary(self, tables: Mapping[str, np.ndarray], patience: int,
              higher: bool = True) -> dict:
    """The reported result: at least "score" and "std"."""

  def point_scores(self, tables: Mapping[str, np.ndarray], patience: int,
                   higher: bool = True) -> List[Dict[str, Optional[float]]]:
    """Per point: val_mean, val_std, test_mean, test_std, epochs."""


PROTOCOLS: Dict[str, Protocol] = {}

POINT_COLUMNS = ("val_mean", "val_std", "test_mean", "test_std", "epochs")


def check_protocol(protocol) -> None:
  """ValueError naming the protocol and the member at fault unless it has
  every member of `Protocol` and its methods answer a small table
  [E=4, F=1, S=2, P=1] in the documented shapes (one split, so that a
  fixed-split protocol answers too)."""
  name = getattr(protocol, "name", None)
  if not isinstance(name, str) or not name:
    raise ValueError(f"protocol {protocol!r}: `name` must be a non-empty "
                     "string")
  def fault(member, what):
    return ValueError(f"protocol {name!r}: {member} {what}")
  if not isinstance(getattr(protocol, "note", None), str):
    raise fault("note", "must be a string")
  holdout = getattr(protocol, "holdout", None)
  if not isinstance(holdout, (int, float)) or not 0 <= holdout < 1:
    raise fault("holdout", f"must be a number in [0, 1), not {holdout!r}")
  seeds = getattr(protocol, "default_seeds", None)
  if not isinstance(seeds, int) or seeds < 1:
    raise fault("default_seeds", f"must be an integer >= 1, not {seeds!r}")
  if getattr(protocol, "ranked_by", None) not in ("val_mean", "test_mean"):
    raise fault("ranked_by", "must be 'val_mean' or 'test_mean'")
  for method in ("check", "stopped", "selected_epochs", "summary",
                 "point_scores"):
    if not callable(getattr(protocol, method, None)):
      raise fault(method, "is missing (a method)")
  rng = np.random.default_rng(0)
  tables = {key: rng.random((4, 1, 2, 1)) for key in
            ("val_score", "val_loss", "test_score")}
  try:
    protocol.check(seeds, 1)
    stopped = protocol.stopped(tables["val_score"].reshape(4, -1),
                               tables["val_loss"].reshape(4, -1), 2)
    epochs = np.asarray(protocol.selected_epochs(tables, 2))
    summary = protocol.summary(tables, 2)
    points = protocol.point_scores(tables, 2)
  except Exception as error:
    raise fault("fails on a [4, 1, 2, 1] table:",
                f"{type(error).__name__}: {error}") from error
  if not isinstance(stopped, (bool, np.bool_)):
    raise fault("stopped", f"returned {stopped!r}, not a bool")
  if epochs.shape != (1, 2, 1):
    raise fault("selected_epochs", f"returned shape {epochs.shape}, not "
                "[F, S, P] = (1, 2, 1)")
  if not isinstance(summary, Mapping) or not {"score", "std"} <= set(summary):
    raise fault("summary", "must return a dict with 'score' and 'std'")
  if (len(points) != 1 or any(set(row) != set(POINT_COLUMNS)
                              for row in points)):
    raise fault("point_scores", f"must return one row per point with the "
                f"keys {POINT_COLUMNS}")


def register_protocol(protocol: Protocol) -> Protocol:
  """Checks `protocol` (`check_protocol`) and adds it to `PROTOCOLS` under
  its name, where runs, sweeps and the commands find it; returns it."""
  check_protocol(protocol)
  PROTOCOLS[protocol.name] = protocol
  return protocol


register_protocol(PaperProtocol())
register_protocol(FairProtocol())
register_protocol(ErricaProtocol())
register_protocol(FixedSplitProtocol())
