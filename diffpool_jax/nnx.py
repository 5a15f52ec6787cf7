"""The models as Flax NNX modules, derived from their one (linen)
definition through `flax.nnx.bridge.ToNNX`.

Each NNX module here wraps the linen module of the same computation
(diffpool_jax.models) and creates its variables at construction from a
small sample input, so the parameters and batch statistics have the linen
names and paths (`embed0/conv0/lin_rel/kernel`, ...): `nnx.state(model)`
is the linen variables' tree, and `load_linen_variables` copies a linen
model's variables in. A new convolution registered with `register_conv`
is an NNX module too (`Conv(name, ...)`). NNX modules know their input
widths at construction, hold their state (a call with `train=True`
updates the batch statistics in place) and take a PRNG `key` for dropout::

  model = nnx.DiffPool(preset("paper"), in_features=F, num_classes=C,
                       max_nodes=N, rngs=flax.nnx.Rngs(0))
  logits, levels = model(x, adj, node_mask, train=True)
"""

from __future__ import annotations

import functools
import warnings
from typing import Mapping, Optional, Sequence, Tuple

import jax
import jax.numpy as jnp
from flax import nnx
from flax.nnx import bridge

from diffpool_jax.adjacency import EdgeList
from diffpool_jax.models import classifier, layers
from diffpool_jax.models.classifier import DiffPoolConfig, PoolLevel
from diffpool_jax.models.presets import check_cluster_counts


def sample_batch(in_features: int, nodes: int, edge_columns: int = 0):
  """A one-graph batch of zeros to create variables with: x [1, nodes,
  in_features], a dense adjacency (or, with `edge_columns`, an EdgeList
  whose entries carry that many feature columns) and node_mask [1, nodes]."""
  x = jnp.zeros((1, nodes, in_features))
  node_mask = jnp.ones((1, nodes), bool)
  if not edge_columns:
    return x, jnp.zeros((1, nodes, nodes)), node_mask
  index = jnp.zeros((1, 1), jnp.int32)
  adj = EdgeList(index, index, jnp.zeros((1, 1)), nodes,
                 jnp.zeros((1, 1, edge_columns), jnp.int32))
  return x, adj, node_mask


class LinenModule(bridge.ToNNX):
  """An NNX module whose computation is a linen module's: its variables
  are created at construction by running `module` on `sample` (positional
  inputs) with `sample_options` (keywords), and are the NNX attributes
  named as the linen variables."""

  def __init__(self, module, rngs: Optional[nnx.Rngs], *sample,
               **sample_options):
    super().__init__(module)
    bridge.lazy_init(super().__call__, *sample,
                     rngs=rngs if rngs is not None else nnx.Rngs(0),
                     **sample_options)

  def run(self, *args, update_stats: bool = False, key=None, **options):
    """The linen module applied to `args` and `options`; `update_stats`
    makes the batch statistics mutable (updated in place), `key` feeds
    dropout and a stochastic pooling operator (`rng_streams`)."""
    return super().__call__(
        *args,
        rngs=nnx.Rngs(**classifier.rng_streams(key)) if key is not None
        else None,
        mutable=["batch_stats"] if update_stats else False, **options)


class Conv(LinenModule):
  """The registered convolution `conv` (`layers.CONVOLUTIONS`: "sage",
  "gcn", "sum", "gin", "gine", "gatv2" or one of yours) as an NNX module:
  x [B,N,in_features], adj, node_mask -> [B,N,features]. `edge_features`:
  the width of the entry features a first-level EdgeList carries, for a
  convolution that reads them."""

  def __init__(self, conv: str, in_features: int, features: int,
               rngs: nnx.Rngs, mask_output: bool = True,
               edge_features: int = 0):
    super().__init__(layers.make_conv(conv, features, None, mask_output),
                     rngs, *sample_batch(in_features, 2, edge_features))

  def __call__(self, x, adj, node_mask):
    return self.run(x, adj, node_mask)


class MaskedBatchNorm(LinenModule):
  """Batch norm over real nodes (`layers.MaskedBatchNorm`): running `mean`
  and `var` are batch statistics, updated when called with train."""

  def __init__(self, features: int, affine: bool = True,
               momentum: float = 0.9, epsilon: float = 1e-5,
               rngs: Optional[nnx.Rngs] = None):
    super().__init__(layers.MaskedBatchNorm(momentum, epsilon, affine),
                     rngs, jnp.zeros((1, 1, features)),
                     jnp.ones((1, 1), bool), False)

  def __call__(self, x, node_mask, train: bool):
    return self.run(x, node_mask, train, update_stats=train)


