"""Scale machinery: first-level form and buckets by cost, members per
program by memory, refusing a run that cannot fit, and handing the
compiler's freed memory back."""

import ctypes
import json
import os
import threading

import jax
import numpy as np
import pytest

from diffpool_jax.datasets import (choose_buckets, padded_graph_cost,
                                   sparse_by_cost)
from diffpool_jax.datasets.buckets import SPARSE_ENTRY_COST
from diffpool_jax.engine import epoch_runner, memory, trainer
from diffpool_jax.engine.session import edge_list_buckets
from diffpool_jax.run import Run, RunConfig
from tests.test_train_command import TINY, arguments, write_config

TINY_RUN = dict(synthetic=TINY["synthetic"], model=TINY["model"],
                max_buckets=1, folds=2, epochs=2, batch_size=8,
                protocol="paper")


def test_first_level_form_follows_the_cost_of_each_bucket():
  sizes = [28, 126, 620, 492]
  # Sparse molecules: few entries; a dense ego network: most of N^2.
  entries = [60, 500, 2000, 60000]
  assert sparse_by_cost(sizes, entries) == [False, True, True, False]
  # Exactly at the break-even the dense form is kept.
  assert sparse_by_cost([48], [48 * 48 // SPARSE_ENTRY_COST]) == [False]
  def form(**changes):
    config = RunConfig(**changes)
    return edge_list_buckets(config.first_level,
                             config.model_config().needs_dense,
                             config.model_config().conv == "gine", sizes,
                             entries)
  assert form() == [False, True, True, False]
  assert form(first_level="sparse") == [True] * 4
  assert form(first_level="dense") == [False] * 4
  # The authors' BCE link loss needs S S^T entry by entry: always dense.
  assert form(preset="original") == [False] * 4
  with pytest.raises(ValueError, match="needs the dense first level"):
    form(preset="original", first_level="sparse")


def test_padded_graph_cost_counts_nodes_clusters_and_entries():
  cost = padded_graph_cost(np.array([10, 100]), width=4,
                           clusters=np.array([3, 25]), entries_per_node=2.0,
                           layers=2)
  # 10 nodes: dense (100 entries < 24 * 2 * 10); 100 nodes: edge list.
  want_10 = 10 * (2 * 16 + 3 * 4 * 3 + 2 * 9) + 100 * (2 * 4 + 3)
  want_100 = (100 * (2 * 16 + 3 * 4 * 25 + 2 * 625)
              + SPARSE_ENTRY_COST * 2.0 * 100 * (2 * 4 + 25))
  np.testing.assert_allclose(cost, [want_10, want_100])


def test_bucket_choice_minimises_the_given_cost():
  n_node = np.array([10] * 50 + [20] * 50 + [100])
  # By N^2 the 100-node graph dominates; linear cost also splits 10 / 20.
  assert choose_buckets(n_node, 2).tolist() == [20, 100]
  assert choose_buckets(n_node, 3, cost=lambda n: n).tolist() == [10, 20, 100]
  brute = min(((a, b) for a in range(10, 101) for b in range(a, 101)
               if b == 100),
              key=lambda ab: sum(min(s for s in ab if s >= n) for n in n_node))
  assert choose_buckets(n_node, 2, cost=lambda n: n).tolist() == list(brute)


def test_members_that_fit():
  gib = memory.GIB
  # 10 members: 1 GiB shared + 0.5 GiB each = 6 GiB.
  assert memory.members_that_fit(10, 6 * gib, gib, 6 * gib) == 10
  assert memory.members_that_fit(10, 6 * gib, gib, 4 * gib) == 5
  assert memory.members_that_fit(10, 6 * gib, gib, 2.1 * gib) == 2
  assert memory.members_that_fit(10, 6 * gib, gib, 1.2 * gib) == 0
  assert memory.members_that_fit(7, 8 * gib, gib, 7 * gib) == 1


def test_budget_defaults_to_a_share_of_available_memory():
  assert memory.budget_bytes(2.0) == 2 * memory.GIB
  assert 0 < memory.budget_bytes() <= memory.available_bytes()


def resident_bytes() -> int:
  with open("/proc/self/statm") as statm:
    return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def test_freed_host_memory_goes_back_to_the_system():
  try:
    libc = ctypes.CDLL("libc.so.6")
    libc.malloc_trim
  except (OSError, AttributeError):
    pytest.skip("no glibc malloc_trim here: the release does nothing")
  libc.malloc.restype = ctypes.c_void_p
  libc.free.argtypes = [ctypes.c_void_p]
  kept = []

  def fragment():
    # 200 MiB of 4 KiB blocks on a thread's own arena, as a compile leaves
    # it: all freed but every 256th, so the free memory lies in holes
    # between kept blocks, which free() alone does not return.
    blocks = [libc.malloc(4096) for _ in range(51_200)]
    for block in blocks:
      ctypes.memset(block, 1, 4096)
    for index, block in enumerate(blocks):
      if index % 256:
        libc.free(block)
      else:
        kept.append(block)
  thread = threading.Thread(target=fragment)
  thread.start()
  thread.join()
  before = resident_bytes()
  assert memory.release_freed_host_memory()
  released = before - resident_bytes()
  for block in kept:
    libc.free(block)
  assert released > 150 * 2**20, released


def test_a_session_releases_compile_memory_once_its_programs_exist(
    tmp_path, monkeypatch):
  calls = []        # per call: whether the initialisation had finished
  monkeypatch.setattr(memory, "release_freed_host_memory",
                      lambda: calls.append(run.session._pending is None))
  run = Run(RunConfig(**TINY_RUN), tmp_path / "release")
  assert not calls
  run.session.compile()
  assert calls == [True]


def test_the_benchmarks_epoch_runner_releases_compile_memory_as_a_run_does(
    tmp_path, monkeypatch):
  """The scale benchmark's member-epoch peak is a run's, not the compile
  residue's: epoch_runner releases it once compiled, before any epoch."""
  run = Run(RunConfig(**TINY_RUN), tmp_path / "runner")
  calls = []
  monkeypatch.setattr(memory, "release_freed_host_memory",
                      lambda: calls.append("released"))
  epoch, compiled = epoch_runner(run.session, [np.arange(4)])
  assert calls == ["released"] and compiled["program_bytes"] > 0
  epoch()
  assert calls == ["released"]


def run_tiny(tmp_path, name, **changes):
  run = Run(RunConfig(**{**TINY_RUN, **changes}), tmp_path / name)
  return run, run.fit(progress=False)


def test_members_one_program_at_a_time_match_side_by_side(tmp_path):
  together, together_results = run_tiny(tmp_path, "together")
  apart, apart_results = run_tiny(tmp_path, "apart", members_per_program=1)
  assert together_results["members_per_program"] == 2
  assert apart_results["members_per_program"] == 1
  for key, values in together.history.items():
    np.testing.assert_allclose(apart.history[key], values, rtol=1e-4,
                               atol=1e-5, err_msg=key)


def program_bytes(tmp_path, size: int) -> int:
  """XLA's estimate of the tiny run's train program of `size` members."""
  run = Run(RunConfig(**TINY_RUN), tmp_path / "probe")
  return run.session.compile_train_program(size).train_bytes


def test_members_are_split_into_programs_that_fit_the_budget(tmp_path,
                                                             monkeypatch):
  both, one = program_bytes(tmp_path, 2), program_bytes(tmp_path, 1)
  assert one < both
  compiled = []       # (kind, members) of every epoch program compiled
  compile_program = trainer.compile_epoch_program

  def recording(model, mesh, kind, states, *args, **kwargs):
    members = jax.tree_util.tree_leaves(states.params)[0].shape[0]
    compiled.append((kind, members))
    return compile_program(model, mesh, kind, states, *args, **kwargs)
  monkeypatch.setattr(trainer, "compile_epoch_program", recording)
  run, results = run_tiny(tmp_path, "split", memory_gib=one / memory.GIB)
  # The first try compiles training and evaluation side by side; two
  # members do not fit, one does; only then is evaluation compiled again.
  assert sorted(compiled[:2]) == [("evaluate", 2), ("train", 2)]
  assert compiled[2:] == [("train", 1), ("evaluate", 1)]
  assert results["members_per_program"] == 1
  assert np.all(np.isfinite(run.history["train_loss"]))
  assert np.all(~np.isnan(run.history["test_acc"]))


def test_a_run_that_cannot_fit_is_refused_before_training(tmp_path,
                                                          train_here):
  with pytest.raises(MemoryError, match="Not even one member fits"):
    run_tiny(tmp_path, "tiny", memory_gib=1e-6)
  assert not (tmp_path / "tiny" / "metrics.jsonl").exists()
  done = train_here(*arguments(write_config(tmp_path), tmp_path / "cli",
                               "--memory-gib", "0.000001"))
  assert done.returncode != 0
  assert "Not even one member fits" in done.stderr
  assert "Traceback" not in done.stderr


def test_cluster_flags_reach_the_model(tmp_path, train_here):
  out = tmp_path / "run"
  done = train_here(*arguments(write_config(tmp_path), out, "--folds", "2",
                               "--epochs", "1", "--max-clusters", "2",
                               "--no-plots"))
  assert done.returncode == 0, done.stderr
  saved = json.loads((out / "config.json").read_text())
  assert saved["cluster_mode"] == "per_graph"
  assert saved["model"]["max_clusters"] == 2
  assert all(slots[0] <= 2 for slots in saved["cluster_slots"])
  bad = train_here(*arguments(write_config(tmp_path), out,
                              "--max-clusters", "zero"))
  said = bad.stdout + bad.stderr        # the options' parser names it
  assert bad.returncode == 2 and "Error parsing --max-clusters" in said


def test_a_program_size_that_does_not_divide_the_members_is_refused(
    tmp_path):
  with pytest.raises(ValueError, match="members_per_program=3 does not "
                     "divide the 2 members"):
    Run(RunConfig(**{**TINY_RUN, "members_per_program": 3}), tmp_path / "r")
