"""The GNN layers and the hierarchical classifier as Flax NNX modules.

The same computation as the linen modules (layers.py, model.py), on the
same pure pooling functions (diffpool_jax.pooling), with parameters and
batch statistics named as the linen ones: `load_linen_variables` copies a
linen model's variables into an NNX model and both give the same logits.
NNX modules know their input widths at construction (no shape inference),
hold their state, and are called with `train` and, for dropout, a PRNG
`key` given explicitly::

  model = nnx.DiffPool(preset("paper"), in_features=F, num_classes=C,
                       max_nodes=N, rngs=flax.nnx.Rngs(0))
  logits, levels = model(x, adj, node_mask, train=True)
"""

from __future__ import annotations

from typing import Mapping, Optional, Sequence, Tuple

import jax
import jax.numpy as jnp
from flax import nnx

from diffpool_jax.adjacency import diagonal, matmul, row_sums
from diffpool_jax.layers import (batch_moments, dropout as drop,
                                 embed_codes, gin_aggregate, gine_aggregate,
                                 l2_normalize, mask_nodes, normalize,
                                 sage_mean)
from diffpool_jax.model import (DiffPoolConfig, PoolLevel, check_code_columns,
                                checked_edge_codes, checked_node_mask,
                                clear_padding, cluster_slots,
                                graph_representation, input_readout,
                                masked_readout, pool_level)
from diffpool_jax.presets import check_cluster_counts

LECUN = jax.nn.initializers.lecun_normal()
XAVIER_RELU = jax.nn.initializers.variance_scaling(2.0, "fan_avg", "uniform")


class Dense(nnx.Module):
  """kernel [F, H] and bias [H] (as linen's nn.Dense); `weights()` returns
  them unapplied, so a layer can fuse several maps into one matmul."""

  def __init__(self, in_features: int, features: int, rngs: nnx.Rngs,
               use_bias: bool = True, kernel_init=LECUN):
    self.kernel = nnx.Param(kernel_init(rngs.params(),
                                        (in_features, features)))
    self.bias = nnx.Param(jnp.zeros((features,))) if use_bias else None

  def __call__(self, x: jax.Array) -> jax.Array:
    out = x @ self.kernel[...]
    return out if self.bias is None else out + self.bias[...]


class SAGEConv(nnx.Module):
  """GraphSAGE-mean (see layers.DenseSAGEConv): x [B,N,F] -> [B,N,H]."""

  def __init__(self, in_features: int, features: int, rngs: nnx.Rngs,
               mask_output: bool = True):
    self.features, self.mask_output = features, mask_output
    self.lin_rel = Dense(in_features, features, rngs, use_bias=False)
    self.lin_root = Dense(in_features, features, rngs)

  def __call__(self, x, adj, node_mask):
    out = sage_mean(x, adj, self.lin_rel.kernel[...], self.lin_root.kernel[...])
    return mask_nodes(out + self.lin_root.bias[...], node_mask,
                      self.mask_output)


class GCNConv(nnx.Module):
  """GCN with self-loops of weight 1 (see layers.DenseGCNConv)."""

  def __init__(self, in_features: int, features: int, rngs: nnx.Rngs,
               mask_output: bool = True):
    self.mask_output = mask_output
    self.linear = Dense(in_features, features, rngs, use_bias=False)
    self.bias = nnx.Param(jnp.zeros((features,)))

  def __call__(self, x, adj, node_mask):
    loops = diagonal(adj)
    inv_sqrt = jax.lax.rsqrt(row_sums(adj) - loops + 1.0)
    h = self.linear(x) * inv_sqrt
    out = (matmul(adj, h) + (1.0 - loops) * h) * inv_sqrt + self.bias[...]
    return mask_nodes(out, node_mask, self.mask_output)


class SumConv(nnx.Module):
  """The authors' GraphConv A X W + b (see layers.DenseSumConv)."""

  def __init__(self, in_features: int, features: int, rngs: nnx.Rngs,
               mask_output: bool = True):
    self.features, self.mask_output = features, mask_output
    self.linear = Dense(in_features, features, rngs, use_bias=False,
                        kernel_init=XAVIER_RELU)
    self.bias = nnx.Param(jnp.zeros((features,)))

  def __call__(self, x, adj, node_mask):
    if x.shape[-1] > self.features:
      out = matmul(adj, self.linear(x))
    else:
      out = self.linear(matmul(adj, x))
    return mask_nodes(out + self.bias[...], node_mask, self.mask_output)


