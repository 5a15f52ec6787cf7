"""JustBalance, AsymCheegerCut and HOSC against float64 NumPy references
of their papers' definitions, graph by graph, on dense and edge-list
batches with node and cluster masks, and on partitions of known value."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import diffpool_jax as dp
from diffpool_jax.models.pooling import POOLING
from tests.test_pooling_family import (REAL_CLUSTERS, inputs, normalized,
                                       ortho, softmax, two_cliques)


def justbalance_losses(s, a):
  n, k = s.shape
  return {"balance": -np.sqrt((s ** 2).sum(0)).sum() / np.sqrt(n * k)}


def asymcheegercut_losses(s, a):
  n, k = s.shape
  rows = np.abs(s[:, None, :] - s[None, :, :]).sum(-1)
  entries = np.count_nonzero(a)
  totvar = (a * rows).sum() / (2 * entries) if entries else 0.0
  if k == 1:
    return {"totvar": totvar, "balance": 0.0}
  norm = 0.0
  for c in range(k):
    q = np.sort(s[:, c])[::-1][min(n // k, n - 1)]
    norm += ((k - 1) * np.maximum(s[:, c] - q, 0)
             + np.maximum(q - s[:, c], 0)).sum()
  return {"totvar": totvar, "balance": 1 - norm / (n * (k - 1))}


def association(s, a):
  """-(1/K) sum_k (S^T A S)_kk / (S^T d)_k, node by node."""
  k = s.shape[1]
  total = 0.0
  for c in range(k):
    inside = sum(s[i, c] * a[i, j] * s[j, c] for i in range(len(s))
                 for j in range(len(s)))
    volume = sum(s[i, c] * a[i].sum() for i in range(len(s)))
    total += inside / volume if volume else 0.0
  return -total / k


def hosc_losses(s, a, alpha=0.5):
  motif = np.zeros_like(a)
  for i in range(len(a)):
    for j in range(len(a)):
      motif[i, j] = a[i, j] * sum(a[i, l] * a[l, j] for l in range(len(a)))
  return {"hosc": (1 - alpha) * association(s, a)
          + alpha * association(s, motif), "ortho": ortho(s)}


REFERENCES = {"justbalance": justbalance_losses,
              "asymcheegercut": asymcheegercut_losses, "hosc": hosc_losses}


def reference(name, batch, logits):
  """Per real graph (its n_i nodes, K_i clusters, float64): (S^T X,
  normalised S^T A S, S), and each loss's mean over real graphs."""
  outs, losses = [], []
  for i, (n, k) in enumerate(zip(batch.n_node, REAL_CLUSTERS)):
    if n == 0:
      outs.append(None)
      continue
    a = batch.adj[i, :n, :n].astype(np.float64)
    s = softmax(logits[i, :n, :k].astype(np.float64))
    outs.append((s.T @ batch.x[i, :n].astype(np.float64),
                 normalized(s.T @ a @ s), s))
    losses.append(REFERENCES[name](s, a))
  return outs, {key: np.mean([l[key] for l in losses]) for key in losses[0]}


