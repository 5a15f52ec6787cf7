"""Graph convolutions, masked batch norm and GNN stacks (flax.linen).

All layers take x [B,N,F], an adjacency (a dense [B,N,N] array or an
`EdgeList`, see adjacency.py; the parameters are the same for both) and
node_mask [B,N] bool, and keep padded nodes exactly zero in their output
(a convolution with `mask_output=False` leaves that to the masked batch
norm after it).
"""

from __future__ import annotations

import functools
from typing import Dict, NamedTuple, Sequence, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from diffpool_jax.adjacency import (Adjacency, EdgeList, diagonal,
                                    gine_messages, matmul, row_sums)
from diffpool_jax.errors import check_name

# Xavier-uniform with the ReLU gain, as the authors' GraphConv initialises.
xavier_relu_init = nn.initializers.variance_scaling(2.0, "fan_avg", "uniform")


def propagate(adj: Adjacency, x: jax.Array, linear: nn.Dense) -> jax.Array:
  """A @ linear(x) for a bias-free linear map, in the cheaper order.

  (A X) W and A (X W) are equal; transforming first is cheaper when the
  layer narrows the features, aggregating first when it widens them.

  Args:
    adj: [B, N, N] or EdgeList; x: [B, N, F]; linear: a bias-free nn.Dense
      to width H.

  Returns:
    [B, N, H].
  """
  if x.shape[-1] > linear.features:
    return matmul(adj, linear(x))
  return linear(matmul(adj, x))


def mask_nodes(x: jax.Array, node_mask: jax.Array, enabled: bool = True
               ) -> jax.Array:
  """x [B,N,F] with padded nodes (node_mask [B,N] False) set to zero.

  `enabled=False` returns x unchanged, for a layer whose consumer masks
  anyway (a masked batch norm ignores and zeroes padded nodes).
  """
  if not enabled:
    return x
  return jnp.where(node_mask[..., None], x, jnp.zeros((), x.dtype))


def l2_normalize(x: jax.Array, eps: float = 1e-12) -> jax.Array:
  """x / max(||x||_2, eps) over the last axis; zero rows stay zero."""
  sq_norm = jnp.sum(x * x, axis=-1, keepdims=True)
  return x * jax.lax.rsqrt(jnp.maximum(sq_norm, eps * eps))


class DenseWeights(nn.Module):
  """The kernel [F, H] (and bias [H]) of an nn.Dense, returned unapplied.

  Same parameter names, shapes and initialisers as nn.Dense, so a layer can
  fuse several linear maps into one matmul without changing its parameters.
  """
  features: int
  use_bias: bool = True

  @nn.compact
  def __call__(self, in_features: int):
    kernel = self.param("kernel", nn.initializers.lecun_normal(),
                        (in_features, self.features), jnp.float32)
    if not self.use_bias:
      return kernel, None
    return kernel, self.param("bias", nn.initializers.zeros, (self.features,),
                              jnp.float32)


def sage_mean(x: jax.Array, adj: Adjacency, w_rel: jax.Array,
              w_root: jax.Array) -> jax.Array:
  """GraphSAGE-mean without bias: (A x / deg) w_rel + x w_root, both maps
  as one matmul, in the cheaper order for the widths.

  Args:
    x: [B, N, F]; adj: [B, N, N] or EdgeList; w_rel, w_root: [F, H].

  Returns:
    [B, N, H].
  """
  features = w_rel.shape[-1]
  inv_degree = 1.0 / jnp.maximum(row_sums(adj), 1.0)
  if x.shape[-1] > features:
    both = x @ jnp.concatenate([w_rel, w_root], axis=1)
    out = matmul(adj, both[..., :features]) * inv_degree
    return out + both[..., features:]
  mean = matmul(adj, x) * inv_degree
  return jnp.concatenate([mean, x], -1) @ jnp.concatenate([w_rel, w_root])


