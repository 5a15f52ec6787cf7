"""The commands' flags for one job across several processes
(diffpool_jax.engine.hosts): the arguments of jax.distributed.initialize."""

from __future__ import annotations

import argparse
import atexit
import ctypes
import os
import sys
from typing import Callable, NoReturn

import jax

from diffpool_jax.cli.errors import command_message
from diffpool_jax.engine import hosts
from diffpool_jax.errors import InputError


def add_flags(parser: argparse.ArgumentParser) -> None:
  """--coordinator, --num-processes, --process-id, --distributed,
  --join-timeout."""
  group = parser.add_argument_group(
      "several processes (one run over every process's devices; without "
      "these flags, one process)")
  group.add_argument("--coordinator", metavar="HOST:PORT",
                     help="address of process 0's coordination service")
  group.add_argument("--num-processes", type=int, metavar="N")
  group.add_argument("--process-id", type=int, metavar="I",
                     help="this process's number, 0 .. N-1")
  group.add_argument("--distributed", choices=["auto"],
                     help="auto: the cluster tells JAX the three above "
                     "(SLURM, TPU pods, ...)")
  group.add_argument("--join-timeout", type=int, default=hosts.JOIN_TIMEOUT,
                     metavar="SECONDS", help="how long to wait for every "
                     "process to join")


def start(args) -> None:
  """Joins the processes the flags name (nothing without them); a bad
  combination, no cluster to find, or a process that never joins ends the
  command. Only process 0 shows progress."""
  where = ("the cluster's coordinator (--distributed auto)"
           if args.distributed else args.coordinator)
  if args.coordinator is not None or args.distributed:
    who = ("this process" if args.process_id is None
           else f"process {args.process_id} of {args.num_processes}")
    # Said first because where the runtime ends a process itself (one
    # never joins, or process 0 is lost) nothing can be said after.
    print(f"{who}: joining at {where} (waiting up to {args.join_timeout} s "
          "for every process; if one never joins, or one is lost later, "
          "the runtime may end this process with its own report: then "
          "restart every process with the same command and --resume)",
          file=sys.stderr, flush=True)
  try:
    joined = hosts.start(args.coordinator, args.num_processes,
                         args.process_id, auto=args.distributed == "auto",
                         join_timeout=args.join_timeout)
  except InputError as error:
    raise SystemExit(command_message(error))
  except Exception as error:          # the runtime's own
    raise SystemExit(f"could not join the processes at {where}: "
                     f"{str(error).splitlines()[0][:300]}")
  if joined and not hosts.is_writer():
    args.quiet = True


def run_command(main: Callable[[], int]) -> int:
  """Runs a command's `main`. When another process of the run is lost
  (killed, its machine down), this one ends at once in one line: without
  this, the runtime's traceback is followed by a wait at shutdown for the
  lost process and an abort with the runtime's stack. What is written is
  whole (checkpoints and files are finished or not begun), so --resume
  continues. Where the runtime itself ends the process first (its error
  polling, when process 0 is lost or a heartbeat is missed while waiting)
  there is nothing left to catch."""
  try:
    return main()
  except (jax.errors.JaxRuntimeError, hosts.LostProcess) as error:
    lost = error if isinstance(error, hosts.LostProcess) else (
        hosts.lost_process(error))
    if lost is None:
      raise
    print(lost, file=sys.stderr, flush=True)
    sys.stdout.flush()
    os._exit(1)                      # skips the shutdown barrier's wait


def finish(code: int) -> NoReturn:
  """Ends a command that returned `code`: its output flushed and the
  atexit handlers run as at a normal exit (jax's own shuts its runtime
  and jax.distributed down), then `os._exit`. That skips only the
  interpreter's teardown of every module and object, about 0.8 s after a
  run (cold MUTAG command, 2 folds x 2 epochs). Every file a command
  writes is whole before it returns (atomic writes, checkpoints waited
  for), and no compile thread is left running (Session.compile waits for
  them). Under a profiler or tracer (cProfile, a debugger), which reports
  after the program ends, the normal exit is kept."""
  if being_watched():
    sys.exit(code)
  flush_output()
  atexit._run_exitfuncs()       # CPython's exit handlers, run once here
  flush_output()
  os._exit(code)


def being_watched() -> bool:
  """Whether a profiler or tracer runs in this process (sys.setprofile,
  sys.settrace, or Python 3.12's sys.monitoring profiler slot)."""
  monitoring = getattr(sys, "monitoring", None)
  return (sys.getprofile() is not None or sys.gettrace() is not None
          or (monitoring is not None
              and monitoring.get_tool(monitoring.PROFILER_ID) is not None))


def flush_output() -> None:
  """Flushes Python's stdout and stderr and the C library's buffers (a
  closed pipe, as in `... | head`, is not an error here)."""
  for stream in (sys.stdout, sys.stderr):
    try:
      stream.flush()
    except (OSError, ValueError):
      pass
  try:
    ctypes.CDLL(None).fflush(None)
  except (OSError, AttributeError, TypeError):   # no C library to ask
    pass
