"""Cross-validation splits: stratified k-fold with an inner validation
holdout, and the JSON split files of Errica et al. (ICLR 2020)."""

from __future__ import annotations

import json
import os
import warnings
from typing import List, NamedTuple, Tuple

import numpy as np

from diffpool_jax.errors import InputError


class Fold(NamedTuple):
  """Graph indices of one outer fold (0-based, into the data set order)."""
  train: np.ndarray
  validation: np.ndarray
  test: np.ndarray


def stratified_folds(labels: np.ndarray, num_folds: int = 10, seed: int = 0,
                     validation_fraction: float = 0.1) -> List[Fold]:
  """Stratified k-fold of the graphs with class ids `labels` [G] (integers
  or strings); each fold's rest is split into train and a stratified
  validation holdout of `validation_fraction` (0 for none).

  The test parts partition the data set; class ratios of every part are
  within one graph per class of the data set's. The folds are those of
  scikit-learn's `StratifiedKFold(num_folds, shuffle=True,
  random_state=seed)` and each holdout that of `train_test_split(rest,
  test_size=validation_fraction, stratify=labels[rest],
  random_state=seed)`, the same graphs (tests/test_datasets.py compares
  them); they are drawn here because importing scikit-learn's model
  selection takes 0.7 s of a cold run. The three helpers draw from the
  random state in scikit-learn's order; changing that order changes the
  folds.
  """
  labels = np.asarray(labels)
  if labels.ndim != 1 or (labels.dtype.kind == "f" and
                          not np.all(labels == np.floor(labels))):
    raise ValueError(f"stratified folds need one class id per graph ([G] "
                     f"integers or strings), got {labels.dtype} of shape "
                     f"{labels.shape}")
  if num_folds < 2:
    raise InputError(f"{{folds}}={num_folds}: stratified folds need at "
                     "least 2", "folds")
  if num_folds > len(labels):
    raise InputError(f"{num_folds} folds of {len(labels)} graphs: every "
                     "fold needs a test graph; use fewer {folds}", "folds")
  test_fold = dealt_test_folds(labels, num_folds, np.random.RandomState(seed))
  folds = []
  for number in range(num_folds):
    rest = np.flatnonzero(test_fold != number)
    if validation_fraction > 0:
      train, validation = stratified_holdout(
          rest, labels[rest], validation_fraction, np.random.RandomState(seed),
          f"fold {number}")
    else:
      train, validation = rest, np.zeros(0, np.int64)
    folds.append(Fold(np.sort(train), np.sort(validation),
                      np.flatnonzero(test_fold == number)))
  return folds


def dealt_test_folds(labels: np.ndarray, num_folds: int,
                     rng: np.random.RandomState) -> np.ndarray:
  """[G] the test fold of each graph of `labels` [G]: the graphs, sorted
  by class (classes in the order they first appear), are dealt to the
  folds in turn, which fixes how many of each class a fold gets; each
  class's fold numbers are then shuffled over its graphs, one class after
  another."""
  _, first, inverse = np.unique(labels, return_index=True,
                                return_inverse=True)
  rank = np.empty_like(first)
  rank[np.argsort(first)] = np.arange(len(first))
  codes = rank[inverse.ravel()]
  counts = np.bincount(codes)
  if np.all(counts < num_folds):
    raise InputError(f"{num_folds} folds but no class has {num_folds} "
                     f"graphs (the largest has {counts.max()}); use fewer "
                     "{folds}", "folds")
  if counts.min() < num_folds:
    warnings.warn(f"the smallest class has {counts.min()} graph(s), fewer "
                  f"than the {num_folds} folds: some test folds lack it",
                  UserWarning, stacklevel=3)
  dealt = np.sort(codes)
  per_fold = np.stack([np.bincount(dealt[f::num_folds], minlength=len(counts))
                       for f in range(num_folds)])
  test_fold = np.empty(len(labels), np.int64)
  for code in range(len(counts)):
    slots = np.repeat(np.arange(num_folds), per_fold[:, code])
    rng.shuffle(slots)
    test_fold[codes == code] = slots
  return test_fold


