"""Compile work chosen by the work it serves: the cost model's choices
(short and long runs, CPU and a faked accelerator), the size ladder, the
persistent cache from Python, programs compiled side by side, and a run
over another data set of the same ladder shapes compiling nothing new."""

import json
import subprocess
import sys

import numpy as np
import pytest

from diffpool_jax.datasets import (bucketed_batches, choose_buckets, on_ladder,
                                   size_ladder, synthetic_hierarchical)
from diffpool_jax.engine import compile_effort
from diffpool_jax.engine.compile_effort import Candidate, choose
from tests.test_compile_cache import clean_env
from tests.test_scale import TINY_RUN
from tests.test_train_command import REPO, TINY, command, write_config

# One bucket, or three with a third of the padded arithmetic.
LAYOUTS = [Candidate(np.array([126]), steps=25, units=1.3e10),
           Candidate(np.array([32, 64, 126]), steps=27, units=4.3e9)]


def test_a_short_run_compiles_fast_and_a_long_run_compiles_fully():
  short = choose("auto", "cpu", LAYOUTS, 1, epochs=2, members=2,
                 convolutions=9)
  assert (short.effort, short.candidate) == ("fast", 0)
  long = choose("auto", "cpu", LAYOUTS, 1, epochs=150, members=10,
                convolutions=9)
  assert (long.effort, long.candidate) == ("full", 1)
  assert "150 epochs" in long.reason and "full, 3 bucket(s)" in long.reason
  # The prediction is the cost model's formula.
  costs = compile_effort.COSTS["cpu"]
  assert long.compile_seconds == pytest.approx(
      costs.base["full"] + 3 * costs.branch["full"])
  assert long.train_seconds == pytest.approx(150 * 10 * (
      27 * costs.step_seconds + 4.3e9 * costs.unit_seconds))


def test_an_accelerator_that_trains_fast_compiles_a_30_epoch_run_cheaply():
  """30 epochs of 10 members: worth full XLA settings on the CPU, where
  training dominates; not on a GPU, where autotuning dominates."""
  one = [Candidate(np.array([64]), steps=20, units=1e10)]
  cpu = choose("auto", "cpu", one, 0, epochs=30, members=10,
               convolutions=9)
  gpu = choose("auto", "gpu", one, 0, epochs=30, members=10,
               convolutions=9)
  assert (cpu.effort, gpu.effort) == ("full", "fast")
  assert "on gpu" in gpu.reason


def test_ten_members_for_a_few_epochs_compile_at_medium_on_the_cpu():
  """Medium saves compile seconds and costs a tenth per epoch: worth it
  for a short run of ten members, not for 2 members over 2 epochs (fast
  is cheaper still) nor for 150 epochs."""
  def effort(epochs, members):
    return choose("auto", "cpu", LAYOUTS, 1, epochs, members, 9).effort
  assert [effort(e, 10) for e in (1, 2, 10, 150)] == [
      "medium", "medium", "medium", "full"]
  assert effort(2, 2) == "fast"


def test_medium_is_full_on_an_accelerator_and_never_weighed_there():
  """Off the CPU "medium" has no options of its own: asked for, it
  compiles full's and is costed as full; "auto" weighs fast and full."""
  assert compile_effort.weighed_efforts("cpu") == ["fast", "medium", "full"]
  for backend in ("gpu", "tpu", "some-other"):
    assert compile_effort.weighed_efforts(backend) == ["fast", "full"]
    assert compile_effort.xla_options("medium", backend) == (
        compile_effort.xla_options("full", backend))
  # A long run of many members on one layout: full wins on the GPU.
  one = [Candidate(np.array([64]), steps=20, units=1e12)]
  assert choose("auto", "gpu", one, 0, 150, 100, 9).effort == "full"
  asked = choose("medium", "gpu", one, 0, 150, 100, 9)
  full = choose("full", "gpu", one, 0, 150, 100, 9)
  assert asked.effort == "medium"
  assert asked[2:4] == full[2:4]          # predicted seconds


def test_fast_medium_and_full_are_obeyed_and_bad_efforts_named():
  assert choose("fast", "cpu", LAYOUTS, 1, 1000, 10, 9)[:2] == ("fast", 0)
  assert choose("medium", "cpu", LAYOUTS, 1, 1000, 10, 9)[:2] == (
      "medium", 1)
  assert choose("full", "cpu", LAYOUTS, 1, 1, 1, 9)[:2] == ("full", 1)
  assert "as asked" in choose("full", "cpu", LAYOUTS, 1, 1, 1, 9).reason
  with pytest.raises(ValueError, match="compile_effort='slow'"):
    choose("slow", "cpu", LAYOUTS, 1, 1, 1, 9)
  from diffpool_jax.run import RunConfig
  with pytest.raises(ValueError, match="compile_effort='slow'"):
    RunConfig(compile_effort="slow")


