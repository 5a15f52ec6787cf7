"""A run's folder: who owns it, atomic writers for JSON, JSON lines and
their readers' formats, and checkpoints (orbax)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any, List, Optional

import jax
import numpy as np
import orbax.checkpoint as ocp

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


def write_json_atomic(path: Path, value) -> None:
  """Writes JSON (non-finite numbers as null) to a temporary file, then
  renames it over `path`."""
  path.parent.mkdir(parents=True, exist_ok=True)
  temporary = path.with_name(path.name + ".tmp")
  temporary.write_text(json.dumps(finite_or_none(value), indent=2,
                                  default=_to_builtin, allow_nan=False))
  os.replace(temporary, path)


def write_lines_atomic(path: Path, rows: List[dict]) -> None:
  """Writes one JSON object per line, atomically."""
  temporary = path.with_name(path.name + ".tmp")
  temporary.write_text("".join(json.dumps(r, default=_to_builtin) + "\n"
                               for r in rows))
  os.replace(temporary, path)


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


def claim_folder(out: Path, config, resume: bool, overwrite: bool,
                 inputs: Optional[dict] = None, remove: bool = True,
                 processes: int = 1) -> Optional[dict]:
  """Makes `out` this run's own folder before anything is written.

  A folder holding another run's outputs is refused unless `overwrite`
  (which deletes those outputs, and nothing else) or `resume` (whose saved
  configuration must match, but for RESUMABLE_FIELDS, and it must have run
  on as many processes). `remove`: whether this process deletes what
  `overwrite` replaces (with several processes, only process 0 does).

  Returns:
    The saved run configuration (a dict) when resuming an existing run,
    else None.
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
  saved_path = out / "config.json"
  try:
    saved_file = json.loads(saved_path.read_text())
    saved = saved_file["run"]
  except (OSError, ValueError, KeyError, TypeError) as error:
    raise RunFolderError(f"{{resume}}: cannot read the run in {saved_path}: "
                         f"{error}", "resume") from None
  current = json.loads(json.dumps(dataclasses.asdict(config),
                                  default=_to_builtin))
  for field in sorted(set(saved) | set(current)):
    if field in RESUMABLE_FIELDS or saved.get(field) == current.get(field):
      continue
    raise RunFolderError(
        f"{{resume}}: {field} was {saved.get(field)!r} in the run in {out}, "
        f"now {current.get(field)!r}; only {', '.join(RESUMABLE_FIELDS)} "
        "may change on resume (or use another {out})", "resume", "out")
  if current["epochs"] < saved.get("epochs", 0):
    raise RunFolderError(
        f"{{resume}}: epochs was {saved['epochs']} in the run in {out}, now "
        f"{current['epochs']}; epochs may only grow on resume", "resume")
  check_inputs(out, saved_file.get("inputs") or {}, inputs or {})
  if saved_file.get("processes", 1) != processes:
    raise RunFolderError(
        f"{{resume}}: the run in {out} ran on "
        f"{saved_file.get('processes', 1)} process(es), now {processes}; "
        "resume it with the same number of processes", "resume")
  return saved


INPUT_NAMES = {"data": "data set (graphs, labels or features)",
               "splits": "split file's content"}


def check_inputs(out: Path, saved: dict, current: dict) -> None:
  """RunFolderError naming the input (see INPUT_NAMES) whose fingerprint
  differs from the one the run in `out` recorded."""
  for name, what in INPUT_NAMES.items():
    if name in saved and saved[name] != current.get(name):
      raise RunFolderError(
          f"{{resume}}: the {what} changed since the run in {out} started "
          f"(fingerprint {str(saved[name])[:12]}, now "
          f"{str(current.get(name))[:12]}); restore the original inputs to "
          "resume, or start a new run ({overwrite} or another {out})",
          "resume", "overwrite", "out")


def checkpoint_manager(out: Path) -> ocp.CheckpointManager:
  """The run's checkpoints in out/checkpoints (the last two kept)."""
  options = ocp.CheckpointManagerOptions(max_to_keep=2,
                                         enable_async_checkpointing=False)
  return ocp.CheckpointManager((out / "checkpoints").absolute(),
                               options=options)


def save_checkpoint(manager: ocp.CheckpointManager, epoch: int,
                    tree: Any) -> None:
  """Saves `tree` as the checkpoint of `epoch` and waits until written."""
  manager.save(epoch, args=ocp.args.StandardSave(tree))
  manager.wait_until_finished()


def restore_checkpoint(manager: ocp.CheckpointManager, template: Any):
  """The latest checkpoint, shaped as `template` (arrays or shape
  structs), or None when there is none."""
  step = manager.latest_step()
  if step is None:
    return None
  target = jax.tree_util.tree_map(ocp.utils.to_shape_dtype_struct, template)
  return manager.restore(step, args=ocp.args.StandardRestore(target))