@functools.partial(jax.custom_vjp, nondiff_argnums=(4,))
def batch_norm_train(x: jax.Array, real: jax.Array, scale: jax.Array,
                     bias: jax.Array, epsilon: float):
  """Batch norm of x [B,N,F] over its real nodes (real [B,N,1] bool):
  (x - mean) / sqrt(var + epsilon) * scale + bias there, zero on padded
  nodes (whatever they hold). Returns that, and the mean and biased
  variance [F] of the real nodes.

  Its gradient is written out (`_batch_norm_backward`): one reduction pass
  over the batch for scale's and bias's gradients, one elementwise pass
  for x's, where autodiff of the masked forward makes more passes. Being
  a `jax.custom_vjp`, it has reverse-mode derivatives only (`grad`, `vjp`;
  not `jvp`, `jacfwd` or `hessian`)."""
  outputs, _ = _batch_norm_forward(x, real, scale, bias, epsilon)
  return outputs


def _batch_norm_forward(x, real, scale, bias, epsilon):
  """(y, mean, var) and what the backward needs."""
  count = jnp.maximum(jnp.sum(real).astype(x.dtype), 1.0)
  mean = jnp.sum(jnp.where(real, x, 0.0), axis=(0, 1)) / count
  var = jnp.sum(jnp.where(real, jnp.square(x - mean), 0.0),
                axis=(0, 1)) / count
  y = normalize(x, real, mean, var, epsilon, scale, bias)
  inv_std = jax.lax.rsqrt(var + epsilon)
  return (y, mean, var), (x, real, scale, mean, inv_std, count)


def _batch_norm_backward(epsilon, residuals, cotangents):
  """With x̂ the normalised real nodes and g the output's cotangent on
  them: d bias = Σ g, d scale = Σ g x̂, and d x = scale / (n std) (n g -
  d bias - x̂ d scale), plus the mean's and variance's own cotangents
  (1/n and 2 (x - mean) / n per real node); zero on padded nodes."""
  del epsilon
  x, real, scale, mean, inv_std, count = residuals
  d_y, d_mean, d_var = cotangents
  centred = x - mean
  normalised = centred * inv_std
  d_bias = jnp.sum(jnp.where(real, d_y, 0.0), axis=(0, 1))
  d_scale = jnp.sum(jnp.where(real, d_y * normalised, 0.0), axis=(0, 1))
  d_x = jnp.where(
      real, (inv_std * scale / count) * (count * d_y - d_bias
                                         - normalised * d_scale)
      + (d_mean + 2.0 * d_var * centred) / count, 0.0)
  return (d_x.astype(x.dtype), None, d_scale.astype(scale.dtype),
          d_bias.astype(scale.dtype))


batch_norm_train.defvjp(_batch_norm_forward, _batch_norm_backward)


def normalize(x: jax.Array, real: jax.Array, mean: jax.Array,
              var: jax.Array, epsilon: float, scale: jax.Array,
              bias: jax.Array) -> jax.Array:
  """(x - mean) / sqrt(var + epsilon) * scale + bias, padded nodes (real
  [B,N,1] False) zero: batch norm with given statistics (evaluation)."""
  return jnp.where(real, (x - mean) * (jax.lax.rsqrt(var + epsilon) * scale)
                   + bias, 0.0)


class DenseSAGEConv(nn.Module):
  """GraphSAGE-mean: mean over neighbours (W_rel) plus root term (W_root, b).

  out_i = W_rel (sum_j A_ij x_j / max(deg_i, 1)) + W_root x_i + b, as
  PyTorch Geometric's DenseSAGEConv. Both linear maps run as one matmul:
  x [W_rel | W_root] when the layer narrows the features (then aggregate
  the first half), [mean_j x_j, x] [W_rel; W_root] when it widens them.
  """
  features: int
  mask_output: bool = True

  @nn.compact
  def __call__(self, x, adj, node_mask):
    w_rel, _ = DenseWeights(self.features, use_bias=False, name="lin_rel")(
        x.shape[-1])
    w_root, bias = DenseWeights(self.features, name="lin_root")(x.shape[-1])
    return mask_nodes(sage_mean(x, adj, w_rel, w_root) + bias, node_mask,
                      self.mask_output)