class GINConv(nnx.Module):
  """GIN, MLP((1 + eps) x_i + sum_j A_ij x_j) (see layers.DenseGINConv)."""

  def __init__(self, in_features: int, features: int, rngs: nnx.Rngs,
               mask_output: bool = True):
    self.mask_output = mask_output
    self.eps = nnx.Param(jnp.zeros(()))
    self.mlp0 = Dense(in_features, features, rngs)
    self.mlp1 = Dense(features, features, rngs)

  def __call__(self, x, adj, node_mask):
    h = jax.nn.relu(self.mlp0(gin_aggregate(x, adj, self.eps[...])))
    return mask_nodes(self.mlp1(h), node_mask, self.mask_output)


class GINEConv(nnx.Module):
  """GINE, MLP((1 + eps) x_i + sum_j A_ij relu(x_j + W e_ij)) (see
  layers.DenseGINEConv); `edge_features` > 0: the width of the entry
  features its adjacency carries (the first level), 0: GIN (pooled
  levels)."""

  def __init__(self, in_features: int, features: int, rngs: nnx.Rngs,
               mask_output: bool = True, edge_features: int = 0):
    self.mask_output = mask_output
    self.eps = nnx.Param(jnp.zeros(()))
    self.edge = (Dense(edge_features, in_features, rngs) if edge_features
                 else None)
    self.mlp0 = Dense(in_features, features, rngs)
    self.mlp1 = Dense(features, features, rngs)

  def __call__(self, x, adj, node_mask):
    if self.edge is None:
      h = gin_aggregate(x, adj, self.eps[...])
    else:
      h = gine_aggregate(x, adj, self.eps[...], self.edge)
    h = jax.nn.relu(self.mlp0(h))
    return mask_nodes(self.mlp1(h), node_mask, self.mask_output)


CONVS = {"sage": SAGEConv, "gcn": GCNConv, "sum": SumConv, "gin": GINConv,
         "gine": GINEConv}


class CodeEmbedding(nnx.Module):
  """Integer feature columns -> summed embeddings `table{c}` (see
  layers.CodeEmbedding)."""

  def __init__(self, vocab: Sequence[int], features: int, rngs: nnx.Rngs):
    self.columns = len(vocab)
    init = jax.nn.initializers.xavier_uniform()
    for c, size in enumerate(vocab):
      setattr(self, f"table{c}", nnx.Param(init(rngs.params(),
                                                (int(size), features))))

  def __call__(self, codes: jax.Array, node_mask: jax.Array) -> jax.Array:
    return embed_codes([getattr(self, f"table{c}")[...]
                        for c in range(self.columns)], codes, node_mask)


class MaskedBatchNorm(nnx.Module):
  """Batch norm over real nodes (see layers.MaskedBatchNorm): running
  `mean` and `var` are nnx.BatchStat, updated when called with train."""

  def __init__(self, features: int, affine: bool = True,
               momentum: float = 0.9, epsilon: float = 1e-5):
    self.momentum, self.epsilon = momentum, epsilon
    self.mean = nnx.BatchStat(jnp.zeros((features,)))
    self.var = nnx.BatchStat(jnp.ones((features,)))
    self.scale = nnx.Param(jnp.ones((features,))) if affine else None
    self.bias = nnx.Param(jnp.zeros((features,))) if affine else None

  def __call__(self, x, node_mask, train: bool):
    real = node_mask[..., None]
    if train:
      mean, var, count, unbiased = batch_moments(x, real)
      keep, has_nodes = self.momentum, count > 0
      self.mean[...] = jnp.where(has_nodes, keep * self.mean[...]
                                 + (1 - keep) * mean, self.mean[...])
      self.var[...] = jnp.where(has_nodes, keep * self.var[...]
                                + (1 - keep) * unbiased, self.var[...])
    else:
      mean, var = self.mean[...], self.var[...]
    if self.scale is None:
      return normalize(x, real, mean, var, self.epsilon)
    return normalize(x, real, mean, var, self.epsilon, self.scale[...],
                     self.bias[...])


