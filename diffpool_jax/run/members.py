"""What a run trains: its data set, its outer folds and its members (folds
x seeds x hyper-parameter points, trained side by side)."""

from __future__ import annotations

import dataclasses
import itertools
from pathlib import Path
from typing import Dict, List

import jax
import numpy as np

from diffpool_jax.datasets import (GraphDataset, load_split_file,
                                   stratified_folds)
from diffpool_jax.datasets.blocks import stacked
from diffpool_jax.datasets.readers import find_format, read_dataset
from diffpool_jax.datasets.splits import Fold
from diffpool_jax.engine.hyper import Hyper
from diffpool_jax.errors import InputError
from diffpool_jax.protocols import PROTOCOLS


# The RunConfig fields `load_dataset` and `input_fingerprints` read: the
# data set's and its split file's.
INPUT_FIELDS = ("dataset", "data_root", "format", "features", "synthetic",
                "splits")


def load_dataset(config) -> GraphDataset:
  """A RunConfig's data set with its node features, read by the reader of
  its format (datasets.readers; the synthetic set takes `config.synthetic`
  as options)."""
  form = find_format(config.dataset, config.data_root, config.format)
  options = dict(config.synthetic) if form == "synthetic" else {}
  return read_dataset(config.dataset, config.data_root, form,
                      config.features, **options)


def make_folds(config, dataset: GraphDataset) -> List[Fold]:
  """Outer folds of a RunConfig: from its split file; else the data set's
  official split (one fold: train, valid, test), which needs the "fixed"
  protocol; else stratified with its seed (with the protocol's inner
  validation holdout, 10 % for "fair")."""
  if config.splits is not None:
    if not Path(config.splits).is_file():
      what = ("is a folder; give its NAME_splits.json"
              if Path(config.splits).is_dir() else "no such file")
      raise InputError(f"{{splits}} {config.splits}: {what}", "splits")
    folds = load_split_file(config.splits, dataset.num_graphs)
    if len(folds) < config.folds:
      raise InputError(f"{{splits}} {config.splits} holds {len(folds)} "
                       f"folds, fewer than {{folds}}={config.folds}; pass "
                       f"{{folds}}={len(folds)} or another split file",
                       "splits", "folds")
    return folds[:config.folds]
  if dataset.official_split is not None:
    if config.protocol != "fixed":
      raise InputError(
          f"{{dataset}} {config.dataset} has an official train/valid/test "
          f"split; {{protocol}}={config.protocol!r} would cross-validate "
          "over it: use {protocol}='fixed' (select on valid, mean and std "
          "over seeds) or give a split file ({splits})",
          "dataset", "protocol", "splits")
    split = dataset.official_split
    return [Fold(split["train"], split["valid"], split["test"])]
  if config.protocol == "fixed":
    raise InputError("{protocol}='fixed' needs one fixed split: a data "
                     "set with an official split, or a split file "
                     "({splits}) of one fold", "protocol", "splits")
  holdout = PROTOCOLS[config.protocol].holdout
  return stratified_folds(dataset.labels, config.folds, config.split_seed,
                          holdout)


@dataclasses.dataclass
class Members:
  """The runs trained side by side: member m has fold[m], seed[m], point[m]
  and the hyper-parameters of its point (`hyper`, [M] leaves)."""
  fold: np.ndarray
  seed: np.ndarray
  point: np.ndarray
  hyper: Hyper

  @classmethod
  def grid(cls, num_folds: int, num_seeds: int, points: List[Hyper]):
    """Members folds x seeds x points; `points` [P] of the points'
    hyper-parameters (see RunConfig.member_hyper)."""
    combos = list(itertools.product(range(num_folds), range(num_seeds),
                                    range(len(points))))
    fold, seed, point = (np.array(c) for c in zip(*combos))
    hyper = jax.tree_util.tree_map(
        lambda *values: np.array(values, np.float64)[point], *points)
    return cls(fold, seed, point, hyper)

  def __len__(self):
    return len(self.fold)

  def table(self, values: np.ndarray, shape) -> np.ndarray:
    """Reshapes [E, M] member values to [E, folds, seeds, points]."""
    return values.reshape(values.shape[0], *shape)


def input_fingerprints(config, dataset: GraphDataset) -> Dict[str, str]:
  """Fingerprints of everything a run reads that can change a result
  (store.INPUT_NAMES): the graphs, class labels and built node features
  ("data"; the feature options are part of the saved configuration),
  every target column, the node and edge labels and attributes (codes,
  bond features), the data set's official split and a split file's
  content. A resumed run refuses to go on when one changed."""
  from diffpool_jax.run.store import fingerprint
  stack = lambda items: (np.zeros(0, np.uint8) if items is None
                         else stacked(items))
  inputs = {"data": fingerprint(
      dataset.n_node, dataset.labels,
      stacked(dataset.edges).astype(np.int64),  # as runs before int32 ids
      stacked(dataset.features))}
  inputs["targets"] = fingerprint(
      np.zeros(0, np.float32) if dataset.targets is None
      else dataset.targets, dataset.labels, dataset.label_values)
  inputs["node_inputs"] = fingerprint(stack(dataset.node_labels),
                                      stack(dataset.node_attributes))
  inputs["edge_inputs"] = fingerprint(stack(dataset.edge_labels),
                                      stack(dataset.edge_attributes))
  split = dataset.official_split or {}
  inputs["official_split"] = fingerprint(
      *[np.asarray(split[part], np.int64) for part in sorted(split)])
  if config.splits is not None:
    raw = np.frombuffer(Path(config.splits).read_bytes(), np.uint8)
    inputs["splits"] = fingerprint(raw)
  return inputs