class DenseGCNConv(nn.Module):
  """GCN: D^-1/2 (A + I) D^-1/2 X W + b, self-loops set to weight 1.

  Any existing diagonal entry is replaced by 1 (PyTorch Geometric's
  DenseGCNConv); the self-loop is added without forming an N x N identity.
  """
  features: int
  mask_output: bool = True

  @nn.compact
  def __call__(self, x, adj, node_mask):
    loops = diagonal(adj)
    degree = row_sums(adj) - loops + 1.0
    inv_sqrt = jax.lax.rsqrt(degree)
    h = nn.Dense(self.features, use_bias=False, name="linear")(x) * inv_sqrt
    out = (matmul(adj, h) + (1.0 - loops) * h) * inv_sqrt
    out = out + self.param("bias", nn.initializers.zeros, (self.features,))
    return mask_nodes(out, node_mask, self.mask_output)


class DenseSumConv(nn.Module):
  """The authors' GraphConv: A X W + b, no self term (RexYing/diffpool)."""
  features: int
  mask_output: bool = True

  @nn.compact
  def __call__(self, x, adj, node_mask):
    linear = nn.Dense(self.features, use_bias=False,
                      kernel_init=xavier_relu_init, name="linear")
    out = propagate(adj, x, linear)
    out = out + self.param("bias", nn.initializers.zeros, (self.features,))
    return mask_nodes(out, node_mask, self.mask_output)


def embed_codes(tables: Sequence[jax.Array], codes: jax.Array,
                node_mask: jax.Array) -> jax.Array:
  """The sum over columns c of tables[c][codes[..., c]] (OGB's AtomEncoder:
  one embedding per integer feature column), zero on padded nodes.

  Args:
    tables: per column a [V_c, D] embedding table.
    codes: [B, N, C] integer codes (any dtype; out-of-range codes are
      clipped to the table).
    node_mask: [B, N] bool.

  Returns:
    [B, N, D] float embeddings.
  """
  codes = codes.astype(jnp.int32)
  total = sum(table[jnp.clip(codes[..., c], 0, table.shape[0] - 1)]
              for c, table in enumerate(tables))
  return jnp.where(node_mask[..., None], total, 0.0)


class CodeEmbedding(nn.Module):
  """Integer feature columns [B, N, C] -> [B, N, features]: one table
  `table{c}` [vocab[c], features] per column, summed (`embed_codes`);
  Xavier-uniform tables as OGB's AtomEncoder."""
  vocab: Sequence[int]
  features: int

  @nn.compact
  def __call__(self, codes: jax.Array, node_mask: jax.Array) -> jax.Array:
    tables = [self.param(f"table{c}", nn.initializers.xavier_uniform(),
                         (int(size), self.features))
              for c, size in enumerate(self.vocab)]
    return embed_codes(tables, codes, node_mask)


def gin_aggregate(x: jax.Array, adj: Adjacency, eps: jax.Array
                  ) -> jax.Array:
  """GIN's aggregation (1 + eps) x_i + sum_j A_ij x_j: x [B,N,F], adj
  [B,N,N] or EdgeList, eps [] -> [B,N,F]."""
  return (1.0 + eps) * x + matmul(adj, x)


class DenseGINConv(nn.Module):
  """GIN (Xu et al., "How Powerful are Graph Neural Networks?", ICLR 2019):
  out_i = MLP((1 + eps) x_i + sum_j A_ij x_j), eps learned (starts at 0),
  the MLP Linear -> ReLU -> Linear, both `features` wide. Sum aggregation
  tells multisets of neighbours apart where a mean cannot."""
  features: int
  mask_output: bool = True

  @nn.compact
  def __call__(self, x, adj, node_mask):
    eps = self.param("eps", nn.initializers.zeros, (), jnp.float32)
    h = gin_aggregate(x, adj, eps)
    h = nn.relu(nn.Dense(self.features, name="mlp0")(h))
    out = nn.Dense(self.features, name="mlp1")(h)
    return mask_nodes(out, node_mask, self.mask_output)


