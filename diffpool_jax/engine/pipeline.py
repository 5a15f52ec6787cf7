"""Host pipeline (NumPy): the padded data set on the device, one batch per
size bucket, and each epoch's schedule of batches for every member.

A `Schedule` is what the device engine (training.py) scans over: a shared
sequence of bucket ids [T] and, per member, the graphs of each step
[M, T, B] as positions inside that step's bucket (-1 = empty slot).
"""

from __future__ import annotations

from typing import NamedTuple, Optional, Sequence, Tuple

import jax
import numpy as np

from diffpool_jax.datasets.buckets import (assign_buckets, bucket_positions,
                                           bucketed_batches)
from diffpool_jax.graphs import GraphBatch


class Schedule(NamedTuple):
  """An epoch's batches. bucket_ids [T]; indices [M, T, B] positions in the
  step's bucket, -1 for empty slots."""
  bucket_ids: np.ndarray
  indices: np.ndarray


class DeviceData(NamedTuple):
  """The data set on the device: one padded batch per bucket, and where
  each graph sits (host arrays)."""
  buckets: Tuple[GraphBatch, ...]
  bucket_sizes: np.ndarray     # [K] padded node count of each bucket
  which: np.ndarray            # [G] bucket of each graph
  position: np.ndarray         # [G] position inside its bucket


def device_data(dataset, bucket_sizes: np.ndarray,
                sparse: bool | Sequence[bool] = False,
                ladder: bool = False,
                targets: Optional[np.ndarray] = None,
                edge_features: Optional[Sequence[np.ndarray]] = None
                ) -> DeviceData:
  """Pads the data set per bucket and moves it to the device; `sparse`
  (one flag, or one per bucket) stores a bucket's adjacency as an EdgeList
  (no N x N matrices); `ladder` rounds each bucket's graph slots up to the
  size ladder; `targets` [G, T] go with the graphs of a binary or
  regression task, `edge_features` (per graph [E_i, D]) with the entries
  of edge-list buckets (see datasets.bucketed_batches)."""
  batches = bucketed_batches(dataset, bucket_sizes, sparse, ladder, targets,
                             edge_features)
  return DeviceData(tuple(jax.device_put(b) for b in batches),
                    np.asarray(bucket_sizes),
                    assign_buckets(dataset.n_node, bucket_sizes),
                    bucket_positions(dataset.n_node, bucket_sizes))


def steps_per_bucket(member_graphs: Sequence[np.ndarray], which: np.ndarray,
                     num_buckets: int, batch_size: int) -> np.ndarray:
  """[K] steps each bucket needs: the most batches any member has there."""
  counts = np.stack([np.bincount(which[g], minlength=num_buckets)
                     for g in member_graphs])
  return (-(-counts // batch_size)).max(axis=0)


def make_schedule(member_graphs: Sequence[np.ndarray], data: DeviceData,
                  batch_size: int, rng: Optional[np.random.Generator] = None,
                  member_seeds: Optional[Sequence] = None) -> Schedule:
  """An epoch's schedule for members training on the given graph ids.

  With `rng`, the order of steps is shuffled (shared by all members) and
  graphs are shuffled within each member and bucket: by `rng` itself, or,
  given `member_seeds` (one NumPy seed per member), by each member's own
  generator, so that a member's batches do not depend on which members
  train beside it. Without `rng` the order is fixed (for evaluation). The
  number of steps depends only on how many graphs each member has per
  bucket, so it is the same every epoch.
  """
  num_buckets = len(data.bucket_sizes)
  steps = steps_per_bucket(member_graphs, data.which, num_buckets,
                           batch_size)
  bucket_ids = np.repeat(np.arange(num_buckets), steps)
  if rng is not None:
    bucket_ids = bucket_ids[rng.permutation(len(bucket_ids))]
  indices = np.full((len(member_graphs), len(bucket_ids), batch_size), -1,
                    np.int32)
  for m, graphs in enumerate(member_graphs):
    shuffle = rng
    if rng is not None and member_seeds is not None:
      shuffle = np.random.default_rng(member_seeds[m])
    for b in range(num_buckets):
      members_b = graphs[data.which[graphs] == b]
      if shuffle is not None:
        members_b = members_b[shuffle.permutation(len(members_b))]
      slots = np.flatnonzero(bucket_ids == b)
      padded = np.full(steps[b] * batch_size, -1, np.int64)
      padded[:len(members_b)] = data.position[members_b]
      indices[m, slots] = padded.reshape(steps[b], batch_size)
  return Schedule(bucket_ids.astype(np.int32), indices)


def graph_ids(schedule: Schedule, data: DeviceData) -> np.ndarray:
  """[M, T, B] the graph id in each slot of a schedule (-1: empty)."""
  slots = np.full((len(data.bucket_sizes), max(data.position.max(
      initial=0) + 1, 1)), -1, np.int64)
  slots[data.which, data.position] = np.arange(len(data.which))
  rows = np.broadcast_to(schedule.bucket_ids[None, :, None],
                         schedule.indices.shape)
  return np.where(schedule.indices >= 0,
                  slots[rows, np.maximum(schedule.indices, 0)], -1)


def pad_steps(schedule: Schedule, steps: int) -> Schedule:
  """The schedule with empty steps appended up to `steps` (bucket 0, every
  slot -1): they change no metric sum, and schedules of equal length share
  one compiled program."""
  extra = steps - len(schedule.bucket_ids)
  if extra < 0:
    raise ValueError(f"pad_steps: the schedule has {len(schedule.bucket_ids)}"
                     f" steps, more than {steps}")
  members, _, batch = schedule.indices.shape
  return Schedule(
      np.concatenate([schedule.bucket_ids, np.zeros(extra, np.int32)]),
      np.concatenate([schedule.indices,
                      np.full((members, extra, batch), -1, np.int32)], 1))
