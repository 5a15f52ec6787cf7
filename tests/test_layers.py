"""Dense convolutions, masked batch norm and GNN stacks vs NumPy references."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diffpool_jax.models.layers import (DenseGCNConv, DenseGINConv,
                                        DenseSAGEConv, DenseSumConv, GNNStack,
                                        MaskedBatchNorm, batch_norm_train,
                                        l2_normalize)
from tests.helpers import random_batch, repad


def sage_reference(p, x, a):
  degree = np.maximum(a.sum(1, keepdims=True), 1.0)
  return ((a @ x) / degree) @ p["lin_rel"]["kernel"] + (
      x @ p["lin_root"]["kernel"] + p["lin_root"]["bias"])


def gcn_reference(p, x, a):
  a_hat = a.copy()
  np.fill_diagonal(a_hat, 1.0)
  d = 1.0 / np.sqrt(a_hat.sum(1))
  return (d[:, None] * a_hat * d[None, :]) @ x @ p["linear"]["kernel"] + p[
      "bias"]


def sum_reference(p, x, a):
  return a @ x @ p["linear"]["kernel"] + p["bias"]


def gin_reference(p, x, a):
  h = (1.0 + p["eps"]) * x + a @ x
  h = np.maximum(h @ p["mlp0"]["kernel"] + p["mlp0"]["bias"], 0.0)
  return h @ p["mlp1"]["kernel"] + p["mlp1"]["bias"]


@pytest.mark.parametrize("conv, reference", [
    (DenseSAGEConv, sage_reference), (DenseGCNConv, gcn_reference),
    (DenseSumConv, sum_reference), (DenseGINConv, gin_reference)])
@pytest.mark.parametrize("width", [3, 9])  # narrower and wider than F=5
def test_conv_matches_reference_and_zeroes_padding(conv, reference, width):
  batch = random_batch(np.random.default_rng(0), (6, 9, 1), 10)
  # A weighted adjacency with a few self-loops exercises the GCN diagonal.
  adj = batch.adj * 0.5
  adj[0, 0, 0] = 2.0
  layer = conv(width)
  params = layer.init(jax.random.key(1), batch.x, adj, batch.node_mask)
  # non-zero biases and GIN epsilon
  params = jax.tree_util.tree_map(lambda v: v + 0.3, params)
  out = np.asarray(layer.apply(params, batch.x, adj, batch.node_mask))
  p = jax.tree_util.tree_map(lambda v: np.asarray(v, np.float64),
                             params["params"])
  for i, n in enumerate(batch.n_node):
    want = reference(p, batch.x[i, :n].astype(np.float64),
                     adj[i, :n, :n].astype(np.float64))
    np.testing.assert_allclose(out[i, :n], want, rtol=1e-5, atol=1e-5)
    assert np.all(out[i, n:] == 0)


class UnfusedSAGE(nn.Module):
  """DenseSAGEConv's parameters as two nn.Dense layers (its earlier form)."""

  @nn.compact
  def __call__(self, x):
    return (nn.Dense(7, use_bias=False, name="lin_rel")(x)
            + nn.Dense(7, name="lin_root")(x))


def test_sage_parameters_are_those_of_two_dense_layers():
  batch = random_batch(np.random.default_rng(4), (5, 8), 8)
  fused = DenseSAGEConv(7).init(jax.random.key(3), batch.x, batch.adj,
                                batch.node_mask)
  unfused = UnfusedSAGE().init(jax.random.key(3), batch.x)
  assert (jax.tree_util.tree_structure(fused)
          == jax.tree_util.tree_structure(unfused))
  for a, b in zip(jax.tree_util.tree_leaves(fused),
                  jax.tree_util.tree_leaves(unfused)):
    assert a.dtype == b.dtype
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


@pytest.mark.parametrize("conv", [DenseSAGEConv, DenseGCNConv, DenseSumConv,
                                  DenseGINConv])
def test_conv_without_output_mask_changes_only_padded_nodes(conv):
  batch = random_batch(np.random.default_rng(5), (6, 9, 1), 10)
  masked = conv(4)
  params = masked.init(jax.random.key(2), batch.x, batch.adj, batch.node_mask)
  params = jax.tree_util.tree_map(lambda v: v + 0.5, params)  # bias != 0
  out = np.asarray(masked.apply(params, batch.x, batch.adj, batch.node_mask))
  raw = np.asarray(conv(4, mask_output=False).apply(
      params, batch.x, batch.adj, batch.node_mask))
  real = batch.node_mask
  np.testing.assert_array_equal(raw[real], out[real])
  assert np.all(out[~real] == 0) and np.any(raw[~real] != 0)


