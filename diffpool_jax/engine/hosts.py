"""Many processes, one run: JAX's multi-controller runtime.

Every process runs the same command: it loads the same data set and builds
the same members, schedules and initial states (they follow from the
seeds), so no data travels between processes but what the compiled
programs' collectives need. `start` joins the processes
(`jax.distributed.initialize`); from then on `jax.devices()` lists every
process's devices, the members are sharded over one mesh of all of them
(training.make_mesh), results come back to every process with `fetch`, and
only process 0 writes files (`is_writer`).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Optional

import jax
import numpy as np
from jax.experimental import multihost_utils

from diffpool_jax.errors import InputError

# Seconds a process waits for the others to join, for a silent one, and
# for the others at the end (or after one failed) before the run ends.
JOIN_TIMEOUT = 120
HEARTBEAT_TIMEOUT = 30
SHUTDOWN_TIMEOUT = 30


def start(coordinator: Optional[str] = None,
          num_processes: Optional[int] = None,
          process_id: Optional[int] = None, auto: bool = False,
          join_timeout: int = JOIN_TIMEOUT) -> bool:
  """Joins this process to the run's processes, before any computation;
  returns whether it did (False: one process, nothing changes).

  Args:
    coordinator: "HOST:PORT" of process 0's coordination service.
    num_processes: how many processes take part.
    process_id: this process's number, 0 .. num_processes - 1.
    auto: let JAX find the three from the cluster (SLURM, TPU pods, ...).
    join_timeout: seconds to wait for every process to join.

  Raises:
    InputError: some of coordinator, num_processes and process_id are
      given but not all, or their values do not fit together.
  """
  given = {"coordinator": coordinator, "num_processes": num_processes,
           "process_id": process_id}
  if not auto and all(value is None for value in given.values()):
    return False
  if not auto:
    missing = [name for name, value in given.items() if value is None]
    if missing:
      raise InputError("{coordinator}, {num_processes} and {process_id} "
                       "go together; missing: " + ", ".join(
                           "{" + name + "}" for name in missing),
                       "coordinator", "num_processes", "process_id")
    if not (num_processes >= 1 and 0 <= process_id < num_processes):
      raise InputError(f"{{process_id}}={process_id} with "
                       f"{{num_processes}}={num_processes}; expected 0 <= "
                       "process_id < num_processes",
                       "process_id", "num_processes")
  # Cross-process collectives on CPUs (the GPU and TPU backends bring their
  # own); harmless elsewhere.
  jax.config.update("jax_cpu_collectives_implementation", "gloo")
  jax.distributed.initialize(
      coordinator, num_processes, process_id,
      initialization_timeout=join_timeout,
      heartbeat_timeout_seconds=HEARTBEAT_TIMEOUT,
      shutdown_timeout_seconds=SHUTDOWN_TIMEOUT)
  return True


def count() -> int:
  """How many processes take part in the run."""
  return jax.process_count()


def is_writer() -> bool:
  """Whether this process writes the run's files (process 0)."""
  return jax.process_index() == 0


def fetch(tree: Any) -> Any:
  """The tree's values as NumPy arrays on this host, however its arrays
  are spread over the processes' devices."""
  if count() == 1:
    return jax.device_get(tree)
  return multihost_utils.process_allgather(tree, tiled=True)


def portable(tree: Any) -> Any:
  """The tree ready to be spread over every process's devices
  (jax.device_put with a mesh): with several processes, the arrays that
  live on this process's devices alone become NumPy arrays (every process
  holds the same values); arrays already spread stay as they are."""
  if count() == 1:
    return tree
  return jax.tree_util.tree_map(
      lambda leaf: jax.device_get(leaf) if getattr(
          leaf, "is_fully_addressable", False) else leaf, tree)


def barrier(name: str) -> None:
  """Waits until every process has reached the barrier `name`."""
  if count() > 1:
    multihost_utils.sync_global_devices(name)


def agree(values: dict, fields=()) -> None:
  """Checks, before anything is written or sent, that every process was
  given the same `values` ({name: JSON-able value}: configuration fields,
  input fingerprints); InputError naming the first name whose value
  differs (names in `fields` are marked {name}, so that commands spell
  them as their flags).

  Each process contributes a 16-byte digest per name, so this costs one
  small all-gather however large the values."""
  if count() == 1:
    return
  names = sorted(values)
  digests = np.stack([np.frombuffer(hashlib.blake2b(
      json.dumps(values[name], sort_keys=True, default=str).encode(),
      digest_size=16).digest(), np.uint8) for name in names])
  everyone = np.asarray(multihost_utils.process_allgather(digests))
  here = jax.process_index()
  for index, name in enumerate(names):
    differ = [p for p in range(len(everyone))
              if not np.array_equal(everyone[p, index], everyone[here, index])]
    if differ:
      shown = json.dumps(values[name], default=str)
      shown = shown if len(shown) <= 80 else shown[:77] + "..."
      marked = "{" + name + "}" if name in fields else name
      raise InputError(
          f"process {here} of {count()}: {marked} is {shown} here but "
          f"differs on process(es) {', '.join(map(str, differ))}; start "
          "every process with the same command and inputs",
          *([name] if name in fields else []))


class LostProcess(RuntimeError):
  """Another process of the run was lost (killed, its machine down)
  while this one waited for it; what was written is whole, so the run
  continues when every process is restarted with --resume."""


# Words of the runtime's errors when another process of the run is gone.
LOST_PROCESS_WORDS = ("closed by peer", "Connection reset", "heartbeat",
                      "UNAVAILABLE", "Socket closed")


def lost_process(error: BaseException) -> Optional[LostProcess]:
  """A LostProcess describing `error`, if it is the runtime's report of
  a lost process (with several processes only); else None."""
  text = str(error)
  if count() == 1 or not any(w in text for w in LOST_PROCESS_WORDS):
    return None
  return LostProcess(
      f"process {jax.process_index()} of {count()}: lost contact with "
      f"another process ({text.strip().splitlines()[0][:200]}); restart "
      "every process with the same command and --resume")