class GNNStack(LinenModule):
  """Convolutions with dropout, L2 normalisation, ReLU and masked batch
  norm (`layers.GNNStack`); `edge_features` as for `Conv`."""

  def __init__(self, conv: str, in_features: int, widths: Sequence[int],
               rngs: nnx.Rngs, l2_normalize: bool = False,
               batch_norm: bool = True, bn_affine: bool = True,
               concat: bool = True, activate_last: bool = False,
               dropout: float = 0.0, edge_features: int = 0):
    super().__init__(layers.GNNStack(conv, tuple(widths), l2_normalize,
                                     batch_norm, bn_affine, concat,
                                     activate_last, dropout),
                     rngs, *sample_batch(in_features, 2, edge_features),
                     False)

  def __call__(self, x, adj, node_mask, train: bool, rate=None,
               key: Optional[jax.Array] = None):
    return self.run(x, adj, node_mask, train, rate, update_stats=train,
                    key=key)


class DiffPool(LinenModule):
  """The hierarchical classifier (`diffpool_jax.DiffPool`) as an NNX
  module: the same variables (`embed{l}`, `assign{l}`, `assign_head{l}`,
  `mlp{i}`, ...), built for inputs of `in_features` columns (integer code
  columns with `config.input_vocab`)."""

  def __init__(self, config: DiffPoolConfig, in_features: int,
               num_classes: int, max_nodes: int, rngs: nnx.Rngs):
    check_cluster_counts(config, max_nodes, "nnx.DiffPool")
    edge_columns = len(config.edge_vocab) if config.reads_edge_features else 0
    if config.reads_edge_features and not edge_columns:
      raise ValueError(f"nnx.DiffPool: conv={config.conv!r} reads edge "
                       "features; give config.edge_vocab (one vocabulary "
                       "size per edge code column)")
    super().__init__(
        classifier.DiffPool(config, num_classes, max_nodes), rngs,
        *sample_batch(in_features, max(1, min(max_nodes, 8)), edge_columns))

  @property
  def config(self) -> DiffPoolConfig:
    return self.to_nnx__module.config

  @property
  def max_nodes(self) -> int:
    return self.to_nnx__module.max_nodes

  def __call__(self, x, adj, node_mask=None, *, train: bool = False,
               dropout=None, key: Optional[jax.Array] = None
               ) -> Tuple[jax.Array, Tuple[PoolLevel, ...]]:
    """logits [B, C] and one PoolLevel per level for x [B,N,F], adj
    [B,N,N] or EdgeList, node_mask [B,N] (see `diffpool_jax.DiffPool`);
    `key` feeds dropout when training with config.dropout or
    config.mlp_dropout > 0, and a stochastic pooling operator's draws."""
    c = self.config
    if train and key is None and max(c.dropout, c.mlp_dropout) > 0:
      raise ValueError("nnx.DiffPool: training with dropout (config.dropout "
                       "or mlp_dropout > 0) needs a PRNG `key`")
    if train and key is None and c.operator.stochastic:
      raise ValueError(f"nnx.DiffPool: training with pooling="
                       f"{c.pooling!r}, which samples its assignment, needs "
                       "a PRNG `key`")
    return self.run(x, adj, node_mask, train=train, dropout=dropout,
                    update_stats=train, key=key)


def load_linen_variables(model: nnx.Module,
                         variables: Mapping[str, Mapping]) -> None:
  """Copies a linen model's {"params": ..., "batch_stats": ...} into the
  NNX module of the same configuration (same names), in place."""
  def copy(node, tree, path):
    for name, value in tree.items():
      target = node[name] if isinstance(node, Mapping) else getattr(node, name)
      if isinstance(value, Mapping):
        copy(target, value, path + (name,))
      elif target.shape != jnp.shape(value):
        raise ValueError(f"load_linen_variables: {'/'.join(path + (name,))} "
                         f"has shape {jnp.shape(value)}, the model "
                         f"{target.shape}")
      else:
        target[...] = jnp.asarray(value)
  for collection in ("params", "batch_stats"):
    copy(model, variables.get(collection, {}), ())


# The NNX classes of 0.1, one per convolution (now `Conv(name, ...)`).
CONV_CLASSES = {"SAGEConv": "sage", "GCNConv": "gcn", "SumConv": "sum",
                "GINConv": "gin", "GINEConv": "gine"}


def __getattr__(name: str):
  """`nnx.SAGEConv` etc. of 0.1: `Conv` of that name, with a warning."""
  if name in CONV_CLASSES:
    warnings.warn(f"diffpool_jax.nnx.{name} is now "
                  f"nnx.Conv({CONV_CLASSES[name]!r}, ...); the old name goes "
                  "in the next release", DeprecationWarning, stacklevel=2)
    return functools.partial(Conv, CONV_CLASSES[name])
  raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
