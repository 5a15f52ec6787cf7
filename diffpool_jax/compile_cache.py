"""JAX's persistent compilation cache, on by default for command-line runs.

Compiled XLA programs are written to a folder and read back by any later
process that compiles the same program (same shapes, code, jax version and
compiler options), so a repeated or resumed run skips XLA compilation. The
folder is, first found: the command's `--compile-cache`,
`$DIFFPOOL_JAX_COMPILE_CACHE`, JAX's own setting
(`$JAX_COMPILATION_CACHE_DIR`), else `xla/` in the data cache folder
(`$DIFFPOOL_JAX_DATA`, else `~/.cache/diffpool_jax`); the value "off"
turns the cache off. Results do not change: a cached program is the
program XLA would compile.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import jax

from diffpool_jax.datasets.download import default_cache_dir

CACHE_ENV = "DIFFPOOL_JAX_COMPILE_CACHE"
OFF = "off"


def cache_folder(folder: Optional[str] = None) -> Optional[Path]:
  """The cache folder: `folder`, else $DIFFPOOL_JAX_COMPILE_CACHE, else
  JAX's configured folder, else the default; None when the chosen value is
  "off"."""
  choice = folder if folder is not None else os.environ.get(CACHE_ENV)
  if choice is None:
    configured = jax.config.jax_compilation_cache_dir
    return (Path(configured) if configured
            else default_cache_dir() / "xla")
  if choice.strip().lower() == OFF:
    return None
  return Path(choice).expanduser()


def enable(folder: Optional[str] = None) -> Optional[Path]:
  """Turns the persistent compilation cache on (see `cache_folder`) for
  every program this process compiles from now on, however quickly it
  compiles; returns the folder, or None when it is off.

  Raises:
    ValueError: the folder cannot be created or written.
  """
  path = cache_folder(folder)
  if path is None:
    jax.config.update("jax_enable_compilation_cache", False)
    return None
  try:
    path.mkdir(parents=True, exist_ok=True)
  except OSError as error:
    raise ValueError(f"compilation cache {path}: {error.strerror}; pass "
                     f"--compile-cache DIR or off (or set {CACHE_ENV})"
                     ) from None
  if not os.access(path, os.W_OK):
    raise ValueError(f"compilation cache {path} is not writable; pass "
                     f"--compile-cache DIR or off (or set {CACHE_ENV})")
  jax.config.update("jax_compilation_cache_dir", str(path))
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
  jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
  return path
