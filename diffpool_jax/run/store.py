"""A run's folder: who owns it (an exclusive lock while a command uses
it), atomic writers for JSON and JSON lines, config.json with the digest
that tells an edited file, and checkpoints (orbax)."""

from __future__ import annotations

import dataclasses
import fcntl
import hashlib
import json
import logging
import os
import re
import shutil
import sys
import threading
from pathlib import Path
from typing import Any, List, Optional

import jax
import numpy as np
import orbax.checkpoint as ocp

from diffpool_jax.engine import hosts
from diffpool_jax.errors import InputError

# What a run writes into its folder; `overwrite` removes these and only these.
RUN_OUTPUTS = ("config.json", "metrics.jsonl", "results.json", "checkpoints",
               "learning_curves.png", "assignments.png", "hierarchy.png")
# RunConfig fields that may change when a run is resumed (epochs may only
# grow); any other difference is refused.
RESUMABLE_FIELDS = ("epochs", "patience", "checkpoint_every",
                    "members_per_program", "memory_gib", "data_root")


class RunFolderError(InputError):
  """The output folder holds another run, or one that cannot be resumed."""


def finite_or_none(value):
  """`value` with every non-finite float replaced by None (valid JSON)."""
  if isinstance(value, dict):
    return {k: finite_or_none(v) for k, v in value.items()}
  if isinstance(value, (list, tuple)):
    return [finite_or_none(v) for v in value]
  if isinstance(value, (float, np.floating)) and not np.isfinite(value):
    return None
  return value


class WriteFailure(InputError):
  """A run's file could not be written (no space, no permission); the
  file was not changed and no temporary file is left."""


def write_text_atomic(path: Path, text: str, what: str) -> None:
  """Writes `text` to a temporary file beside `path`, then renames it over
  `path`; WriteFailure (naming the path and `what` it holds) if either
  fails."""
  temporary = path.with_name(path.name + ".tmp")
  try:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary.write_text(text)
    os.replace(temporary, path)
  except OSError as error:
    try:
      temporary.unlink(missing_ok=True)
    except OSError:
      pass
    raise WriteFailure(f"could not write {what} to {path}: "
                       f"{error.strerror or error}; the file was not "
                       "changed") from None


def write_json_atomic(path: Path, value, what: str = "the results") -> None:
  """Writes JSON (non-finite numbers as null) atomically (see
  write_text_atomic)."""
  write_text_atomic(path, json.dumps(finite_or_none(value), indent=2,
                                     default=_to_builtin, allow_nan=False),
                    what)


def write_lines_atomic(path: Path, rows: List[dict],
                       what: str = "the metrics") -> None:
  """Writes one JSON object per line atomically (see write_text_atomic)."""
  write_text_atomic(path, "".join(json.dumps(r, default=_to_builtin) + "\n"
                                  for r in rows), what)


def _to_builtin(value):
  if isinstance(value, np.generic):
    return value.item()
  if isinstance(value, np.ndarray):
    return value.tolist()
  raise TypeError(f"not JSON serialisable: {type(value)}")


def fingerprint(*arrays: np.ndarray) -> str:
  """A hash of arrays' shapes, dtypes and bytes."""
  digest = hashlib.blake2b(digest_size=16)
  for array in arrays:
    array = np.ascontiguousarray(array)
    digest.update(f"{array.shape}{array.dtype}".encode())
    digest.update(memoryview(array).cast("B"))
  return digest.hexdigest()


def delete_outputs(out: Path, names) -> None:
  """Deletes these files and folders of `out` (what `overwrite` replaces),
  nothing else."""
  for name in names:
    path = out / name
    shutil.rmtree(path) if path.is_dir() else path.unlink()