def test_xla_options_per_effort_backend_and_program(monkeypatch):
  monkeypatch.setenv("XLA_FLAGS", "")
  fast = compile_effort.xla_options("fast", "cpu")
  assert fast["xla_backend_optimization_level"] == 0
  assert fast["xla_cpu_use_fusion_emitters"] is False
  assert compile_effort.xla_options("full", "cpu") == {
      "xla_backend_optimization_level": 1}
  # Medium: full's LLVM level with the elemental emitters.
  assert compile_effort.xla_options("medium", "cpu") == {
      "xla_backend_optimization_level": 1,
      "xla_cpu_use_fusion_emitters": False}
  assert compile_effort.xla_options("medium", "gpu") == (
      compile_effort.xla_options("full", "gpu"))
  # The initialisation compiles at "fast" whatever the run's effort.
  assert compile_effort.xla_options("full", "cpu", "init") == fast
  assert compile_effort.xla_options("fast", "gpu") == {
      "xla_gpu_autotune_level": 0}
  # What $XLA_FLAGS sets is left to it.
  monkeypatch.setenv("XLA_FLAGS", "--xla_backend_optimization_level=2")
  assert "xla_backend_optimization_level" not in (
      compile_effort.xla_options("fast", "cpu"))


def test_the_size_ladder():
  assert size_ladder(700).tolist() == [
      8, 16, 24, 32, 40, 48, 56, 64, 72, 80, 88, 96, 104, 112, 120, 128,
      144, 168, 192, 216, 248, 280, 320, 360, 408, 464, 528, 600, 680, 768]
  ladder = size_ladder(10**5)
  assert np.all(ladder % 8 == 0) and ladder[-1] >= 10**5
  steps = ladder[16:] / ladder[15:-1]
  assert steps.min() >= 1.125 and steps.max() < 1.17
  assert on_ladder([1, 8, 9, 28, 126, 620]).tolist() == [8, 8, 16, 32, 128,
                                                         680]


def test_buckets_on_the_ladder_hold_every_graph_with_the_least_cost():
  n_node = np.array([5, 9, 10, 20, 28, 100])
  assert choose_buckets(n_node, 2).tolist() == [28, 100]
  assert choose_buckets(n_node, 2, ladder=True).tolist() == [32, 104]
  # Exhaustive check of the 2-bucket choice on the ladder, cost N^2.
  sizes = np.unique(on_ladder(n_node))
  best = min(((a, b) for a in sizes for b in sizes
              if a < b and b >= n_node.max()),
             key=lambda p: sum(min(s for s in p if s >= n) ** 2
                               for n in n_node))
  assert tuple(choose_buckets(n_node, 2, ladder=True)) == best


def test_ladder_buckets_pad_their_graph_slots_to_the_ladder():
  dataset = synthetic_hierarchical(num_graphs=21, communities=(2, 3),
                                   community_size=(3, 5))
  batch, = bucketed_batches(dataset, np.array([16]), ladder=True)
  assert batch.x.shape[:2] == (24, 16)
  assert batch.node_mask[21:].sum() == 0 and batch.labels[21:].sum() == 0
  exact, = bucketed_batches(dataset, np.array([16]))
  assert exact.x.shape[0] == 21


def test_a_run_records_its_choice_and_compiles_side_by_side(tmp_path):
  """A tiny two-epoch run compiles fast; its training, evaluation and
  initialisation programs compile at the same time (their intervals
  overlap); `full` and `medium` compile at the effort asked."""
  from diffpool_jax.run import Run, RunConfig
  # A model no other test builds: nothing of it is compiled yet.
  tiny = {**TINY_RUN, "model": {**TINY_RUN["model"], "hidden_dim": 6,
                                "embed_dim": 6}}
  run = Run(RunConfig(**tiny), tmp_path / "auto")
  results = run.fit(progress=False)
  assert results["compile_effort"]["effort"] == "fast"
  assert "auto" in results["compile_effort"]["reason"]
  stages = results["compile_stages"]
  assert set(stages) == {"train", "evaluation", "init"}   # test only
  for a, b in (("train", "evaluation"), ("train", "init")):
    assert stages[a]["start"] < stages[b]["end"]
    assert stages[b]["start"] < stages[a]["end"]
  for effort in ("full", "medium"):
    asked = Run(RunConfig(**tiny, compile_effort=effort),
                tmp_path / effort).fit(progress=False)
    assert asked["compile_effort"]["effort"] == effort


def run_python(code: str, env: dict) -> subprocess.CompletedProcess:
  done = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env,
                        capture_output=True, text=True, timeout=300)
  assert done.returncode == 0, done.stderr[-3000:]
  return done


def run_from_python(out) -> str:
  return ("from diffpool_jax.run import Run, RunConfig\n"
          f"Run(RunConfig(**{TINY_RUN!r}), {str(out)!r}).fit(progress=False)")