def test_l2_normalize_keeps_zero_rows_and_finite_gradient():
  x = np.array([[3.0, 4.0], [0.0, 0.0]], np.float32)
  np.testing.assert_allclose(np.asarray(l2_normalize(x)),
                             [[0.6, 0.8], [0.0, 0.0]], rtol=1e-6)
  grad = jax.grad(lambda v: l2_normalize(v).sum())(x)
  assert np.all(np.isfinite(np.asarray(grad)))


def test_masked_batch_norm_uses_real_nodes_only():
  rng = np.random.default_rng(0)
  x = rng.normal(size=(3, 6, 4)).astype(np.float32) * 3 + 1
  mask = np.arange(6)[None] < np.array([[6], [2], [0]])
  x = x * mask[..., None]
  bn = MaskedBatchNorm()
  variables = bn.init(jax.random.key(0), x, mask, train=False)
  out, updates = bn.apply(variables, x, mask, train=True,
                          mutable=["batch_stats"])
  real = x[mask].astype(np.float64)
  mean, var = real.mean(0), real.var(0)
  want = (x - mean) / np.sqrt(var + 1e-5) * mask[..., None]
  np.testing.assert_allclose(np.asarray(out), want, rtol=1e-4, atol=1e-5)
  stats = updates["batch_stats"]
  np.testing.assert_allclose(np.asarray(stats["mean"]), 0.1 * mean, rtol=1e-5)
  unbiased = real.var(0, ddof=1)
  np.testing.assert_allclose(np.asarray(stats["var"]), 0.9 + 0.1 * unbiased,
                             rtol=1e-5)
  # Evaluation uses the running averages.
  evaluated = bn.apply({**variables, **updates}, x, mask, train=False)
  want_eval = ((x - stats["mean"]) / np.sqrt(stats["var"] + 1e-5)
               * mask[..., None])
  np.testing.assert_allclose(np.asarray(evaluated), want_eval, rtol=1e-5,
                             atol=1e-6)


def test_batch_norm_gradient_matches_finite_differences_of_float64():
  """batch_norm_train's written-out gradient (of its output, mean and
  variance) against central differences of a float64 NumPy forward; NaN
  in padded entries changes nothing and gets a zero gradient."""
  rng = np.random.default_rng(1)
  mask = np.arange(5)[None] < np.array([[5], [3]])
  x = (rng.normal(size=(2, 5, 3)) * 2 + 0.5).astype(np.float32)
  x[~mask] = np.nan
  scale, bias = rng.normal(size=3), rng.normal(size=3)
  w, a, b = rng.normal(size=(2, 5, 3)), rng.normal(size=3), rng.normal(size=3)

  def loss64(x, scale, bias):
    real = x[mask]                                   # [n, F]
    mean, var = real.mean(0), real.var(0)
    y = (real - mean) / np.sqrt(var + 1e-5) * scale + bias
    return np.sum(y * w[mask]) + np.sum(mean * a) + np.sum(var * b)

  def numeric(f, v, h=1e-6):
    grad = np.zeros_like(v)
    for i in np.ndindex(v.shape):
      if np.isnan(v[i]):
        continue
      up, down = v.copy(), v.copy()
      up[i] += h
      down[i] -= h
      grad[i] = (f(up) - f(down)) / (2 * h)
    return grad

  x64 = x.astype(np.float64)
  want = (numeric(lambda v: loss64(v, scale, bias), x64),
          numeric(lambda v: loss64(x64, v, bias), scale),
          numeric(lambda v: loss64(x64, scale, v), bias))

  def loss(x, scale, bias):
    y, mean, var = batch_norm_train(x, jnp.asarray(mask)[..., None], scale,
                                    bias, 1e-5)
    return jnp.sum(y * w) + jnp.sum(mean * a) + jnp.sum(var * b)

  got = jax.grad(loss, argnums=(0, 1, 2))(
      jnp.asarray(x), jnp.asarray(scale, jnp.float32),
      jnp.asarray(bias, jnp.float32))
  for g, expected in zip(got, want):
    np.testing.assert_allclose(np.asarray(g), expected, rtol=2e-4, atol=2e-4)
  assert np.all(np.asarray(got[0])[~mask] == 0)


