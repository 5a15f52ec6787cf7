"""Per-graph arrays as blocks of one array (`RowBlocks`), and helpers that
take either such blocks or a list of arrays."""

from __future__ import annotations

import collections.abc
from typing import Sequence

import numpy as np


class RowBlocks(collections.abc.Sequence):
  """Per-graph arrays kept as one: item i is the view
  rows[offsets[i]:offsets[i + 1]]. Reads as a list of arrays (len,
  indexing, iteration) without one array object per graph, which for
  hundreds of thousands of graphs costs seconds to build and a few
  hundred bytes a graph.

  Args:
    rows: [R, ...] every graph's rows, graph after graph.
    counts: [G] rows per graph (summing to R).
  """

  def __init__(self, rows: np.ndarray, counts: np.ndarray):
    counts = np.asarray(counts, np.int64)
    if counts.sum() != len(rows) or np.any(counts < 0):
      raise ValueError(f"RowBlocks: {len(rows)} rows, but the per-graph "
                       f"counts sum to {int(counts.sum())}")
    self.rows = rows
    self.counts = counts
    self._offsets = [0] + np.cumsum(counts).tolist()

  def __len__(self) -> int:
    return len(self.counts)

  def __getitem__(self, index):
    if isinstance(index, slice):
      return [self[i] for i in range(*index.indices(len(self)))]
    index = int(index)
    if index < 0:
      index += len(self)
    if not 0 <= index < len(self):
      raise IndexError(f"graph {index} outside 0..{len(self) - 1}")
    return self.rows[self._offsets[index]:self._offsets[index + 1]]

  def __iter__(self):
    offsets = self._offsets
    for start, end in zip(offsets[:-1], offsets[1:]):
      yield self.rows[start:end]


def stacked(blocks: Sequence[np.ndarray]) -> np.ndarray:
  """[R, ...] all rows of per-graph arrays, graph after graph (no copy
  for `RowBlocks`)."""
  if isinstance(blocks, RowBlocks):
    return blocks.rows
  return np.concatenate(blocks)


def block_counts(blocks: Sequence[np.ndarray]) -> np.ndarray:
  """[G] rows per graph of per-graph arrays."""
  if isinstance(blocks, RowBlocks):
    return blocks.counts
  return np.array([len(block) for block in blocks], np.int64)
