"""diffpool_jax: hierarchical graph pooling (DiffPool, Ying et al. 2018) in JAX/Flax.

The rooms: `models` (layers, convolutions, the classifier, presets and the
pooling operators), `datasets` (readers, features, splits, buckets),
`engine` (host pipeline and device programs), `run` (configuration, run
folder, epoch loop), `cli` (the commands). Beside them the shared
vocabulary: graphs, adjacency, tasks, errors, protocols, plots, and the
NNX face of the models (`diffpool_jax.nnx`).
"""

import importlib
import importlib.abc
import importlib.util
import sys
import warnings

from diffpool_jax.adjacency import EdgeList
from diffpool_jax.datasets.loader import batches
from diffpool_jax.graphs import (GraphBatch, dense_batch, from_graphs_tuple,
                                 sparse_batch, to_graphs_tuple)
from diffpool_jax.models.classifier import (DiffPool, DiffPoolConfig,
                                            PoolLevel, auxiliary_loss,
                                            count_params, level_losses,
                                            masked_readout, rng_streams)
from diffpool_jax.models.gatv2 import DenseGATv2Conv
from diffpool_jax.models.layers import (CONVOLUTIONS, DenseGCNConv,
                                        DenseGINConv, DenseGINEConv,
                                        DenseSAGEConv, DenseSumConv, GNNStack,
                                        MaskedBatchNorm, register_conv)
from diffpool_jax.models.pooling import (POOLING, DiffPoolResult, PoolOutput,
                                         dense_diff_pool, dense_dmon_pool,
                                         dense_mincut_pool, register_pooling)
from diffpool_jax.models.presets import PRESETS, preset, register_preset

__version__ = "0.2.0"

__all__ = [
    "EdgeList", "batches", "GraphBatch", "dense_batch", "from_graphs_tuple",
    "sparse_batch", "to_graphs_tuple", "CONVOLUTIONS", "DenseGATv2Conv",
    "DenseGCNConv", "DenseGINConv", "DenseGINEConv", "DenseSAGEConv",
    "DenseSumConv",
    "register_conv", "GNNStack", "MaskedBatchNorm", "PRESETS", "DiffPool",
    "DiffPoolConfig", "PoolLevel", "auxiliary_loss", "count_params",
    "level_losses", "masked_readout", "rng_streams", "preset", "register_preset", "POOLING",
    "DiffPoolResult", "PoolOutput", "dense_diff_pool", "dense_mincut_pool",
    "dense_dmon_pool", "register_pooling",
]

# Modules moved in 0.2 (CHANGELOG.md): the old path imports the new module
# with a DeprecationWarning naming it, until the release after.
MOVED = {
    "checks": "errors",
    "layers": "models.layers",
    "model": "models.classifier",
    "presets": "models.presets",
    "pooling": "models.pooling",
    "training": "engine.trainer",
    "pipeline": "engine.pipeline",
    "compile_cache": "engine.compile_cache",
    "compile_effort": "engine.compile_effort",
    "memory": "engine.memory",
    "hosts": "engine.hosts",
    "hyper": "engine.hyper",
    "evaluation": "run.assignments",
    "experiment": "run",
}


def moved_to(name: str):
  """The new module path of old module `name` (or a submodule of one), or
  None when `name` did not move."""
  head, _, rest = name.removeprefix(__name__ + ".").partition(".")
  if not name.startswith(__name__ + ".") or head not in MOVED:
    return None
  return ".".join([__name__, MOVED[head]] + ([rest] if rest else []))


class MovedModules(importlib.abc.MetaPathFinder, importlib.abc.Loader):
  """Imports an old module path as its new module, with a warning."""

  def find_spec(self, name, path=None, target=None):
    return (importlib.util.spec_from_loader(name, self)
            if moved_to(name) else None)

  def create_module(self, spec):
    new = moved_to(spec.name)
    warn_moved(spec.name, new, stacklevel=2)
    module = importlib.import_module(new)
    spec.loader_state = module.__spec__   # the import system replaces it
    return module

  def exec_module(self, module):
    """Nothing to run (the new module is imported already); gives the
    module back its own spec."""
    module.__spec__ = module.__spec__.loader_state


def warn_moved(old: str, new: str, stacklevel: int) -> None:
  """The DeprecationWarning of an old module path."""
  warnings.warn(f"{old} has moved to {new}; import it from there (the old "
                "path goes in the next release)", DeprecationWarning,
                stacklevel=stacklevel + 1)


def __getattr__(name: str):
  """`diffpool_jax.OLD` (and `from diffpool_jax import OLD`) for a moved
  module: the new module, with the warning at the caller's line."""
  if name not in MOVED:
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
  old, new = f"{__name__}.{name}", f"{__name__}.{MOVED[name]}"
  warn_moved(old, new, stacklevel=2)
  module = importlib.import_module(new)
  sys.modules.setdefault(old, module)
  globals()[name] = module              # warned once
  return module


# First, so that a submodule of a moved package (diffpool_jax.pooling.mincut)
# is the new module, not a second copy found on the package's path.
if not any(isinstance(f, MovedModules) for f in sys.meta_path):
  sys.meta_path.insert(0, MovedModules())