def gine_aggregate(x: jax.Array, adj: Adjacency, eps: jax.Array,
                   project) -> jax.Array:
  """GINE's aggregation (1 + eps) x_i + sum_j A_ij relu(x_j + W e_ij) on an
  EdgeList with entry features e (projected to x's width by `project`,
  e.g. a Dense); GIN's (`gin_aggregate`) on any other adjacency (a pooled
  level has no edge features)."""
  if isinstance(adj, EdgeList) and adj.features is not None:
    return (1.0 + eps) * x + gine_messages(adj, x, project(adj.features))
  return gin_aggregate(x, adj, eps)


class DenseGINEConv(nn.Module):
  """GINE (Hu et al., "Strategies for Pre-training Graph Neural Networks",
  ICLR 2020; OGB's GIN baseline): GIN whose messages see the bond,
  out_i = MLP((1 + eps) x_i + sum_j A_ij relu(x_j + W e_ij)), where the
  adjacency is an EdgeList carrying entry features e (`edge` maps them to
  x's width); on a pooled (dense) level, GIN."""
  features: int
  mask_output: bool = True

  @nn.compact
  def __call__(self, x, adj, node_mask):
    eps = self.param("eps", nn.initializers.zeros, (), jnp.float32)
    h = gine_aggregate(x, adj, eps,
                       lambda e: nn.Dense(x.shape[-1], name="edge")(e))
    h = nn.relu(nn.Dense(self.features, name="mlp0")(h))
    out = nn.Dense(self.features, name="mlp1")(h)
    return mask_nodes(out, node_mask, self.mask_output)


class Convolution(NamedTuple):
  """A graph convolution's description, as `CONVOLUTIONS` holds it.

  Attributes:
    module: a linen Module class, built as `module(features, mask_output,
      name=...)` and called `(x [B,N,F], adj, node_mask [B,N]) -> [B,N,
      features]`, adj a dense [B,N,N] array or an `EdgeList`; padded nodes
      of the output exactly zero unless `mask_output=False`.
    reads_edge_features: whether it reads per-entry features from a
      first-level EdgeList (`EdgeList.features`, the embedded bond codes;
      as "gine"): the runs then give it the edge list and the data's edge
      labels. Pooled (dense) levels carry none.
  """
  module: type
  reads_edge_features: bool = False


CONVOLUTIONS: Dict[str, Convolution] = {}


def check_convolution(name: str, conv: Convolution) -> None:
  """ValueError naming the convolution unless `conv.module` builds and maps
  a dense and an edge-list batch [2, 5, 3] to [2, 5, 4] (checked by
  `jax.eval_shape`: nothing is computed)."""
  batch, nodes, entries = 2, 5, 6
  x = jax.ShapeDtypeStruct((batch, nodes, 3), jnp.float32)
  mask = jax.ShapeDtypeStruct((batch, nodes), jnp.bool_)
  index = jax.ShapeDtypeStruct((batch, entries), jnp.int32)
  edge_list = EdgeList(index, index, jax.ShapeDtypeStruct(
      (batch, entries), jnp.float32), nodes,
      jax.ShapeDtypeStruct((batch, entries, 4), jnp.float32)
      if conv.reads_edge_features else None)
  for form, adj in (("dense", jax.ShapeDtypeStruct((batch, nodes, nodes),
                                                   jnp.float32)),
                    ("edge-list", edge_list)):
    try:
      module = conv.module(4, True, name="conv")
      out = jax.eval_shape(
          lambda x, adj, mask: module.init_with_output(
              jax.random.key(0), x, adj, mask)[0], x, adj, mask)
    except Exception as error:  # noqa: BLE001 (reported with the name)
      raise ValueError(f"convolution {name!r} fails on a {form} batch: "
                       f"{type(error).__name__}: {error}") from error
    if getattr(out, "shape", None) != (batch, nodes, 4):
      raise ValueError(f"convolution {name!r} maps a {form} batch "
                       f"[2, 5, 3] to {getattr(out, 'shape', out)}; "
                       "expected [2, 5, features=4]")


