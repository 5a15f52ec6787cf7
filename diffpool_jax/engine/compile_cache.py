"""JAX's persistent compilation cache, on by default for every run.

Compiled XLA programs are written to a folder and read back by any later
process that compiles the same program (same shapes, code, jax version and
compiler options), so a repeated or resumed run skips XLA compilation. The
commands turn it on with `enable`; a `Run` built from Python does the same
(`enable_by_default`) unless the process chose already. The folder is,
first found: `enable`'s argument (the commands' `--compile-cache`),
`$DIFFPOOL_JAX_COMPILE_CACHE`, JAX's own setting
(`$JAX_COMPILATION_CACHE_DIR`), else `xla/` in the data cache folder
(`$DIFFPOOL_JAX_DATA`, else `~/.cache/diffpool_jax`); the value "off"
turns the cache off. Results do not change: a cached program is the
program XLA would compile.

The same folder keeps the traced epoch programs (`traced/`, see
`compile_exported`): a warm run skips tracing and lowering too, which XLA's
cache alone does not save.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import os
import pickle
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Dict, Optional, Sequence, Tuple

import flax
import jax
import jaxlib
import optax
from jax import export

from diffpool_jax.datasets.download import default_cache_dir
from diffpool_jax.errors import InputError

CACHE_ENV = "DIFFPOOL_JAX_COMPILE_CACHE"
OFF = "off"
_traced_folder: Optional[Path] = None     # set by enable()
_chosen = False                            # whether enable() has run


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
    InputError: the folder cannot be created or written.
  """
  global _traced_folder, _chosen
  _chosen = True
  path = cache_folder(folder)
  if path is None:
    jax.config.update("jax_enable_compilation_cache", False)
    _traced_folder = None
    return None
  try:
    path.mkdir(parents=True, exist_ok=True)
  except OSError as error:
    raise InputError(f"compilation cache {path}: {error.strerror}; pass "
                     f"{{folder}}=DIR or \"off\" (or set {CACHE_ENV})",
                     "folder") from None
  if not os.access(path, os.W_OK):
    raise InputError(f"compilation cache {path} is not writable; pass "
                     f"{{folder}}=DIR or \"off\" (or set {CACHE_ENV})",
                     "folder")
  jax.config.update("jax_compilation_cache_dir", str(path))
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
  jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
  # On a GPU, XLA's matmul autotuning results are kept in the same folder,
  # so a warm run skips autotuning as well.
  jax.config.update("jax_persistent_cache_enable_xla_caches",
                    "xla_gpu_per_fusion_autotune_cache_dir")
  _traced_folder = path / "traced" if _can_serialize() else None
  return path


def leave_as_configured() -> None:
  """Marks the process as having chosen: `enable_by_default` (a `Run`)
  then leaves JAX's cache settings as they are (a test session that
  configures JAX's cache itself)."""
  global _chosen
  _chosen = True


def enable_by_default() -> Optional[Path]:
  """`enable()` with its default folder unless this process has already
  chosen (called `enable`): what `Run` does, so that runs from Python
  share the commands' cache. Opt out with $DIFFPOOL_JAX_COMPILE_CACHE=off
  or by calling `enable("off")` first. Returns the folder in force (None:
  off)."""
  if not _chosen:
    enable()
  folder = jax.config.jax_compilation_cache_dir
  return (Path(folder) if jax.config.jax_enable_compilation_cache and folder
          else None)


def _can_serialize() -> bool:
  """Whether jax.export can serialize here (it needs `flatbuffers`)."""
  try:
    import flatbuffers  # noqa: F401
  except ImportError:
    return False
  return True


def traced_folder() -> Optional[Path]:
  """Where traced programs are kept: `traced/` in the folder `enable`
  turned on, or None (cache off, or `enable` not called)."""
  return _traced_folder


@functools.lru_cache(maxsize=1)
def library_fingerprint() -> str:
  """A hash of the library's source and of what tracing depends on (jax,
  jaxlib, flax and optax versions, backend, dtype settings): any change to
  them makes every traced program stale. (The matmul precision, which a
  context may change within a process, is part of `program_key`.)"""
  digest = hashlib.sha256()
  package = Path(__file__).resolve().parent
  for path in sorted(package.rglob("*.py")):
    digest.update(str(path.relative_to(package)).encode())
    digest.update(path.read_bytes())
  digest.update(repr((jax.__version__, jaxlib.__version__, flax.__version__,
                      optax.__version__,
                      jax.default_backend(),
                      jax.config.jax_enable_x64,
                      jax.config.jax_numpy_dtype_promotion)).encode())
  return digest.hexdigest()


def program_key(name: str, static: Any, args: tuple) -> str:
  """The cache key of program `name` traced with the static values
  `static` (their repr must say everything they change, e.g. a flax
  module) for arguments shaped as `args`, at the matmul precision in
  force."""
  leaves, tree = jax.tree_util.tree_flatten(args)
  avals = [(tuple(leaf.shape), str(leaf.dtype),
            bool(getattr(jax.typeof(leaf), "weak_type", False)))
           for leaf in leaves]
  text = repr((name, static, str(tree), avals,
               jax.config.jax_default_matmul_precision,
               library_fingerprint()))
  return hashlib.sha256(text.encode()).hexdigest()[:32]


@dataclasses.dataclass(frozen=True)
class FlatProgram:
  """A compiled program over the leaves of its arguments, called with the
  arguments' pytrees; returns the original function's pytree."""
  compiled: Any                       # jax.stages.Compiled, leaves in/out
  out_tree: Any                       # PyTreeDef of the function's output

  def __call__(self, *args):
    flat = self.compiled(*jax.tree_util.tree_leaves(args))
    return jax.tree_util.tree_unflatten(self.out_tree, flat)

  def memory_analysis(self):
    return self.compiled.memory_analysis()


