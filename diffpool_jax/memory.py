"""Memory of compiled training programs: XLA's estimate, what the machine
has, and how many members fit side by side (host side, plain Python)."""

from __future__ import annotations

import os
from typing import Optional

GIB = 2**30
# Share of the memory available at the start that a run may plan for with
# XLA's estimate. Peak RSS runs above the estimate (the runtime, compiled
# programs, host copies of the data): D&D, 10 members in one program, peaked
# at 19.7 GiB with 0.8 of 23 GiB planned; 0.6 splits it into programs.
DEFAULT_SHARE = 0.6


def available_bytes() -> int:
  """Memory available to a new allocation now (Linux MemAvailable; else
  the physical memory)."""
  try:
    with open("/proc/meminfo") as meminfo:
      for line in meminfo:
        if line.startswith("MemAvailable:"):
          return int(line.split()[1]) * 1024
  except OSError:
    pass
  return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def budget_bytes(memory_gib: Optional[float] = None) -> int:
  """The bytes a run may plan for: `memory_gib`, or DEFAULT_SHARE of what
  is available now."""
  if memory_gib is not None:
    return int(memory_gib * GIB)
  return int(DEFAULT_SHARE * available_bytes())


def program_bytes(compiled) -> int:
  """XLA's estimate of a compiled program's memory: arguments, outputs and
  temporaries, less the outputs that reuse donated arguments."""
  stats = compiled.memory_analysis()
  return int(stats.argument_size_in_bytes + stats.output_size_in_bytes
             + stats.temp_size_in_bytes - stats.alias_size_in_bytes)


def members_that_fit(num_members: int, program_total: int, shared: int,
                     budget: int) -> int:
  """The most members (a divisor of `num_members`) one program may hold.

  Args:
    num_members: members the program was compiled for.
    program_total: its estimated bytes (`program_bytes`).
    shared: bytes that do not grow with the members (the data set).
    budget: bytes available.

  Returns:
    The largest divisor d of num_members with
    shared + d * (program_total - shared) / num_members <= budget,
    or 0 when not even one member fits.
  """
  per_member = max(program_total - shared, 0) / num_members
  for count in range(num_members, 0, -1):
    if num_members % count == 0 and shared + count * per_member <= budget:
      return count
  return 0