def register_conv(name: str, module: type,
                  reads_edge_features: bool = False,
                  check: bool = True) -> Convolution:
  """Adds a convolution to `CONVOLUTIONS` (so that `DiffPoolConfig.conv`,
  `--model.conv` and the NNX models find it by name) after checking it
  (`check_convolution`) unless `check` is False; returns its description.
  See `Convolution`.

  check: False skips the check (two traces, 20-40 ms). The built-in
  convolutions pass False, so that importing the library traces nothing;
  tests/test_extensions.py checks them."""
  check_name("a convolution", name)
  if not (isinstance(module, type) and issubclass(module, nn.Module)):
    raise ValueError(f"convolution {name!r}: expected a flax.linen Module "
                     f"class, got {module!r}")
  conv = Convolution(module, bool(reads_edge_features))
  if check:
    check_convolution(name, conv)
  CONVOLUTIONS[name] = conv
  return conv


def make_conv(conv: str, features: int, name: str,
              mask_output: bool = True) -> nn.Module:
  """The registered convolution named `conv` (see `CONVOLUTIONS`);
  `mask_output=False` leaves padded nodes unmasked (see `mask_nodes`)."""
  if conv not in CONVOLUTIONS:
    raise ValueError(f"unknown conv {conv!r}; expected one of "
                     f"{tuple(CONVOLUTIONS)}")
  return CONVOLUTIONS[conv].module(features, mask_output, name=name)


class MaskedBatchNorm(nn.Module):
  """Batch norm over the real nodes of a batch, per feature channel.

  Training uses the mean and (biased) variance of the real nodes and updates
  running averages (`momentum` keeps that share of the old value; 0.9 is
  PyTorch's momentum 0.1; the running variance is unbiased, as PyTorch's).
  A batch without real nodes leaves the running averages unchanged.
  Evaluation uses the running averages. Padded nodes stay zero. Training
  has reverse-mode derivatives only (see `batch_norm_train`).
  """
  momentum: float = 0.9
  epsilon: float = 1e-5
  affine: bool = True

  @nn.compact
  def __call__(self, x, node_mask, train: bool):
    """x: [B, N, F], node_mask: [B, N] bool -> [B, N, F]."""
    features = x.shape[-1]
    running_mean = self.variable("batch_stats", "mean", jnp.zeros,
                                 (features,), jnp.float32)
    running_var = self.variable("batch_stats", "var", jnp.ones,
                                (features,), jnp.float32)
    real = node_mask[..., None]
    if self.affine:
      scale = self.param("scale", nn.initializers.ones, (features,))
      bias = self.param("bias", nn.initializers.zeros, (features,))
    else:
      scale, bias = jnp.ones((features,), x.dtype), jnp.zeros((features,),
                                                             x.dtype)
    if not train:
      return normalize(x, real, running_mean.value, running_var.value,
                       self.epsilon, scale, bias)
    out, mean, var = batch_norm_train(x, real, scale, bias, self.epsilon)
    if not self.is_initializing():
      count = jnp.sum(real).astype(x.dtype)
      unbiased = var * count / jnp.maximum(count - 1.0, 1.0)
      keep = self.momentum
      has_nodes = count > 0
      running_mean.value = jnp.where(
          has_nodes, keep * running_mean.value + (1 - keep) * mean,
          running_mean.value)
      running_var.value = jnp.where(
          has_nodes, keep * running_var.value + (1 - keep) * unbiased,
          running_var.value)
    return out


def position_keys(key: jax.Array, sizes: Tuple[int, ...]) -> jax.Array:
  """Keys of shape `sizes` (raw or typed, as `key`): position (i, j, ...) gets
  fold_in(fold_in(key, i), j)..., so a position's key does not depend on
  how many positions follow it."""
  if not sizes:
    return key
  return jax.vmap(lambda i: position_keys(jax.random.fold_in(key, i),
                                          sizes[1:]))(jnp.arange(sizes[0]))