def test_a_run_from_python_uses_the_persistent_cache(tmp_path):
  env = clean_env(tmp_path)
  run_python(run_from_python(tmp_path / "run"), env)
  cache = tmp_path / "data" / "xla"
  assert len(list(cache.iterdir())) > 3
  assert list((cache / "traced").glob("*.exported"))
  # Opting out writes nothing.
  env = {**clean_env(tmp_path / "off"), "DIFFPOOL_JAX_COMPILE_CACHE": "off"}
  run_python(run_from_python(tmp_path / "off_run"), env)
  assert not (tmp_path / "off" / "data" / "xla").exists()


def compiled_programs(cache) -> set:
  """The XLA programs in a cache folder (not the traced ones)."""
  return {p.name for p in cache.iterdir() if p.name != "traced"}


def test_another_data_set_of_the_same_ladder_shapes_compiles_nothing_new(
    tmp_path):
  """Two synthetic sets of other graphs (other seeds and graph counts,
  the same ladder bucket, graph slots, features and steps): the second
  run's programs are all in the cache the first left."""
  cache = tmp_path / "xla"
  model = {**TINY["model"], "num_clusters": [4]}
  outs = []
  for name, synthetic in (("a", {**TINY["synthetic"], "seed": 0}),
                          ("b", {**TINY["synthetic"], "seed": 1,
                                 "num_graphs": 38})):
    (tmp_path / name).mkdir()
    config = write_config(tmp_path / name, synthetic=synthetic, model=model,
                          epochs=2, folds=2)
    done = subprocess.run(
        command(config, tmp_path / name / "run", "--compile-cache",
                str(cache), "--no-plots"),
        cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    outs.append(compiled_programs(cache))
  results = [json.loads((tmp_path / n / "run" / "results.json").read_text())
             for n in "ab"]
  assert results[0]["buckets"] == results[1]["buckets"] == [16]
  assert outs[1] == outs[0]


def test_initial_states_are_the_same_at_every_compile_effort(tmp_path):
  """The initialisation compiles at one effort, so a run's starting
  weights do not depend on the effort its epochs compile at. In a child
  process without the suite's XLA_FLAGS, which set the fast options for
  every program and would hide a difference."""
  env = {k: v for k, v in clean_env(tmp_path).items() if k != "XLA_FLAGS"}
  code = (
      "import jax, numpy as np\n"
      "from diffpool_jax.run import Run, RunConfig\n"
      f"run = {TINY_RUN!r}\n"
      "states = [Run(RunConfig(**run, compile_effort=effort),\n"
      f"              {str(tmp_path)!r} + '/' + effort).session.states\n"
      "          for effort in ('fast', 'medium', 'full')]\n"
      "leaves = [jax.tree_util.tree_leaves(s) for s in states]\n"
      "print(sum(any(not np.array_equal(a, b) for b in rest)\n"
      "          for a, *rest in zip(*leaves)),\n"
      "      len(leaves[0]))\n")
  differing, total = map(int, run_python(code, env).stdout.split()[-2:])
  assert total > 20 and differing == 0


def test_training_epochs_compile_nothing(tmp_path, monkeypatch):
  """Every program an epoch runs is compiled before the first epoch
  (training, evaluation, and the divergence check on a compile thread):
  on one device, no compilation waits on the main thread while training."""
  import threading
  from jax import monitoring
  from jax._src.dispatch import BACKEND_COMPILE_EVENT
  from diffpool_jax.run import Run, RunConfig, loop
  compiled = []                 # (while training, on the main thread, name)
  training = threading.Event()

  def listener(event, duration, **info):
    if event == BACKEND_COMPILE_EVENT:
      compiled.append((training.is_set(),
                       threading.current_thread() is threading.main_thread(),
                       info.get("fun_name")))

  train_epochs = loop.Run.train_epochs

  def flagged(self, *args, **kwargs):
    training.set()
    try:
      return train_epochs(self, *args, **kwargs)
    finally:
      training.clear()

  monkeypatch.setattr(loop.Run, "train_epochs", flagged)
  # A model no other test builds: nothing of it is compiled yet.
  tiny = {**TINY_RUN, "model": {**TINY_RUN["model"], "hidden_dim": 5,
                                "embed_dim": 5}}
  monitoring.register_event_duration_secs_listener(listener)
  try:
    results = Run(RunConfig(**tiny), tmp_path / "run").fit(progress=False)
  finally:
    monitoring.unregister_event_duration_listener(listener)
  assert results["epochs_run"] == tiny["epochs"]
  # The check was compiled for this model, on another thread, before
  # training; nothing compiled on the main thread during it.
  assert (False, False, "jit(_members_finite)") in compiled
  assert [name for during, main, name in compiled if during and main] == []