class GNNStack(nnx.Module):
  """Dense convolutions with dropout, L2 normalisation, ReLU and masked
  batch norm (see layers.GNNStack); layers are attributes conv0, bn0, ..."""

  def __init__(self, conv: str, in_features: int, widths: Sequence[int],
               rngs: nnx.Rngs, l2_normalize: bool = False,
               batch_norm: bool = True, bn_affine: bool = True,
               concat: bool = True, activate_last: bool = False,
               dropout: float = 0.0, edge_features: int = 0):
    self.widths, self.l2, self.concat = tuple(widths), l2_normalize, concat
    edges = {"edge_features": edge_features} if edge_features else {}
    self.activate_last, self.dropout = activate_last, dropout
    self.batch_norm = batch_norm
    for i, width in enumerate(self.widths):
      activated = i < len(self.widths) - 1 or activate_last
      setattr(self, f"conv{i}", CONVS[conv](
          in_features, width, rngs,
          mask_output=not (activated and batch_norm), **edges))
      if activated and batch_norm:
        setattr(self, f"bn{i}", MaskedBatchNorm(width, bn_affine))
      in_features = width
    self.out_features = sum(self.widths) if concat else self.widths[-1]

  def __call__(self, x, adj, node_mask, train: bool, rate=None,
               key: Optional[jax.Array] = None):
    outputs = []
    for i in range(len(self.widths)):
      if self.dropout > 0 and train:
        key, layer_key = jax.random.split(key)
        x = drop(x, self.dropout if rate is None else rate, layer_key)
      x = getattr(self, f"conv{i}")(x, adj, node_mask)
      if self.l2:
        x = l2_normalize(x)
      if i < len(self.widths) - 1 or self.activate_last:
        x = jax.nn.relu(x)
        if self.batch_norm:
          x = getattr(self, f"bn{i}")(x, node_mask, train)
      outputs.append(x)
    return jnp.concatenate(outputs, axis=-1) if self.concat else x