@pytest.mark.parametrize("name", sorted(REFERENCES))
@pytest.mark.parametrize("weighted", [False, True])
def test_matches_float64_reference(name, weighted):
  dense, _, logits, cluster_mask = inputs(0, weighted)
  out = POOLING[name].function(dense.x, dense.adj, logits, dense.node_mask,
                               cluster_mask=cluster_mask)
  expected, losses = reference(name, dense, logits)
  assert set(out.aux) == set(POOLING[name].aux_names) == set(losses)
  for key, value in losses.items():
    np.testing.assert_allclose(float(out.aux[key]), value, rtol=1e-5,
                               atol=1e-6, err_msg=key)
  for i, graph in enumerate(expected):
    if graph is None:
      assert not np.any(np.asarray(out.s[i]))
      continue
    pooled_x, pooled_adj, s = graph
    n, k = s.shape
    np.testing.assert_allclose(np.asarray(out.s[i, :n, :k]), s, rtol=1e-5,
                               atol=1e-6)
    np.testing.assert_allclose(np.asarray(out.x[i, :k]), pooled_x,
                               rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(np.asarray(out.adj[i, :k, :k]), pooled_adj,
                               rtol=1e-5, atol=1e-6)
    assert not np.any(np.asarray(out.adj[i, k:]))


@pytest.mark.parametrize("name", ["justbalance", "asymcheegercut"])
def test_edge_list_matches_dense(name):
  """Values and gradients from an EdgeList equal the dense ones."""
  dense, sparse, logits, cluster_mask = inputs(1, weighted=True)

  def objective(batch, s_logits):
    out = POOLING[name].function(batch.x, batch.adj, s_logits,
                                 batch.node_mask, cluster_mask=cluster_mask)
    return sum(out.aux.values()) + jnp.sum(out.x ** 2) + jnp.sum(out.adj)

  (want, want_grad), (got, got_grad) = [
      jax.value_and_grad(objective, argnums=1)(b, logits)
      for b in (dense, sparse)]
  np.testing.assert_allclose(float(got), float(want), rtol=1e-5)
  assert np.all(np.isfinite(np.asarray(want_grad)))
  np.testing.assert_allclose(np.asarray(got_grad), np.asarray(want_grad),
                             rtol=1e-4, atol=1e-6)


def test_hosc_is_dense_only_and_says_so():
  assert POOLING["hosc"].needs_dense({"alpha": 0.5})
  assert not POOLING["justbalance"].needs_dense({})
  assert not POOLING["asymcheegercut"].needs_dense({})
  _, sparse, logits, _ = inputs(2)
  with pytest.raises(ValueError, match="dense_hosc_pool needs the dense"):
    dp.models.pooling.dense_hosc_pool(sparse.x, sparse.adj, logits,
                                      sparse.node_mask)


def test_known_values_of_a_perfect_partition():
  """Two triangles, one cluster each: a balanced hard partition (balance
  -1 for JustBalance, 0 for the asymmetric norm), no edge across (total
  variation 0), every edge's and triangle's volume inside its cluster
  (hosc -1)."""
  batch, logits = two_cliques()
  run = lambda name: POOLING[name].function(batch.x, batch.adj, logits,
                                            batch.node_mask).aux
  np.testing.assert_allclose(float(run("justbalance")["balance"]), -1.0,
                             atol=1e-6)
  cheeger = run("asymcheegercut")
  np.testing.assert_allclose(float(cheeger["totvar"]), 0.0, atol=1e-6)
  np.testing.assert_allclose(float(cheeger["balance"]), 0.0, atol=1e-6)
  np.testing.assert_allclose(float(run("hosc")["hosc"]), -1.0, atol=1e-6)
  # All six nodes in one cluster: JustBalance's worst, -1/sqrt(K).
  one = np.zeros_like(logits)
  one[..., 0] = 30.0
  lumped = POOLING["justbalance"].function(batch.x, batch.adj, one,
                                           batch.node_mask).aux["balance"]
  np.testing.assert_allclose(float(lumped), -1 / np.sqrt(2), atol=1e-6)


def test_hosc_weighs_orthogonality_as_its_paper():
  config = dp.preset("paper", pooling="hosc")
  assert config.weights == {"hosc": 1.0, "ortho": 0.1}
  assert dp.preset("paper", pooling="hosc",
                   aux_weights=(("ortho", 1.0),)).weights["ortho"] == 1.0
  assert config.needs_dense


@pytest.mark.parametrize("name", sorted(REFERENCES))
def test_nearly_empty_clusters_keep_finite_gradients(name):
  """A cluster whose logits sit 60 below the others (volume ~1e-26): the
  losses' gradients stay finite (an unclamped division by the volume
  gives 0 * inf)."""
  dense, _, logits, _ = inputs(3)
  logits = logits.copy()
  logits[..., 1] -= 60.0

  def losses(s_logits):
    out = POOLING[name].function(dense.x, dense.adj, s_logits,
                                 dense.node_mask)
    return sum(out.aux.values())

  assert np.all(np.isfinite(np.asarray(jax.grad(losses)(logits))))