def stratified_holdout(indices: np.ndarray, labels: np.ndarray,
                       fraction: float, rng: np.random.RandomState,
                       where: str) -> Tuple[np.ndarray, np.ndarray]:
  """(train, validation) of `indices` [n] with `labels` [n]: ceil(fraction
  * n) graphs held out, each class's share of both parts apportioned by
  `apportioned`, and the graphs of each class shuffled before they are
  cut (both parts come back grouped by class, not sorted); InputError
  (naming `where`) when a class has one graph or a part has fewer graphs
  than there are classes."""
  holdout = int(np.ceil(fraction * len(indices)))
  _, codes, counts = np.unique(labels, return_inverse=True,
                               return_counts=True)
  if counts.min() < 2 or min(holdout, len(indices) - holdout) < len(counts):
    raise InputError(
        f"{where}: its {len(indices)} training graphs of {len(counts)} "
        f"classes are too few for a stratified {fraction:.0%} validation "
        "holdout with a graph of every class; use fewer {folds}, more "
        "graphs, or a split file ({splits})", "folds", "splits")
  by_class = np.split(np.argsort(codes.ravel(), kind="stable"),
                      np.cumsum(counts)[:-1])
  train_counts = apportioned(counts, len(indices) - holdout, rng)
  # The holdout is the rest of each class, but apportioning it again may
  # draw from `rng` (on rounding ties), and the shuffles below must see
  # the state after that draw.
  apportioned(counts - train_counts, holdout, rng)
  train, held = [], []
  for members, kept in zip(by_class, train_counts):
    shuffled = members[rng.permutation(len(members))]
    train.append(shuffled[:kept])
    held.append(shuffled[kept:])
  return indices[np.concatenate(train)], indices[np.concatenate(held)]


def apportioned(counts: np.ndarray, draws: int,
                rng: np.random.RandomState) -> np.ndarray:
  """[K] how many of `draws` graphs come from each class of `counts` [K]:
  the floor of each class's proportional share, then one more for the
  classes of largest fractional remainder, ties broken at random."""
  exact = counts / counts.sum() * draws
  shares = np.floor(exact)
  missing = int(draws - shares.sum())
  remainder = exact - shares
  for value in np.unique(remainder)[::-1]:
    if missing == 0:
      break
    tied = np.flatnonzero(remainder == value)
    chosen = rng.choice(tied, size=min(len(tied), missing), replace=False)
    shares[chosen] += 1
    missing -= len(chosen)
  return shares.astype(np.int64)


def load_split_file(path: str | os.PathLike, num_graphs: int) -> List[Fold]:
  """Reads an Errica et al. split file: a list of outer folds, each
  {"test": [...], "model_selection": [{"train": [...],
  "validation": [...]}]} with 0-based indices. The first model-selection
  split of each fold is used; index order is kept as in the file.
  """
  with open(path) as handle:
    try:
      raw = json.load(handle)
    except json.JSONDecodeError as error:
      raise ValueError(f"{path}: not valid JSON ({error})") from None
  if not isinstance(raw, list) or not raw:
    raise ValueError(f"{path}: expected a non-empty list of folds")
  folds = []
  for number, fold in enumerate(raw):
    try:
      selection = fold["model_selection"][0]
      lists = {"train": selection["train"],
               "validation": selection["validation"], "test": fold["test"]}
    except (KeyError, IndexError, TypeError) as error:
      raise ValueError(f"{path}: fold {number} lacks test / model_selection"
                       f"[0].train / .validation ({error!r})") from None
    parts = {name: split_indices(path, number, name, values, num_graphs)
             for name, values in lists.items()}
    for first, second in (("train", "test"), ("validation", "test"),
                          ("train", "validation")):
      shared = np.intersect1d(parts[first], parts[second])
      if shared.size:
        raise ValueError(f"{path}: fold {number}: graph {shared[0]} is in "
                         f"both {first} and {second}")
    folds.append(Fold(parts["train"], parts["validation"], parts["test"]))
  return folds


def split_indices(path, fold: int, name: str, values, num_graphs: int
                  ) -> np.ndarray:
  """[n] int64 graph indices of one part of a split file's fold; ValueError
  naming file, fold and part for anything but distinct integers in
  0..num_graphs-1 (and for an empty train or test part)."""
  where = f"{path}: fold {fold} {name}"
  if not isinstance(values, list) or not all(
      isinstance(v, int) and not isinstance(v, bool) for v in values):
    raise ValueError(f"{where}: expected a list of integer graph indices")
  indices = np.asarray(values, dtype=np.int64)
  if not indices.size and name != "validation":
    raise ValueError(f"{where}: is empty")
  if indices.size and (indices.min() < 0 or indices.max() >= num_graphs):
    raise ValueError(f"{where} has an index outside 0..{num_graphs - 1}; "
                     "is it the right data set?")
  if len(np.unique(indices)) != len(indices):
    raise ValueError(f"{where}: lists a graph twice")
  return indices