class DiffPool(nnx.Module):
  """The hierarchical classifier (see model.DiffPool) as an NNX module:
  per level an embedding GNN `embed{l}`, an assignment GNN `assign{l}`
  and/or head `assign_head{l}`, then the pooling operator; a last
  embedding GNN and the MLP `mlp{i}`."""

  def __init__(self, config: DiffPoolConfig, in_features: int,
               num_classes: int, max_nodes: int, rngs: nnx.Rngs):
    check_cluster_counts(config, max_nodes, "nnx.DiffPool")
    self.config, self.max_nodes = config, max_nodes
    c = config
    hidden = (c.hidden_dim,) * (c.num_layers - 1)
    if c.input_vocab:
      self.input_embed = CodeEmbedding(c.input_vocab, c.hidden_dim, rngs)
      in_features = c.hidden_dim
    input_width = in_features if c.input_readout != "none" else 0
    if c.input_norm:
      self.input_bn = MaskedBatchNorm(in_features, c.bn_affine)
    if c.input_readout != "none":
      self.input_readout_bn = MaskedBatchNorm(in_features, c.bn_affine)
    readout_widths = []
    if c.conv == "gine":
      self.edge_embed = CodeEmbedding(c.edge_vocab, c.hidden_dim, rngs)
    for level, width in enumerate(c.cluster_counts(max_nodes)):
      embed = self.gnn(in_features, hidden + (c.embed_dim,), c.concat, rngs,
                       level)
      setattr(self, f"embed{level}", embed)
      head_input = embed.out_features
      if c.assign_from != "embedding":
        assign = self.gnn(in_features, hidden + (width,),
                          c.concat and c.assign_head != "none", rngs, level)
        setattr(self, f"assign{level}", assign)
        head_input = assign.out_features
      if c.assign_head != "none":
        setattr(self, f"assign_head{level}", Dense(head_input, width, rngs))
      readout_widths.append(embed.out_features)
      in_features = embed.out_features
    last = self.gnn(in_features, hidden + (c.embed_dim,), c.concat, rngs,
                    c.num_levels)
    setattr(self, f"embed{c.num_levels}", last)
    readout_widths.append(last.out_features)
    width = input_width + (sum(readout_widths) if c.readout_all_levels
                           else readout_widths[-1])
    for i, out in enumerate(c.mlp_hidden + (num_classes,)):
      setattr(self, f"mlp{i}", Dense(width, out, rngs))
      width = out

  def gnn(self, in_features, widths, concat, rngs, level) -> GNNStack:
    """A GNN of pooling level `level` (with "gine", level 0 reads the
    first level's embedded edge features)."""
    c = self.config
    edges = c.hidden_dim if c.conv == "gine" and level == 0 else 0
    return GNNStack(c.conv, in_features, widths, rngs, c.l2_normalize,
                    c.batch_norm, c.bn_affine, concat, c.activate_last,
                    c.dropout, edges)

  def __call__(self, x, adj, node_mask=None, *, train: bool = False,
               dropout=None, key: Optional[jax.Array] = None
               ) -> Tuple[jax.Array, Tuple[PoolLevel, ...]]:
    """logits [B, C] and one PoolLevel per level for x [B,N,F], adj
    [B,N,N] or EdgeList, node_mask [B,N] (see model.DiffPool.__call__);
    `key` feeds dropout when training with config.dropout or
    config.mlp_dropout > 0."""
    c = self.config
    if train and key is None and max(c.dropout, c.mlp_dropout) > 0:
      raise ValueError("nnx.DiffPool: training with dropout (config.dropout "
                       "or mlp_dropout > 0) needs a PRNG `key`")
    node_mask = checked_node_mask(x, adj, node_mask, "nnx.DiffPool")
    x, adj = clear_padding(x, adj, node_mask)
    if c.input_vocab:
      check_code_columns(c, x, "nnx.DiffPool")
      x = self.input_embed(x, node_mask)
    if c.conv == "gine":
      codes = checked_edge_codes(c, adj, "nnx.DiffPool")
      adj = adj.replace(features=self.edge_embed(codes, adj.weights != 0))
    if c.input_norm:
      x = self.input_bn(x, node_mask, train)
    input_vector = input_readout(
        c.input_readout, x, node_mask,
        lambda h, mask: self.input_readout_bn(h, mask, train))
    graph_mask = jnp.any(node_mask, axis=1)
    keys = (iter(jax.random.split(key, 2 * c.num_levels + 1))
            if key is not None else iter(lambda: None, 0))
    slots, real = cluster_slots(c, self.max_nodes, x.shape[1], node_mask)
    readouts, levels = [], []
    for level in range(c.num_levels):
      z = getattr(self, f"embed{level}")(x, adj, node_mask, train, dropout,
                                         next(keys))
      readouts.append(masked_readout(z, node_mask, c.readout))
      h = z
      if c.assign_from != "embedding":
        h = getattr(self, f"assign{level}")(x, adj, node_mask, train,
                                            dropout, next(keys))
      if c.assign_head == "none":
        s_logits = h[..., :slots[level]]
      else:
        head = getattr(self, f"assign_head{level}")
        s_logits = (h @ head.kernel[...][:, :slots[level]]
                    + head.bias[...][:slots[level]])
        if c.assign_head == "linear_relu":
          s_logits = jax.nn.relu(s_logits)
      x, pooled = pool_level(c, z, adj, s_logits, node_mask, graph_mask,
                             slots[level], real, level)
      adj, node_mask = pooled.adj, pooled.mask
      levels.append(pooled)
    z = getattr(self, f"embed{c.num_levels}")(x, adj, node_mask, train,
                                              dropout, next(keys))
    readouts.append(masked_readout(z, node_mask, c.readout))
    h = graph_representation(c, readouts, input_vector)
    mlp_keys = (iter(jax.random.split(jax.random.fold_in(key, 1),
                                      len(c.mlp_hidden) + 1))
                if train and c.mlp_dropout > 0 else None)
    for i in range(len(c.mlp_hidden) + 1):
      if mlp_keys is not None:
        h = drop(h, c.mlp_dropout, next(mlp_keys))
      h = getattr(self, f"mlp{i}")(h)
      if i < len(c.mlp_hidden):
        h = jax.nn.relu(h)
    return h, tuple(levels)


def load_linen_variables(model: nnx.Module,
                         variables: Mapping[str, Mapping]) -> None:
  """Copies a linen model's {"params": ..., "batch_stats": ...} into the
  NNX model of the same configuration (same names), in place."""
  def copy(module, tree):
    for name, value in tree.items():
      target = getattr(module, name)
      if isinstance(value, Mapping):
        copy(target, value)
      else:
        target[...] = jnp.asarray(value)
  for collection in ("params", "batch_stats"):
    copy(model, variables.get(collection, {}))