class FolderLock:
  """An exclusive lock on a run folder while one command uses it.

  It is an flock on the folder itself: of two commands claiming a folder
  at the same moment only one holds it, and the operating system releases
  it when the process ends, however it ends, so nothing stale is left.
  Locks are per machine: on a network folder, other hosts' processes do
  not see it (with several processes only process 0 takes it)."""

  def __init__(self, out: Path):
    self.out = out
    self.created = not out.exists()
    if out.exists() and not out.is_dir():
      raise RunFolderError(f"{{out}} {out} is a file, not a folder", "out")
    try:
      out.mkdir(parents=True, exist_ok=True)
      self.descriptor = os.open(out, os.O_RDONLY)
    except OSError as error:
      raise RunFolderError(f"{{out}} {out}: cannot create or open the "
                           f"folder: {error.strerror or error}", "out") from None
    try:
      fcntl.flock(self.descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      os.close(self.descriptor)
      raise RunFolderError(
          f"{{out}} {out} is in use by another command (it holds the "
          "folder's lock); wait until it ends or choose another {out}",
          "out") from None

  def release(self, failed: bool = False) -> None:
    """Gives the lock up; after a failed start, a folder this lock created
    is removed again if nothing was written into it."""
    if failed and self.created:
      try:
        self.out.rmdir()
      except OSError:                # not empty: it holds what was written
        pass
    os.close(self.descriptor)


def description_digest(description: dict) -> str:
  """A hash of config.json's content without its "digest" entry, as JSON
  reads it back (tuples as lists, keys as strings)."""
  content = {k: v for k, v in description.items() if k != "digest"}
  canonical = json.loads(json.dumps(finite_or_none(content),
                                    default=_to_builtin))
  return hashlib.blake2b(json.dumps(canonical, sort_keys=True).encode(),
                         digest_size=16).hexdigest()


def with_digest(description: dict) -> dict:
  """config.json's content: `description` and its digest, by which resume
  tells a file edited or damaged since the run wrote it."""
  return {**description, "digest": description_digest(description)}


def read_saved_run(out: Path, config) -> dict:
  """The content of out/config.json, checked before a resume changes
  anything: intact (`read_intact_run`) and a "run" holding exactly the
  fields of `config`'s dataclass; RunFolderError naming the fault
  otherwise."""
  path = out / "config.json"
  try:
    saved = read_intact_run(out)
  except RunFolderError as error:
    raise RunFolderError(
        f"{{resume}}: {error}; restore it, or start a new run ({{overwrite}} "
        "or another {out})", "resume", "overwrite", "out") from None
  fields = {f.name for f in dataclasses.fields(config)}
  missing, unknown = fields - set(saved["run"]), set(saved["run"]) - fields
  if missing or unknown:
    names = ", ".join(sorted(missing)) or ", ".join(sorted(unknown))
    raise RunFolderError(
        f"{{resume}}: the run in {path} "
        f"{'lacks' if missing else 'has unknown'} field(s) {names}; it was "
        "edited, damaged or written by another version", "resume")
  return saved


def read_intact_run(out: Path) -> dict:
  """The content of out/config.json as its run wrote it: readable JSON
  with a "run" object, its digest matching (files written before digests
  were recorded have none); RunFolderError saying which is not so
  otherwise (the caller says what to do)."""
  path = out / "config.json"
  try:
    saved = json.loads(path.read_text())
  except (OSError, ValueError) as error:
    raise RunFolderError(f"cannot read {path}: {error}") from None
  if not isinstance(saved, dict) or not isinstance(saved.get("run"), dict):
    raise RunFolderError(f"{path} holds no run (no \"run\" object); it was "
                         "edited or damaged")
  if "digest" in saved and saved["digest"] != description_digest(saved):
    raise RunFolderError(f"{path} was edited or damaged since the run wrote "
                         "it (its content no longer matches its digest)")
  return saved


def claim_folder(out: Path, config, resume: bool, overwrite: bool,
                 inputs: Optional[dict] = None, remove: bool = True,
                 processes: int = 1) -> Optional[dict]:
  """Makes `out` this run's own folder before anything is written (hold
  its FolderLock first).

  A folder holding another run's outputs is refused unless `overwrite`
  (which deletes those outputs, and nothing else) or `resume` (whose saved
  configuration must be intact (read_saved_run) and match, but for
  RESUMABLE_FIELDS, and it must have run on as many processes). `remove`:
  whether this process deletes what `overwrite` replaces (with several
  processes, only process 0 does).

  Returns:
    The saved config.json's content (a dict: "run", "inputs",
    "segments", ...) when resuming an existing run, else None.
  """
  if out.exists() and not out.is_dir():
    raise RunFolderError(f"{{out}} {out} is a file, not a folder", "out")
  found = [name for name in RUN_OUTPUTS if (out / name).exists()]
  if not found:
    return None
  if overwrite:
    if remove:
      delete_outputs(out, found)
    return None
  if not resume:
    raise RunFolderError(
        f"{{out}} {out} already holds a run ({', '.join(found)}); pass "
        "{resume} to continue it or {overwrite} to replace it",
        "out", "resume", "overwrite")
  saved_file = read_saved_run(out, config)
  saved = saved_file["run"]
  current = json.loads(json.dumps(dataclasses.asdict(config),
                                  default=_to_builtin))
  for field in sorted(current):
    if field in RESUMABLE_FIELDS or saved[field] == current[field]:
      continue
    raise RunFolderError(
        f"{{resume}}: {field} was {saved[field]!r} in the run in {out}, "
        f"now {current[field]!r}; only {', '.join(RESUMABLE_FIELDS)} "
        "may change on resume (or use another {out})", "resume", "out")
  try:
    dataclasses.replace(config, **{f: saved[f] for f in RESUMABLE_FIELDS})
  except (TypeError, ValueError) as error:
    raise RunFolderError(f"{{resume}}: the run in {out}/config.json is not "
                         f"valid: {error}", "resume") from None
  if current["epochs"] < saved["epochs"]:
    raise RunFolderError(
        f"{{resume}}: epochs was {saved['epochs']} in the run in {out}, now "
        f"{current['epochs']}; epochs may only grow on resume", "resume")
  check_inputs(out, saved_file.get("inputs") or {}, inputs or {})
  if saved_file.get("processes", 1) != processes:
    raise RunFolderError(
        f"{{resume}}: the run in {out} ran on "
        f"{saved_file.get('processes', 1)} process(es), now {processes}; "
        "resume it with the same number of processes", "resume")
  return saved_file


# What each input fingerprint covers (run.members.input_fingerprints), the
# narrowest first: a change is named by the first that differs. A run
# saved before a name existed is checked on the names it has.
INPUT_NAMES = {"targets": "class labels or target columns",
               "node_inputs": "node labels or attributes",
               "edge_inputs": "edge labels or attributes (bond features)",
               "official_split": "data set's official split files",
               "splits": "split file's content",
               "data": "data set (graphs, labels or features)"}


def input_change(saved: dict, current: dict, since: str) -> Optional[str]:
  """'the WHAT changed since SINCE (fingerprint OLD, now NEW)' for the
  first input (see INPUT_NAMES) whose fingerprint in `current` differs
  from the one a run recorded (`saved`); None when none does."""
  for name, what in INPUT_NAMES.items():
    if name in saved and saved[name] != current.get(name):
      return (f"the {what} changed since {since} (fingerprint "
              f"{str(saved[name])[:12]}, now {str(current.get(name))[:12]})")
  return None


def check_inputs(out: Path, saved: dict, current: dict) -> None:
  """RunFolderError naming the input (see INPUT_NAMES) whose fingerprint
  differs from the one the run in `out` recorded."""
  change = input_change(saved, current, f"the run in {out} started")
  if change is not None:
    raise RunFolderError(
        f"{{resume}}: {change}; restore the original inputs to resume, or "
        "start a new run ({overwrite} or another {out})", "resume",
        "overwrite", "out")


def checkpoint_manager(out: Path) -> ocp.CheckpointManager:
  """The run's checkpoints in out/checkpoints (the last two kept)."""
  options = ocp.CheckpointManagerOptions(max_to_keep=2,
                                         enable_async_checkpointing=False)
  return ocp.CheckpointManager((out / "checkpoints").absolute(),
                               options=options)


def save_checkpoint(manager: ocp.CheckpointManager, epoch: int,
                    tree: Any) -> None:
  """Saves `tree` as the checkpoint of `epoch` and waits until written.

  A save that fails (no space, no permission) leaves no partial
  checkpoint: what it wrote is removed, the earlier checkpoints stay, and
  WriteFailure names the folder. Orbax's own logging of the failure, a
  traceback per writing thread, is held back while saving; after a
  failure, orbax's records are dropped from then on (its writing threads
  may log after the failure is reported: `drop_orbax_records`)."""
  directory = Path(manager.directory)
  kept = {str(step) for step in manager.all_steps()}
  quiet = logging.getLogger("absl")
  level = quiet.level
  quiet.setLevel(logging.CRITICAL)
  drop_closed_loop_errors()
  try:
    manager.save(epoch, args=ocp.args.StandardSave(tree))
    manager.wait_until_finished()
  except Exception as error:       # orbax's, tensorstore's or the OS's own
    if jax.process_index() == 0:
      for entry in directory.iterdir():
        if entry.name not in kept:
          shutil.rmtree(entry, ignore_errors=True)
    lost = hosts.lost_process(error)     # a barrier of orbax's saw it
    if lost is not None:
      raise lost from None
    logging.getLogger("asyncio").setLevel(logging.CRITICAL)
    drop_orbax_records(quiet)
    raise WriteFailure(f"could not write the checkpoint of epoch {epoch} "
                       f"to {directory}: {failure_reason(error)}; the "
                       "earlier checkpoints are kept") from None
  finally:
    quiet.setLevel(level)


def not_from_orbax(record: logging.LogRecord) -> bool:
  """A logging filter: False for the records orbax's code logs (absl's
  records carry the file of the call that logged)."""
  return f"{os.sep}orbax{os.sep}" not in record.pathname


def drop_orbax_records(logger: logging.Logger) -> None:
  """Drops orbax's records from `logger` from now on (once per logger);
  other records pass as before."""
  if not_from_orbax not in logger.filters:
    logger.addFilter(not_from_orbax)


def is_closed_loop_error(kind, value) -> bool:
  """Whether an exception is asyncio's "Event loop is closed"."""
  return (isinstance(kind, type) and issubclass(kind, RuntimeError)
          and str(value) == "Event loop is closed")


def drop_closed_loop_errors() -> None:
  """When a save fails, the writes orbax had started end on their own
  threads: tensorstore's callbacks find orbax's event loop closed and
  print a traceback each (and asyncio logs each failed write task when it
  is collected: save_checkpoint then silences the "asyncio" logger),
  about 60 on a full disk. The failure is reported once (WriteFailure),
  so the hooks that print them (sys.unraisablehook, where tensorstore's
  callbacks report, and threading.excepthook) drop asyncio's "Event loop
  is closed" from now on; other exceptions are shown as before."""
  if getattr(sys.unraisablehook, "drops_closed_loop", False):
    return
  unraisable_hook, thread_hook = sys.unraisablehook, threading.excepthook

  def unraisable_filter(arguments):
    if not is_closed_loop_error(arguments.exc_type, arguments.exc_value):
      unraisable_hook(arguments)

  def thread_filter(arguments):
    if not is_closed_loop_error(arguments.exc_type, arguments.exc_value):
      thread_hook(arguments)

  unraisable_filter.drops_closed_loop = True
  sys.unraisablehook, threading.excepthook = unraisable_filter, thread_filter


def failure_reason(error: BaseException) -> str:
  """The operating system's words for why a write failed ("No space left
  on device"), found in the exception chain or in the error code that
  tensorstore puts in its message; else the message's first line."""
  link = error
  while link is not None:
    if isinstance(link, OSError) and link.errno:
      return os.strerror(link.errno)
    link = link.__cause__ or link.__context__
  code = re.search(r"os_error_code='?(\d+)|\[Errno (\d+)\]", str(error))
  if code:
    return os.strerror(int(code.group(1) or code.group(2)))
  text = str(error).strip()
  return text.splitlines()[0][:200] if text else type(error).__name__


def restore_checkpoint(manager: ocp.CheckpointManager, template: Any):
  """The latest checkpoint, shaped as `template` (arrays or shape
  structs), or None when there is none; RunFolderError when it does not
  have the template's shapes (a config.json or checkpoint not of one
  run)."""
  step = manager.latest_step()
  if step is None:
    return None
  target = jax.tree_util.tree_map(ocp.utils.to_shape_dtype_struct, template)
  try:
    tree = manager.restore(step, args=ocp.args.StandardRestore(target))
    check_shapes(tree, target)
    return tree
  except Exception as error:       # orbax's errors have no common type
    reason = str(error).strip().splitlines()[0][:200].rstrip(":")
    raise RunFolderError(
        f"{{resume}}: the checkpoint {Path(manager.directory) / str(step)} "
        f"does not fit the run in config.json ({reason}); both must be of "
        "one run, and of a version of diffpool_jax with the same train "
        "state (config.json's segments name the commits that trained it): "
        "restore them, finish the run with that version, or start a new "
        "run ({overwrite} or another {out})", "resume", "overwrite",
        "out") from None


def check_shapes(tree: Any, target: Any) -> None:
  """ValueError naming the first entry of `tree` whose shape is not the
  one in `target` (orbax restores the saved shapes as they are)."""
  found = jax.tree_util.tree_flatten_with_path(tree)[0]
  wanted = jax.tree_util.tree_leaves(target)
  if len(found) != len(wanted):
    raise ValueError(f"{len(found)} arrays, expected {len(wanted)}")
  for (path, value), expected in zip(found, wanted):
    if np.shape(value) != tuple(expected.shape):
      raise ValueError(f"{jax.tree_util.keystr(path)} has shape "
                       f"{np.shape(value)}, expected {tuple(expected.shape)}")
