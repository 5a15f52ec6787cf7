"""A cross-validated training run: the epoch loop, its history (metrics
per epoch and member), divergence, checkpoints, exact resume and results.
The command line lives in diffpool_jax/cli/train.py."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import time
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import jax
import numpy as np
from tqdm import tqdm

from diffpool_jax import tasks
from diffpool_jax.datasets import GraphDataset
from diffpool_jax.engine import compile_cache, hosts, pipeline, trainer
from diffpool_jax.engine.session import MemberGraphs, Programs, Session
from diffpool_jax.engine.trainer import Optimizer, adam_with_clip
from diffpool_jax.protocols import PROTOCOLS
from diffpool_jax.run import store
from diffpool_jax.run.config import RunConfig
from diffpool_jax.run.members import (Members, input_fingerprints,
                                      load_dataset, make_folds)


def history_keys(aux_names, metric: str = "accuracy") -> Tuple[str, ...]:
  """Per-epoch, per-member values a run records: the loss and the score
  (the task's `metric`: "val_acc", "val_rocauc", "test_rmse", ...; see
  tasks.score_key) of each split (the training score for classification
  only), and the training mean of each auxiliary loss ("train_<name>")."""
  score = tasks.score_key(metric)
  train = ("train_loss", "train_acc") if metric == "accuracy" else (
      "train_loss",)
  return (train + tuple(f"train_{name}" for name in aux_names)
          + ("val_loss", f"val_{score}", "test_loss", f"test_{score}"))


class Run:
  """A cross-validated run in `out_dir`; `fit()` trains it (resuming from
  the last checkpoint when asked) and returns the results. Its engine
  (model, device data, member states, programs) is `session`; `optimizer`
  (see trainer.Optimizer) replaces the default Adam with clipping. The
  persistent compilation cache is on as for the commands
  (compile_cache.enable_by_default; $DIFFPOOL_JAX_COMPILE_CACHE=off, or
  `compile_cache.enable("off")` before, turns it off)."""

  def __init__(self, config: RunConfig, out_dir: str | os.PathLike,
               dataset: Optional[GraphDataset] = None,
               optimizer: Optimizer = adam_with_clip):
    start = time.perf_counter()
    compile_cache.enable_by_default()
    self.config = config
    self.out = Path(out_dir)
    self.facts = device_facts()          # the code's commit as it starts
    self.dataset = dataset if dataset is not None else load_dataset(config)
    self.protocol = PROTOCOLS[config.protocol]
    self.folds = make_folds(config, self.dataset)
    # Fingerprints of what the run reads (config.json keeps them for
    # resume); with several processes, every one must have been given the
    # same configuration and inputs before any array is shared.
    self.inputs = input_fingerprints(config, self.dataset)
    # (data_root may differ: the data's fingerprint must not.)
    settings = {k: v for k, v in dataclasses.asdict(config).items()
                if k != "data_root"}
    hosts.agree({**settings, **{store.INPUT_NAMES[k]: v
                                for k, v in self.inputs.items()}},
                fields=settings)
    self.points = config.points()
    self.members = Members.grid(
        len(self.folds), config.seeds,
        [config.member_hyper(p) for p in self.points])
    self.grid_shape = (len(self.folds), config.seeds, len(self.points))
    folds = [self.folds[f] for f in self.members.fold]
    self.train_graphs = [fold.train for fold in folds]
    self.val_graphs = [fold.validation for fold in folds]
    self.test_graphs = [fold.test for fold in folds]
    self.session = Session(
        config, self.dataset, self.members.hyper,
        self.members.seed * 1000 + self.members.fold,
        list(zip(self.members.fold, self.members.seed)),
        MemberGraphs(self.train_graphs, self.val_graphs, self.test_graphs),
        optimizer)
    self.task = self.session.task
    self.model_config = self.session.model_config    # input_vocab filled
    self.check_scorable()
    self.score = tasks.score_key(self.task.metric)
    self.history = {k: np.full((config.epochs, len(self.members)), np.nan)
                    for k in history_keys(self.model_config.aux_names,
                                          self.task.metric)}
    self.epoch_seconds = np.full(config.epochs, np.nan)
    # Data, buckets and member initialisation, before any epoch program.
    self.setup_seconds = time.perf_counter() - start

  def check_scorable(self) -> None:
    """ValueError naming the fold and part whose graphs leave the task's
    metric undefined (a binary task without both labels there)."""
    for f, fold in enumerate(self.folds):
      for part, graphs in (("valid", fold.validation), ("test", fold.test)):
        if len(graphs) and self.dataset.targets is not None:
          tasks.check_scorable(self.task, self.dataset.targets[graphs],
                               f"the {part} part of fold {f}")

  def checkpoint_tree(self, epoch: int):
    return {"states": self.session.states, "epoch": np.asarray(epoch),
            "history": self.history, "epoch_seconds": self.epoch_seconds}

  def restore(self, manager, saved_epochs: int) -> int:
    """Loads the latest checkpoint of a run planned for `saved_epochs`
    epochs (its history is extended to this run's epochs); returns the
    next epoch to run."""
    template = self.checkpoint_tree(0)
    template["history"] = {k: v[:1].repeat(saved_epochs, axis=0)
                           for k, v in self.history.items()}
    template["epoch_seconds"] = np.zeros(saved_epochs)
    tree = store.restore_checkpoint(manager, template)
    if tree is None:
      return 0
    self.session.states = tree["states"]
    for key, values in tree["history"].items():
      self.history[key][:saved_epochs] = np.asarray(values)
    self.epoch_seconds[:saved_epochs] = np.asarray(tree["epoch_seconds"])
    return int(tree["epoch"]) + 1

  def all_stopped(self, epoch: int) -> bool:
    """Whether the protocol lets training stop after this epoch (fair:
    every member's early stopping has run out of patience)."""
    seen = slice(0, epoch + 1)
    return self.protocol.stopped(self.history[f"val_{self.score}"][seen],
                                 self.history["val_loss"][seen],
                                 self.config.patience,
                                 self.task.higher_is_better)

  def fit(self, resume: bool = False, progress: bool = True,
          overwrite: bool = False) -> dict:
    """Trains every member; writes config.json, metrics.jsonl, results.json
    and checkpoints into the output folder; returns the results.

    The results (results.json's content) hold the protocol's summary
    ("score" in its "metric", "std", "fold_scores", ...), the task, the
    run's timings and "member_table": one row per member (folds x seeds x
    points) with its fold, seed, point, hyper-parameters, "selected_epoch"
    (where its protocol reads it) and its train/val/test figures there (see
    `member_table`). `history` holds every epoch: {key: [epochs, M]}.

    The folder must not hold another run (RunFolderError): `resume`
    continues the run there from its last checkpoint (same configuration
    but for RESUMABLE_FIELDS; more epochs extend it), `overwrite` deletes
    its outputs first. Resuming a folder without a run starts afresh.
    While it trains, the folder is locked (store.FolderLock); a start that
    fails (bad folder, no memory for the programs) writes nothing. A file
    that cannot be written ends it with store.WriteFailure, the last
    checkpoint and metrics kept for `resume`.
    """
    if resume and overwrite:
      raise store.RunFolderError("{resume} and {overwrite} exclude each other",
                                 "resume", "overwrite")
    lock = store.FolderLock(self.out) if hosts.is_writer() else None
    try:
      results = self.claim_and_train(resume, overwrite, progress)
    except store.WriteFailure as error:
      if lock:
        lock.release(failed=True)
      raise store.WriteFailure(
          error.message + "; free space (or restore the permission), then "
          "continue the run with {resume}", *error.fields, "resume") from None
    except BaseException:
      if lock:
        lock.release(failed=True)
      raise
    if lock:
      lock.release()
    return results

  def claim_and_train(self, resume: bool, overwrite: bool,
                      progress: bool) -> dict:
    """`fit` once the folder is locked: claims it, restores the last
    checkpoint, compiles, and only then writes config.json and trains."""
    manager, start_epoch = self.claim(resume, overwrite)
    programs, compile_seconds = self.compile_programs(progress)
    self.write_config()
    manager = manager or store.checkpoint_manager(self.out)
    wall_start = time.perf_counter()
    epochs_run = self.train_epochs(programs, manager, start_epoch, progress)
    results = self.results(epochs_run, compile_seconds,
                           time.perf_counter() - wall_start,
                           self.train_graph_count, programs)
    if hosts.is_writer():
      store.write_json_atomic(self.out / "results.json", results)
    hosts.barrier("run written")      # every process may read the files
    return results

  @property
  def train_graph_count(self) -> int:
    """Training graphs of one epoch, over every member."""
    return sum(len(g) for g in self.train_graphs)

  def claim(self, resume: bool, overwrite: bool):
    """Claims the run folder (`store.claim_folder`) and restores its last
    checkpoint: (its checkpoint manager or None, the epoch to start at)."""
    # Every process checks the folder (the same verdict on a shared
    # folder); only process 0 removes and writes.
    saved = store.claim_folder(self.out, self.config, resume, overwrite,
                               self.inputs, remove=hosts.is_writer(),
                               processes=hosts.count())
    hosts.barrier("run folder claimed")
    if not saved:
      self.segments = [{"from_epoch": 0, "commit": self.facts.get("commit")}]
      return None, 0
    manager = store.checkpoint_manager(self.out)
    start = self.restore(manager, saved["run"]["epochs"])
    # Which code trained which epochs: a run saved before segments were
    # recorded started at an unknown commit.
    earlier = saved.get("segments") or [{"from_epoch": 0, "commit": None}]
    self.segments = [segment for segment in earlier
                     if segment["from_epoch"] < start] + [
        {"from_epoch": start, "commit": self.facts.get("commit")}]
    return manager, start

  def compile_programs(self, progress: bool):
    """The session's compiled epoch programs and the seconds they took,
    saying the layout and the compute plan when `progress`."""
    compile_start = time.perf_counter()
    if progress:
      print(self.session.layout.reason, flush=True)
    programs = self.session.compile(progress)
    if progress:
      print(compute_message(self, programs), flush=True)
    return programs, time.perf_counter() - compile_start

  def write_config(self) -> None:
    """config.json (the run's description and input fingerprints, with a
    digest), by process 0; every process waits for it."""
    if hosts.is_writer():
      store.write_json_atomic(
          self.out / "config.json",
          store.with_digest({**run_description(self),
                             "inputs": self.inputs,
                             "segments": self.segments}),
          "the run's configuration")
    hosts.barrier("run folder written")

  def train_epochs(self, programs: Programs, manager, start_epoch: int,
                   progress: bool) -> int:
    """Trains from `start_epoch` until the last epoch, every member
    stopped or diverged; writes metrics.jsonl after every epoch and
    checkpoints every `checkpoint_every`. Returns the epochs run."""
    rows = [row for e in range(start_epoch)
            for row in metric_rows(self.members, self.history,
                                   self.points[0], e)]
    bar = tqdm(range(start_epoch, self.config.epochs), disable=not progress,
               desc=f"{self.config.dataset} {self.config.preset}",
               initial=start_epoch, total=self.config.epochs)
    epoch = start_epoch - 1
    for epoch in bar:
      self.train_epoch(programs, epoch)
      rows.extend(metric_rows(self.members, self.history, self.points[0],
                              epoch))
      if hosts.is_writer():
        store.write_lines_atomic(self.out / "metrics.jsonl", rows)
      self.show_progress(bar, programs, epoch)
      every = self.config.checkpoint_every
      if every and (epoch + 1) % every == 0:
        store.save_checkpoint(manager, epoch, self.checkpoint_tree(epoch))
      if self.all_stopped(epoch) or np.all(self.diverged_at(epoch + 1) >= 0):
        break
    bar.close()
    return epoch + 1

  def train_epoch(self, programs: Programs, epoch: int) -> None:
    """One epoch of every member: trains (timed), evaluates each split and
    records both in the history; marks members that diverged."""
    schedule = self.session.schedule(epoch)
    start = time.perf_counter()
    totals = self.session.train_members(programs, schedule,
                                        epoch * programs.steps_per_epoch)
    jax.block_until_ready(self.session.states)
    self.epoch_seconds[epoch] = time.perf_counter() - start
    self.record(epoch, "train", totals)
    for split, (_, fixed) in programs.evaluators.items():
      self.record(epoch, split,
                  *self.session.evaluate_members(programs, split), fixed)
    self.mark_diverged(epoch)

  def show_progress(self, bar, programs: Programs, epoch: int) -> None:
    """The progress bar's figures after `epoch`: mean training loss, mean
    validation (or test) score and training graphs per second."""
    shown = (f"val_{self.score}" if "val" in programs.evaluators
             else f"test_{self.score}")
    bar.set_postfix(
        loss=f"{np.mean(self.history['train_loss'][epoch]):.3f}",
        **{shown: f"{np.mean(self.history[shown][epoch]):.3f}"},
        graphs_per_s=f"{self.train_graph_count / self.epoch_seconds[epoch]:.0f}")

  def mark_diverged(self, epoch: int) -> None:
    """Members whose training loss or parameters are not finite after this
    epoch have diverged: from their first such epoch on, every history
    value is NaN, so no protocol can select those epochs."""
    finite = (self.session.params_finite()
              & np.isfinite(self.history["train_loss"][epoch]))
    for member in np.flatnonzero(~finite):
      for values in self.history.values():
        values[epoch, member] = np.nan

  def diverged_at(self, epochs_run: int) -> np.ndarray:
    """[M] the first epoch (< epochs_run) where each member diverged (see
    `mark_diverged`), or -1."""
    return first_nan_epoch(self.history["train_loss"][:epochs_run])

  def record(self, epoch: int, split: str, totals, outputs=None,
             schedule: Optional[pipeline.Schedule] = None) -> None:
    """Stores an epoch's per-member means of a split (and, for training,
    of each auxiliary loss) and its score: the accuracy from the metric
    sums `totals` (classification), else the task's metric of the
    evaluated members' `outputs` [T, M, B, O] on their `schedule`."""
    values = trainer.metrics_to_numpy(totals)
    self.history[f"{split}_loss"][epoch] = values["loss"]
    if self.task.kind == "classification":
      self.history[f"{split}_acc"][epoch] = values["accuracy"]
    elif outputs is not None:
      self.history[f"{split}_{self.score}"][epoch] = self.member_scores(
          outputs, schedule)
    if split == "train":
      for name in self.model_config.aux_names:
        self.history[f"train_{name}"][epoch] = values[name]

  def member_scores(self, outputs, schedule: pipeline.Schedule
                    ) -> np.ndarray:
    """[M] the task's metric of each member's outputs [T, M, B, O] on the
    graphs its `schedule` evaluated (NaN where they are not finite: a
    diverged member)."""
    ids = pipeline.graph_ids(schedule, self.session.data)        # [M, T, B]
    outputs = np.moveaxis(hosts.fetch(outputs), 1, 0)           # [M,T,B,O]
    scores = np.full(len(ids), np.nan)
    for m, member_ids in enumerate(ids):
      real = member_ids >= 0
      predicted = outputs[m][real]
      if np.all(np.isfinite(predicted)):
        scores[m] = tasks.score(self.task,
                                self.dataset.targets[member_ids[real]],
                                predicted)
    return scores

  def results(self, epochs_run: int, compile_seconds: float,
              wall_seconds: float, train_graphs: int,
              programs: Programs) -> dict:
    table = lambda key: self.members.table(
        self.history[key][:epochs_run], self.grid_shape)
    tables = {"val_score": table(f"val_{self.score}"),
              "val_loss": table("val_loss"),
              "test_score": table(f"test_{self.score}")}
    higher = self.task.higher_is_better
    summary = self.protocol.summary(tables, self.config.patience, higher)
    selected = self.protocol.selected_epochs(tables, self.config.patience,
                                             higher)
    seconds = self.epoch_seconds[:epochs_run]
    median = float(np.nanmedian(seconds)) if epochs_run else float("nan")
    diverged = self.diverged_at(epochs_run)
    return {**summary, "protocol": self.protocol.name,
            "note": self.protocol.note,
            "segments": self.segments,
            "task": self.task.kind, "task_outputs": self.task.outputs,
            "task_source": self.session.task_source,
            "metric": self.task.metric,
            "diverged_members": {int(m): int(diverged[m]) for m in
                                 np.flatnonzero(diverged >= 0)},
            "dataset": self.config.dataset, "preset": self.config.preset,
            "points": self.points,
            "member_table": member_table(
                self.members, self.history, selected.reshape(-1),
                self.points[0], self.diverged_at(epochs_run)),
            "epochs_run": epochs_run, "members": len(self.members),
            "wall_seconds": wall_seconds,
            "compile_seconds": compile_seconds,
            "median_epoch_seconds": median,
            "graphs_per_second": train_graphs / median,
            "parameters": int(sum(x.size for x in jax.tree_util.tree_leaves(
                self.session.states.params)) // len(self.members)),
            **self.facts,
            "members_per_program": programs.size,
            "setup_seconds": self.setup_seconds,
            "compile_stages": programs.stages,
            "compile_effort": {"effort": self.session.effort,
                               "reason": self.session.layout.reason},
            "buckets": self.session.buckets.tolist()}


def run_description(run: Run) -> dict:
  """config.json's content (without the input fingerprints): the run's
  configuration, model, data set, members, clusters, buckets and
  process count."""
  return {"run": dataclasses.asdict(run.config),
          "model": dataclasses.asdict(run.model_config),
          "dataset": run.dataset.stats(), "members": len(run.members),
          "cluster_mode": "per_graph" if run.model_config.per_graph
                          else "fixed",
          "clusters": run.model_config.cluster_counts(
              run.session.model.max_nodes),
          "cluster_slots": run.session.cluster_slots(),
          "sparse_buckets": run.session.sparse,
          "buckets": run.session.buckets.tolist(),
          "processes": hosts.count()}


def metric_rows(members: Members, history: Dict[str, np.ndarray],
                axes, epoch: int) -> List[dict]:
  """metrics.jsonl's rows of an epoch: per member its fold, seed, point,
  its value of each hyper-parameter axis in `axes` and every history value
  that is not NaN (a diverged member is marked "diverged")."""
  rows, member_values = [], members.hyper.axes()
  for m in range(len(members)):
    row = {"epoch": epoch, "member": m, "fold": int(members.fold[m]),
           "seed": int(members.seed[m]), "point": int(members.point[m]),
           **{axis: float(member_values[axis][m]) for axis in axes}}
    if np.isnan(history["train_loss"][epoch, m]):
      row["diverged"] = True
    for key, values in history.items():
      if not np.isnan(values[epoch, m]):
        row[key] = float(values[epoch, m])
    rows.append(row)
  return rows


def member_table(members: Members, history: Dict[str, np.ndarray],
                 epochs: np.ndarray, axes, diverged: np.ndarray
                 ) -> List[dict]:
  """One row per member (folds x seeds x points, in member order): its
  fold, seed, point and value of each hyper-parameter axis in `axes`, the
  epoch its protocol reports it at (`epochs` [M], 0-based, as
  metrics.jsonl counts) and every history value there (None where it is
  NaN), and the first diverged epoch (None: never)."""
  rows = []
  for m, (row, epoch) in enumerate(zip(metric_rows(members, history, axes, 0),
                                       epochs)):
    figures = {key: float(values[epoch, m]) for key, values in history.items()}
    rows.append({**{k: row[k] for k in ("member", "fold", "seed", "point",
                                         *axes)},
                 "selected_epoch": int(epoch),
                 **store.finite_or_none(figures),
                 "diverged_at": int(diverged[m]) if diverged[m] >= 0 else None})
  return rows


def device_facts() -> dict:
  """What results.json records of the software, the code's commit and the
  machine (CPU cores and the device kind)."""
  device = jax.devices()[0]
  return {"jax_version": jax.__version__, "device": str(device),
          "devices": jax.device_count(), "commit": source_commit(),
          "machine": f"{os.cpu_count()} CPU cores, {jax.device_count()} x "
                     f"{device.device_kind}"}


def source_commit() -> Optional[str]:
  """The git commit of this package's checkout ("+changes" when tracked
  files differ from it), or None for an installed copy."""
  folder = Path(__file__).resolve().parents[2]
  try:
    run = lambda *a: subprocess.run(["git", "-C", str(folder), *a],
                                    capture_output=True, text=True,
                                    timeout=10, check=True).stdout.strip()
    if not (folder / ".git").exists():
      return None
    commit = run("rev-parse", "--short", "HEAD")
    changed = run("status", "--porcelain", "--untracked-files=no")
  except (OSError, subprocess.SubprocessError):
    return None
  return commit + ("+changes" if changed else "")


def first_nan_epoch(values: np.ndarray) -> np.ndarray:
  """[M] the first row of values [E, M] that is NaN in each column, or -1."""
  lost = np.isnan(values)
  first = lost.argmax(axis=0) if len(values) else np.zeros(values.shape[1],
                                                           np.int64)
  return np.where(lost.any(axis=0), first, -1)


def compute_message(run: Run, programs: Programs) -> str:
  """One line on what a run trains: members, epochs, programs."""
  folds, seeds, points = run.grid_shape
  return (f"compute: {folds} folds x {seeds} seeds x {points} points = "
          f"{len(run.members)} members, up to {run.config.epochs} epochs"
          f" of {programs.steps_per_epoch} steps, "
          f"{len(run.session.member_parts(programs))} program(s) per "
          f"epoch; protocol {run.protocol.name}")

