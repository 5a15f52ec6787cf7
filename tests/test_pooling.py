"""dense_diff_pool against an independent float64 NumPy reference."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diffpool_jax import dense_diff_pool
from diffpool_jax.models.pooling import LINK_LOSS_FORMS
from tests.helpers import random_batch


def reference_diff_pool(x, adj, logits, n_node, form):
  """Loops over graphs, each cut to its real nodes (float64, no padding)."""
  batch, num_nodes = x.shape[:2]
  pooled_x, pooled_adj, assignments, links, entropies = [], [], [], [], []
  squared_residual_total = 0.0
  entropy_total = 0.0
  for i in range(batch):
    n = n_node[i]
    z, a = x[i, :n].astype(np.float64), adj[i, :n, :n].astype(np.float64)
    e = np.exp(logits[i, :n] - logits[i, :n].max(-1, keepdims=True))
    s = e / e.sum(-1, keepdims=True)
    pooled_x.append(s.T @ z)
    pooled_adj.append(s.T @ a @ s)
    padded_s = np.zeros((num_nodes, s.shape[1]))
    padded_s[:n] = s
    assignments.append(padded_s)
    predicted = s @ s.T
    squared_residual_total += np.sum((a - predicted) ** 2)
    if form == "bce":
      clipped = np.minimum(predicted, 1.0)
      bce = -(a * np.log(clipped + 1e-7) + (1 - a) * np.log(1 - clipped + 1e-7))
      links.append(bce.sum() / n**2)
    else:
      links.append(np.linalg.norm(a - predicted) / n**2)
    row_entropy = -np.sum(s * np.log(s), axis=1)
    entropies.append(row_entropy.mean())
    entropy_total += row_entropy.sum()
  if form == "pyg":
    link = np.sqrt(squared_residual_total) / (batch * num_nodes**2)
    entropy = entropy_total / (batch * num_nodes)
  else:
    link, entropy = np.mean(links), np.mean(entropies)
  return (np.stack(pooled_x), np.stack(pooled_adj), np.stack(assignments),
          link, entropy)


def random_inputs(seed, sizes=(7, 12, 3, 1), num_nodes=16, clusters=4):
  rng = np.random.default_rng(seed)
  batch = random_batch(rng, sizes, num_nodes, num_features=6)
  logits = rng.normal(size=(len(sizes), num_nodes, clusters)).astype(
      np.float32)
  return batch, logits


@pytest.mark.parametrize("form", LINK_LOSS_FORMS)
@pytest.mark.parametrize("seed", [0, 1])
def test_matches_numpy_reference(form, seed):
  batch, logits = random_inputs(seed)
  out = dense_diff_pool(batch.x, batch.adj, logits, batch.node_mask,
                        link_loss=form)
  ref = reference_diff_pool(batch.x, batch.adj, logits, batch.n_node, form)
  for got, want in zip(out, ref):
    np.testing.assert_allclose(np.asarray(got), want, rtol=1e-5, atol=1e-6)


class JitEagerTest(chex.TestCase):
  """dense_diff_pool gives the same result with and without jit."""

  @chex.variants(with_jit=True, without_jit=True)
  def test_same_result(self):
    batch, logits = random_inputs(3)
    pool = self.variant(lambda x, a, s, m: dense_diff_pool(x, a, s, m))
    out = pool(batch.x, batch.adj, logits, batch.node_mask)
    ref = reference_diff_pool(batch.x, batch.adj, logits, batch.n_node,
                              "frobenius")
    for got, want in zip(out, ref):
      np.testing.assert_allclose(np.asarray(got), want, rtol=1e-5, atol=1e-6)


def test_mask_none_means_all_real():
  batch, logits = random_inputs(4, sizes=(16, 16))
  with_mask = dense_diff_pool(batch.x, batch.adj, logits, batch.node_mask)
  without = dense_diff_pool(batch.x, batch.adj, logits)
  chex.assert_trees_all_close(tuple(with_mask), tuple(without))


def test_padded_nodes_never_leak():
  """Garbage on padded nodes changes nothing."""
  batch, logits = random_inputs(5)
  pad = ~batch.node_mask
  noisy_x = np.where(pad[..., None], 1e3, batch.x).astype(np.float32)
  noisy_logits = np.where(pad[..., None], 50.0, logits).astype(np.float32)
  for form in LINK_LOSS_FORMS:
    clean = dense_diff_pool(batch.x, batch.adj, logits, batch.node_mask, form)
    noisy = dense_diff_pool(noisy_x, batch.adj, noisy_logits,
                            batch.node_mask, form)
    chex.assert_trees_all_close(tuple(clean), tuple(noisy), rtol=1e-6)
    assert np.all(np.asarray(noisy.s)[pad] == 0)


@pytest.mark.parametrize("form", LINK_LOSS_FORMS)
def test_gradients_finite_in_edge_cases(form):
  """Near-one-hot S, isolated nodes, one-node graphs, all-padding rows."""
  num_nodes, clusters = 8, 3
  x = np.random.default_rng(0).normal(size=(4, num_nodes, 5)).astype(
      np.float32)
  adj = np.zeros((4, num_nodes, num_nodes), np.float32)
  adj[0, 0, 1] = adj[0, 1, 0] = 1.0          # graph 0: one edge + isolated
  n_node = np.array([5, 1, 0, 8])            # graph 1: one node; 2: padding
  mask = np.arange(num_nodes)[None] < n_node[:, None]
  one_hot = np.zeros((4, num_nodes, clusters), np.float32)
  one_hot[..., 0] = 1e4                      # softmax is exactly one-hot

  def total(x, logits):
    out = dense_diff_pool(x, adj, logits, mask, link_loss=form)
    return (out.link_loss + out.entropy_loss + jnp.sum(out.x)
            + jnp.sum(out.adj))

  for logits in (one_hot, one_hot * 1e-4):
    value, grads = jax.value_and_grad(total, argnums=(0, 1))(x, logits)
    assert np.isfinite(value)
    for g in grads:
      assert np.all(np.isfinite(np.asarray(g)))


def test_one_hot_assignment_of_cliques_has_zero_losses():
  """Two cliques (with self-loops) assigned to their own clusters."""
  adj = np.zeros((1, 6, 6), np.float32)
  adj[0, :3, :3] = 1.0
  adj[0, 3:, 3:] = 1.0
  logits = np.full((1, 6, 2), -1e4, np.float32)
  logits[0, :3, 0] = logits[0, 3:, 1] = 0.0
  out = dense_diff_pool(np.ones((1, 6, 2), np.float32), adj, logits)
  assert float(out.link_loss) == 0.0
  assert float(out.entropy_loss) == 0.0
  np.testing.assert_allclose(np.asarray(out.adj[0]), 9.0 * np.eye(2))


@pytest.mark.parametrize("bad, message", [
    (dict(x=np.ones((4, 16))), "'x' must have layout \\[B,N,F\\]"),
    (dict(adj=np.ones((4, 16, 15))), "'adj' has shape"),
    (dict(s_logits=np.ones((3, 16, 4))), "'s_logits' has shape"),
    (dict(mask=np.ones((4, 15), bool)), "'mask' has shape"),
    (dict(link_loss="l2"), "'link_loss' is 'l2'"),
])
def test_wrong_inputs_raise_clear_errors(bad, message):
  batch, logits = random_inputs(0)
  args = dict(x=batch.x, adj=batch.adj, s_logits=logits,
              mask=batch.node_mask)
  args.update(bad)
  with pytest.raises(ValueError, match=message):
    dense_diff_pool(**args)


@pytest.mark.parametrize("form", ["frobenius", "bce"])
def test_cluster_mask_matches_reference_on_used_columns(form):
  """With a cluster mask, each graph pools as if its logits had only its
  own K_i columns; the other columns of S, x and adj are exactly zero."""
  batch, logits = random_inputs(4, clusters=5)
  used = np.array([3, 5, 1, 2])
  cluster_mask = np.arange(5)[None, :] < used[:, None]
  out = dense_diff_pool(batch.x, batch.adj, logits, batch.node_mask,
                        link_loss=form, cluster_mask=cluster_mask)
  links, entropies = [], []
  for i, k in enumerate(used):
    one = lambda v: v[i:i + 1]
    ref = reference_diff_pool(one(batch.x), one(batch.adj),
                              one(logits)[..., :k], one(batch.n_node), form)
    np.testing.assert_allclose(np.asarray(out.x[i, :k]), ref[0][0],
                               rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.asarray(out.adj[i, :k, :k]), ref[1][0],
                               rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.asarray(out.s[i, :, :k]), ref[2][0],
                               rtol=1e-5, atol=1e-6)
    assert not np.any(np.asarray(out.s[i, :, k:]))
    assert not np.any(np.asarray(out.x[i, k:]))
    assert not np.any(np.asarray(out.adj[i, k:])) and not np.any(
        np.asarray(out.adj[i, :, k:]))
    links.append(ref[3])
    entropies.append(ref[4])
  np.testing.assert_allclose(float(out.link_loss), np.mean(links), rtol=1e-5)
  np.testing.assert_allclose(float(out.entropy_loss), np.mean(entropies),
                             rtol=1e-5)


def test_cluster_mask_gradients_are_finite_and_zero_on_masked_columns():
  batch, logits = random_inputs(5, clusters=4)
  cluster_mask = np.arange(4)[None, :] < np.array([1, 2, 4, 3])[:, None]

  def loss(s_logits):
    out = dense_diff_pool(batch.x, batch.adj, s_logits, batch.node_mask,
                          cluster_mask=cluster_mask)
    return out.link_loss + out.entropy_loss + jnp.sum(out.x ** 2)

  grad = np.asarray(jax.grad(loss)(jnp.asarray(logits)))
  assert np.all(np.isfinite(grad))
  assert not np.any(grad * ~cluster_mask[:, None, :])
  assert np.any(grad)


def test_cluster_mask_shape_error_names_the_argument():
  batch, logits = random_inputs(6)
  with pytest.raises(ValueError, match="argument 'cluster_mask' has shape"):
    dense_diff_pool(batch.x, batch.adj, logits, batch.node_mask,
                    cluster_mask=np.ones((4, 3), bool))