def test_batch_norm_gradient_under_vmap_ignores_padding():
  """vmapped over members (as the epoch programs run it), one of them
  without real nodes: the written-out gradient equals autodiff of the
  plain masked forward, and inf in padded inputs or NaN in padded
  cotangents changes neither values nor gradients."""
  rng = np.random.default_rng(2)
  mask = np.arange(6)[None, None] < np.array([[[6], [2]], [[0], [0]],
                                               [[4], [1]]])    # [M, B, N]
  x = rng.normal(size=(3, 2, 6, 4)).astype(np.float32)
  scale = rng.normal(size=(3, 4)).astype(np.float32)
  bias = rng.normal(size=(3, 4)).astype(np.float32)
  d_y = rng.normal(size=x.shape).astype(np.float32)
  d_stats = rng.normal(size=(2, 3, 4)).astype(np.float32)
  real = jnp.asarray(mask)[..., None]

  def plain(x, real, scale, bias):
    count = jnp.maximum(jnp.sum(real).astype(x.dtype), 1.0)
    mean = jnp.sum(jnp.where(real, x, 0.0), axis=(0, 1)) / count
    var = jnp.sum(jnp.where(real, jnp.square(x - mean), 0.0),
                  axis=(0, 1)) / count
    y = jnp.where(real, (x - mean) * jax.lax.rsqrt(var + 1e-5) * scale
                  + bias, 0.0)
    return y, mean, var

  def written(x, real, scale, bias):
    return batch_norm_train(x, real, scale, bias, 1e-5)

  def pullback(f, x, d_y):
    def one(x, real, scale, bias, d_y, d_mean, d_var):
      out, vjp = jax.vjp(lambda x, scale, bias: f(x, real, scale, bias),
                         x, scale, bias)
      return out, vjp((d_y, d_mean, d_var))
    return jax.jit(jax.vmap(one))(x, real, scale, bias, d_y, *d_stats)

  want_out, want_grads = pullback(plain, jnp.asarray(x), jnp.asarray(d_y))
  dirty_x = np.where(mask[..., None], x, np.inf)
  dirty_d_y = np.where(mask[..., None], d_y, np.nan)
  got_out, got_grads = pullback(written, jnp.asarray(dirty_x),
                                jnp.asarray(dirty_d_y))
  for got, want in zip(got_out, want_out):
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-6,
                               atol=1e-6)
  for got, want in zip(got_grads, want_grads):
    assert np.all(np.isfinite(np.asarray(got)))
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-4,
                               atol=1e-5)
  assert np.all(np.asarray(got_grads[0])[1] == 0)   # the member without nodes


def test_masked_batch_norm_ignores_batches_without_nodes():
  x = np.zeros((2, 3, 4), np.float32)
  mask = np.zeros((2, 3), bool)
  bn = MaskedBatchNorm()
  variables = bn.init(jax.random.key(0), x, mask, train=False)
  out, updates = bn.apply(variables, x, mask, train=True,
                          mutable=["batch_stats"])
  assert np.all(np.asarray(out) == 0)
  np.testing.assert_array_equal(np.asarray(updates["batch_stats"]["mean"]), 0)
  np.testing.assert_array_equal(np.asarray(updates["batch_stats"]["var"]), 1)


@pytest.mark.parametrize("conv", ["sage", "gcn", "sum", "gin"])
@pytest.mark.parametrize("concat, activate_last, batch_norm", [
    (True, False, True), (False, True, True), (True, True, False)])
def test_gnn_stack_padding_invariant_and_zero(conv, concat, activate_last,
                                              batch_norm):
  batch = random_batch(np.random.default_rng(2), (5, 8, 2), 8)
  big = repad(batch, 20)
  stack = GNNStack(conv=conv, widths=(6, 6, 4), l2_normalize=True,
                   batch_norm=batch_norm, concat=concat,
                   activate_last=activate_last)
  variables = stack.init(jax.random.key(0), batch.x, batch.adj,
                         batch.node_mask, train=False)
  for train in (False, True):
    small_out, _ = stack.apply(variables, batch.x, batch.adj,
                               batch.node_mask, train=train,
                               mutable=["batch_stats"])
    big_out, _ = stack.apply(variables, big.x, big.adj, big.node_mask,
                             train=train, mutable=["batch_stats"])
    np.testing.assert_allclose(np.asarray(big_out)[:, :8],
                               np.asarray(small_out), rtol=1e-5, atol=1e-6)
    assert np.all(np.asarray(big_out)[~big.node_mask] == 0)
  width = 16 if concat else 4
  assert small_out.shape == (3, 8, width)


def test_gnn_stack_dropout_needs_train_flag():
  batch = random_batch(np.random.default_rng(3), (5, 8), 8)
  stack = GNNStack(conv="sage", widths=(16, 16), dropout=0.5)
  variables = stack.init(jax.random.key(0), batch.x, batch.adj,
                         batch.node_mask, train=False)
  evaluated = [stack.apply(variables, batch.x, batch.adj, batch.node_mask,
                           train=False) for _ in range(2)]
  np.testing.assert_array_equal(*map(np.asarray, evaluated))
  trained = [stack.apply(variables, batch.x, batch.adj, batch.node_mask,
                         train=True, mutable=["batch_stats"],
                         rngs={"dropout": jax.random.key(seed)})[0]
             for seed in (0, 1)]
  assert not np.allclose(*map(np.asarray, trained))
