"""Cross-validation splits: stratified k-fold with an inner validation
holdout, and the JSON split files of Errica et al. (ICLR 2020)."""

from __future__ import annotations

import json
import os
from typing import List, NamedTuple

import numpy as np

from diffpool_jax.errors import InputError


class Fold(NamedTuple):
  """Graph indices of one outer fold (0-based, into the data set order)."""
  train: np.ndarray
  validation: np.ndarray
  test: np.ndarray


def stratified_folds(labels: np.ndarray, num_folds: int = 10, seed: int = 0,
                     validation_fraction: float = 0.1) -> List[Fold]:
  """Stratified k-fold; each fold's rest is split into train and a
  stratified validation holdout of `validation_fraction` (0 for none).

  The test parts partition the data set; class ratios of every part are
  within one graph per class of the data set's.
  """
  from sklearn.model_selection import StratifiedKFold, train_test_split
  labels = np.asarray(labels)
  if num_folds > len(labels):
    raise InputError(f"{num_folds} folds of {len(labels)} graphs: every "
                     "fold needs a test graph; use fewer {folds}", "folds")
  splitter = StratifiedKFold(n_splits=num_folds, shuffle=True,
                             random_state=seed)
  folds = []
  for number, (rest, test) in enumerate(
      splitter.split(np.zeros(len(labels)), labels)):
    if validation_fraction > 0:
      try:
        train, validation = train_test_split(
            rest, test_size=validation_fraction, stratify=labels[rest],
            random_state=seed)
      except ValueError:
        classes = len(np.unique(labels[rest]))
        raise InputError(
            f"fold {number}: its {len(rest)} training graphs of {classes} "
            f"classes are too few for a stratified {validation_fraction:.0%}"
            " validation holdout with a graph of every class; use fewer "
            "{folds}, more graphs, or a split file ({splits})",
            "folds", "splits") from None
    else:
      train, validation = rest, np.zeros(0, np.int64)
    folds.append(Fold(np.sort(train), np.sort(validation), np.sort(test)))
  return folds


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