def _read_traced(path: Path
                 ) -> Tuple[Optional[Tuple[export.Exported, Any]], str]:
  """(exported program, output tree) kept at `path` and "", or None and
  why it cannot be used ("" when there is none): unreadable, damaged
  (its checksum no longer matches) or not deserializable here."""
  try:
    data = path.read_bytes()
  except OSError:
    return None, ""
  try:
    kept = pickle.loads(data)
    serialized = kept["exported"]
    if hashlib.sha256(serialized).hexdigest() != kept["sha256"]:
      return None, "its bytes changed since it was written"
    return (export.deserialize(serialized), kept["out_tree"]), ""
  except Exception as error:           # partial, foreign or other code
    return None, f"{type(error).__name__}: {error}".splitlines()[0]


def _write_traced(path: Path, serialized: bytes, out_tree) -> None:
  """Writes atomically (a reader never sees a partial file); a cache that
  cannot be written (disk full, folder removed) only costs the next run
  its tracing again."""
  data = pickle.dumps({"exported": serialized, "out_tree": out_tree,
                       "sha256": hashlib.sha256(serialized).hexdigest()})
  temporary = None
  try:
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    with os.fdopen(handle, "wb") as stream:
      stream.write(data)
    os.replace(temporary, path)
  except OSError:
    if temporary is not None and os.path.exists(temporary):
      os.remove(temporary)


def _trace_flat(fun: Callable, args: tuple) -> Tuple[bytes, Any]:
  """`fun(*args)` traced and exported as a function of the leaves of args;
  returns it serialized, and the output's tree."""
  leaves, in_tree = jax.tree_util.tree_flatten(args)
  out_trees = []

  def flat(*leaves):
    out, out_tree = jax.tree_util.tree_flatten(
        fun(*jax.tree_util.tree_unflatten(in_tree, leaves)))
    out_trees.append(out_tree)
    return out

  exported = export.export(jax.jit(flat))(*leaves)
  return bytes(exported.serialize()), out_trees[0]


def compile_timed(jitted: Callable, *args) -> Tuple[Any, Dict[str, float]]:
  """Ahead-of-time compilation of `jitted` for `args` (arrays or
  jax.ShapeDtypeStruct): the compiled program and the seconds of each stage
  ("trace", "lower", "compile"), with when it began and ended ("start",
  "end": time.perf_counter seconds)."""
  seconds = {}
  start = time.perf_counter()
  traced = jitted.trace(*args)
  seconds["trace"] = time.perf_counter() - start
  lowered = traced.lower()
  seconds["lower"] = time.perf_counter() - start - seconds["trace"]
  compiled = lowered.compile()
  end = time.perf_counter()
  seconds["compile"] = end - start - seconds["trace"] - seconds["lower"]
  seconds.update(start=start, end=end)
  return compiled, seconds


def compile_exported(fun: Callable, args: tuple, key: str,
                     donate_argnums: Sequence[int] = (),
                     compiler_options: Optional[dict] = None
                     ) -> Tuple[FlatProgram, Dict[str, float]]:
  """Compiles `fun` for `args`, reading its traced program from
  `traced_folder()/key` when a run already traced it (tracing and lowering
  skipped) and writing it otherwise; XLA's cache then serves the compiled
  program. Cold and warm runs compile the same module, so their results
  are identical. Returns the program and the seconds of each stage
  ("trace": tracing and exporting, or reading the traced program;
  "lower"; "compile"; "start" and "end" as in `compile_timed`).
  """
  start = time.perf_counter()
  path = traced_folder() / f"{key}.exported"
  kept, problem = _read_traced(path)
  if kept is not None:
    try:
      return _compile_flat(kept, args, donate_argnums, compiler_options,
                           time.perf_counter() - start)
    except Exception as error:         # e.g. StableHLO it cannot read
      problem = f"{type(error).__name__}: {error}".splitlines()[0]
  if problem:
    warnings.warn(f"kept traced program {path} cannot be used ({problem}); "
                  "tracing it again", RuntimeWarning, stacklevel=2)
  serialized, out_tree = _trace_flat(fun, args)
  _write_traced(path, serialized, out_tree)
  # compile the deserialized module, as a warm run will: same results
  return _compile_flat((export.deserialize(serialized), out_tree), args,
                       donate_argnums, compiler_options,
                       time.perf_counter() - start)


def _compile_flat(kept: Tuple[export.Exported, Any], args: tuple,
                  donate_argnums: Sequence[int],
                  compiler_options: Optional[dict], traced_seconds: float
                  ) -> Tuple[FlatProgram, Dict[str, float]]:
  """The exported program compiled for the leaves of `args` (the donated
  arguments' leaves donated), and the seconds of each stage."""
  exported, out_tree = kept
  positions, offset = [], 0           # the donated arguments' leaves
  for i, arg in enumerate(args):
    count = len(jax.tree_util.tree_leaves(arg))
    if i in donate_argnums:
      positions.extend(range(offset, offset + count))
    offset += count
  jitted = jax.jit(exported.call, donate_argnums=tuple(positions),
                   compiler_options=compiler_options)
  compiled, seconds = compile_timed(jitted, *jax.tree_util.tree_leaves(args))
  seconds["trace"] += traced_seconds
  seconds["start"] -= traced_seconds
  return FlatProgram(compiled, out_tree), seconds
