"""Memory of compiled training programs: XLA's estimate, what the device
has (an accelerator's own memory, or the host's on the CPU), and how many
members fit side by side (host side, plain Python)."""

from __future__ import annotations

import ctypes
import os
from typing import NamedTuple, Optional

GIB = 2**30
# Share of the host memory available at the start that a run may plan for
# with XLA's estimate (CPU). Peak RSS runs above the estimate (the runtime,
# compiled programs, host copies of the data): D&D, 10 members in one
# program, peaked at 19.7 GiB with 0.8 of 23 GiB planned; 0.6 splits it
# into programs.
DEFAULT_SHARE = 0.6
# Share of an accelerator's memory (the most JAX's allocator may hold, its
# `bytes_limit`) that a run may plan for. On a GPU or TPU the estimate is
# the device memory the program allocates; the rest is left for the
# allocator's fragmentation and the evaluation program's temporaries.
DEVICE_SHARE = 0.8


class Budget(NamedTuple):
  """The bytes a run may plan for, and where the figure comes from."""
  bytes: int
  source: str        # e.g. "60 % of the host's 22.1 GiB available (cpu)"


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


def device_limit_bytes(device) -> Optional[int]:
  """The memory JAX's allocator may hold on `device` (its memory
  statistics' `bytes_limit`), or None where the backend keeps none (the
  CPU: programs use the host's memory)."""
  stats = device.memory_stats() if hasattr(device, "memory_stats") else None
  if not stats or not stats.get("bytes_limit"):
    return None
  return int(stats["bytes_limit"])


def budget(memory_gib: Optional[float] = None, device=None) -> Budget:
  """What a run may plan for on `device` (default: the first JAX device).

  Args:
    memory_gib: a fixed budget in GiB; None: DEVICE_SHARE of the device's
      memory on a GPU or TPU, DEFAULT_SHARE of the host memory available
      now on the CPU.
    device: a jax.Device (anything with `memory_stats()` and `platform`).
  """
  if device is None:
    import jax                          # host-side module: import on use
    device = jax.local_devices()[0]
  name = getattr(device, "device_kind", None) or device.platform
  if memory_gib is not None:
    return Budget(int(memory_gib * GIB),
                  f"memory_gib={memory_gib:g} as configured ({name})")
  limit = device_limit_bytes(device)
  if limit is None:
    available = available_bytes()
    return Budget(int(DEFAULT_SHARE * available),
                  f"{DEFAULT_SHARE:.0%} of the host's "
                  f"{available / GIB:.1f} GiB available ({name})")
  return Budget(int(DEVICE_SHARE * limit),
                f"{DEVICE_SHARE:.0%} of the {limit / GIB:.1f} GiB of device "
                f"memory JAX may use on {device.platform}:{device.id} "
                f"({name})")


def budget_bytes(memory_gib: Optional[float] = None) -> int:
  """The bytes of `budget(memory_gib)` on the first JAX device."""
  return budget(memory_gib).bytes


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


def release_freed_host_memory() -> bool:
  """Returns memory the C allocator holds freed to the operating system
  (glibc's `malloc_trim`; elsewhere nothing happens). XLA's compiler frees
  most of what it allocates when a program is built, but glibc keeps it
  in the compiling thread's arena, where the training that follows does
  not reuse it. Returns whether anything was released."""
  try:
    libc = ctypes.CDLL("libc.so.6")
    return bool(libc.malloc_trim(0))
  except (OSError, AttributeError):
    return False