def dropout(x: jax.Array, rate, key: jax.Array) -> jax.Array:
  """Inverted dropout whose rate may be a traced scalar: each entry is
  zeroed with probability `rate`, the others scaled by 1 / (1 - rate).
  Each row x[b, n, :] draws its mask from a key of its own position
  (`position_keys`), so a graph's masks do not depend on how far its
  batch is padded."""
  keep = 1.0 - rate
  leading, width = x.shape[:-1], x.shape[-1]
  keys = position_keys(key, leading)
  flat = keys.reshape((-1,) + keys.shape[len(leading):])
  mask = jax.vmap(lambda k: jax.random.bernoulli(k, keep, (width,)))(flat)
  return jnp.where(mask.reshape(x.shape), x / keep, 0.0)


class GNNStack(nn.Module):
  """A stack of dense graph convolutions with the usual trimmings.

  Each layer: dropout on its input -> conv -> optional L2 normalisation ->
  ReLU -> optional masked batch norm. The last layer gets ReLU and batch norm
  only when `activate_last` (PyTorch Geometric's example does, the authors'
  code does not). Output: every layer's output concatenated (`concat`) or
  the last layer's.

  Attributes:
    conv: a registered convolution's name (`CONVOLUTIONS`).
    widths: output width of each layer, e.g. (64, 64, 32).
    l2_normalize: L2-normalise each layer's node embeddings.
    batch_norm: apply `MaskedBatchNorm` after the activation.
    bn_affine: give the batch norm a learned scale and bias.
    concat: concatenate every layer's output.
    activate_last: apply ReLU (and batch norm) after the last layer too.
    dropout: dropout rate on each layer's input (training only); 0: no
      dropout, whatever rate the call passes.
  """
  conv: str
  widths: Sequence[int]
  l2_normalize: bool = False
  batch_norm: bool = True
  bn_affine: bool = True
  concat: bool = True
  activate_last: bool = False
  dropout: float = 0.0

  @nn.compact
  def __call__(self, x, adj, node_mask, train: bool, rate=None):
    """x [B,N,F], adj [B,N,N], node_mask [B,N] -> [B,N,sum(widths) or last].

    rate: the dropout rate (a float or traced [] array); None: `dropout`.
    """
    outputs = []
    for i, width in enumerate(self.widths):
      if self.dropout > 0 and train:
        x = dropout(x, self.dropout if rate is None else rate,
                    self.make_rng("dropout"))
      activated = i < len(self.widths) - 1 or self.activate_last
      # A masked batch norm zeroes padded nodes itself.
      x = make_conv(self.conv, width, f"conv{i}",
                    mask_output=not (activated and self.batch_norm))(
                        x, adj, node_mask)
      if self.l2_normalize:
        x = l2_normalize(x)
      if activated:
        x = nn.relu(x)
        if self.batch_norm:
          x = MaskedBatchNorm(affine=self.bn_affine, name=f"bn{i}")(
              x, node_mask, train)
      outputs.append(x)
    return jnp.concatenate(outputs, axis=-1) if self.concat else x


# Checked in tests/test_extensions.py, not at import.
register_conv("sage", DenseSAGEConv, check=False)
register_conv("gcn", DenseGCNConv, check=False)
register_conv("sum", DenseSumConv, check=False)
register_conv("gin", DenseGINConv, check=False)
register_conv("gine", DenseGINEConv, reads_edge_features=True, check=False)


def __getattr__(name: str):
  """`CONV_TYPES` of 0.1: the registered convolutions' names, with a
  warning (the registry is `CONVOLUTIONS`)."""
  if name == "CONV_TYPES":
    import warnings
    warnings.warn("layers.CONV_TYPES is now tuple(layers.CONVOLUTIONS); the "
                  "old name goes in the next release", DeprecationWarning,
                  stacklevel=2)
    return tuple(CONVOLUTIONS)
  raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
