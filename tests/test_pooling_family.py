"""MinCutPool and DMoN against float64 NumPy references, on dense and
edge-list adjacencies, with node and cluster masks; the operator registry."""

import functools
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import diffpool_jax as dp
from diffpool_jax.models.pooling import POOLING, check_operator
from tests.helpers import random_graph

SIZES, NUM_NODES, CLUSTERS = (9, 14, 4, 1, 0), 16, 5
# Each graph's real cluster count (a padding graph of 0 nodes keeps 1).
REAL_CLUSTERS = (3, 5, 2, 1, 1)


def softmax(logits):
  e = np.exp(logits - logits.max(-1, keepdims=True))
  return e / e.sum(-1, keepdims=True)


def normalized(pooled):
  a = pooled.copy()
  np.fill_diagonal(a, 0.0)
  d = a.sum(1)
  inv = np.where(d > 0, 1.0 / np.sqrt(np.where(d > 0, d, 1.0)), 0.0)
  return a * inv[:, None] * inv[None, :]


def ortho(s):
  ss = s.T @ s
  k = s.shape[1]
  return np.linalg.norm(ss / np.linalg.norm(ss) - np.eye(k) / np.sqrt(k))


def reference(operator, x, adj, logits, n_node, clusters):
  """Per real graph, cut to its n_i nodes and K_i clusters (float64):
  (pooled x, normalised pooled adj, S, {loss: mean over real graphs})."""
  outs, losses = [], []
  for i, (n, k) in enumerate(zip(n_node, clusters)):
    if n == 0:
      outs.append(None)
      continue
    z = x[i, :n].astype(np.float64)
    a = adj[i, :n, :n].astype(np.float64)
    s = softmax(logits[i, :n, :k].astype(np.float64))
    pooled = s.T @ a @ s
    d = a.sum(1)
    # A graph without edges (here the 1-node one) has no cut or modularity:
    # the operators define both losses as 0 there.
    if operator == "mincut":
      volume = (s.T @ np.diag(d) @ s).trace()
      loss = {"mincut": -np.trace(pooled) / volume if volume else 0.0,
              "ortho": ortho(s)}
      pooled_x = s.T @ z
    else:
      m = a.sum() / 2
      modularity = (np.trace(pooled - np.outer(s.T @ d, d @ s) / (2 * m))
                    if m else 0.0)
      loss = {"spectral": -modularity / (2 * m) if m else 0.0,
              "ortho": ortho(s),
              "cluster": np.sqrt(k) / n * np.linalg.norm(s.sum(0)) - 1}
      pooled_x = s.T @ z
      pooled_x = np.where(pooled_x > 0, pooled_x,
                          1.6732632423543772 * (np.exp(pooled_x) - 1))
      pooled_x *= 1.0507009873554805
    outs.append((pooled_x, normalized(pooled), s))
    losses.append(loss)
  means = {name: np.mean([l[name] for l in losses]) for name in losses[0]}
  return outs, means


def inputs(seed, weighted=False):
  """The same random graphs as a dense and a sparse batch, assignment
  logits [B,N,K] and the cluster mask [B,K]."""
  rng = np.random.default_rng(seed)
  graphs = [random_graph(rng, n, 6, edge_prob=0.4) for n in SIZES]
  edges = [g[0] for g in graphs]
  weights = ([rng.uniform(0.5, 2.0, len(e)).astype(np.float32) for e in edges]
             if weighted else None)
  labels = np.zeros(len(SIZES), np.int64)
  dense = dp.dense_batch(edges, [g[1] for g in graphs], labels, NUM_NODES,
                         edge_weights=weights)
  sparse = dp.sparse_batch(edges, [g[1] for g in graphs], labels, NUM_NODES,
                           num_edges=max(len(e) for e in edges) + 4,
                           edge_weights=weights)
  logits = rng.normal(size=(len(SIZES), NUM_NODES, CLUSTERS)).astype(
      np.float32)
  cluster_mask = np.arange(CLUSTERS)[None] < np.array(REAL_CLUSTERS)[:, None]
  return dense, sparse, logits, cluster_mask


OPERATORS = {"mincut": dp.dense_mincut_pool, "dmon": dp.dense_dmon_pool}


@pytest.mark.parametrize("operator", sorted(OPERATORS))
@pytest.mark.parametrize("weighted", [False, True])
def test_matches_float64_reference(operator, weighted):
  dense, _, logits, cluster_mask = inputs(0, weighted)
  out = OPERATORS[operator](dense.x, dense.adj, logits, dense.node_mask,
                            cluster_mask=cluster_mask)
  expected, losses = reference(operator, dense.x, dense.adj, logits,
                               dense.n_node, REAL_CLUSTERS)
  assert set(out.aux) == set(POOLING[operator].aux_names) == set(losses)
  for name, value in losses.items():
    np.testing.assert_allclose(float(out.aux[name]), value, rtol=2e-5,
                               atol=1e-6, err_msg=name)
  for i, graph in enumerate(expected):
    if graph is None:                 # a padding graph pools to nothing
      assert not np.any(np.asarray(out.s[i]))
      assert not np.any(np.asarray(out.adj[i]))
      continue
    pooled_x, pooled_adj, s = graph
    n, k = s.shape
    np.testing.assert_allclose(np.asarray(out.s[i, :n, :k]), s, rtol=1e-5,
                               atol=1e-6)
    assert not np.any(np.asarray(out.s[i, n:])), "padded node rows"
    assert not np.any(np.asarray(out.s[i, :, k:])), "masked cluster columns"
    np.testing.assert_allclose(np.asarray(out.x[i, :k]), pooled_x,
                               rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(np.asarray(out.adj[i, :k, :k]), pooled_adj,
                               rtol=1e-5, atol=1e-6)
    assert not np.any(np.asarray(out.adj[i, k:])), "masked cluster rows"


@pytest.mark.parametrize("operator", sorted(OPERATORS))
def test_edge_list_matches_dense(operator):
  """Values and gradients, from an EdgeList (no N x N matrix) and dense."""
  dense, sparse, logits, cluster_mask = inputs(1, weighted=True)

  def objective(batch, s_logits):
    out = OPERATORS[operator](batch.x, batch.adj, s_logits, batch.node_mask,
                              cluster_mask=cluster_mask)
    total = sum(out.aux.values()) + jnp.sum(out.x ** 2) + jnp.sum(out.adj)
    return total, out

  results = [jax.value_and_grad(objective, argnums=1, has_aux=True)(b, logits)
             for b in (dense, sparse)]
  (_, dense_out), dense_grad = results[0]
  (_, sparse_out), sparse_grad = results[1]
  for name in dense_out.aux:
    np.testing.assert_allclose(float(sparse_out.aux[name]),
                               float(dense_out.aux[name]), rtol=1e-5,
                               atol=1e-6)
  for field in ("x", "adj", "s"):
    np.testing.assert_allclose(np.asarray(getattr(sparse_out, field)),
                               np.asarray(getattr(dense_out, field)),
                               rtol=1e-5, atol=1e-6)
  assert np.all(np.isfinite(np.asarray(dense_grad)))
  np.testing.assert_allclose(np.asarray(sparse_grad), np.asarray(dense_grad),
                             rtol=1e-4, atol=1e-6)
  masked = ~cluster_mask[:, None, :] | ~np.asarray(dense.node_mask)[..., None]
  assert not np.any(np.asarray(dense_grad)[np.broadcast_to(
      masked, dense_grad.shape)]), "gradient reaches masked slots"


def two_cliques():
  """Two disjoint triangles, and the assignment logits that put each in
  its own cluster (almost one-hot)."""
  edges = np.array([(a, b) for block in ((0, 1, 2), (3, 4, 5))
                    for a in block for b in block if a != b])
  batch = dp.dense_batch([edges], [np.ones((6, 1), np.float32)],
                         np.zeros(1, np.int64), 6)
  logits = np.full((1, 6, 2), -30.0, np.float32)
  logits[0, :3, 0] = logits[0, 3:, 1] = 30.0
  return batch, logits


def test_known_values_of_a_perfect_partition():
  """Two triangles, one cluster each: no cut edge (mincut -1), orthogonal
  equal clusters (ortho 0, cluster 0), modularity 1/2 (spectral -1/2)."""
  batch, logits = two_cliques()
  cut = dp.dense_mincut_pool(batch.x, batch.adj, logits, batch.node_mask)
  np.testing.assert_allclose(float(cut.aux["mincut"]), -1.0, atol=1e-6)
  np.testing.assert_allclose(float(cut.aux["ortho"]), 0.0, atol=1e-6)
  mod = dp.dense_dmon_pool(batch.x, batch.adj, logits, batch.node_mask)
  np.testing.assert_allclose(float(mod.aux["spectral"]), -0.5, atol=1e-6)
  np.testing.assert_allclose(float(mod.aux["cluster"]), 0.0, atol=1e-6)
  # Self loops removed; the vanishing edge between the clusters (degree
  # ~1e-26, below MIN_DEGREE) stays vanishing: an empty pooled graph.
  np.testing.assert_allclose(np.asarray(cut.adj[0]), 0.0, atol=1e-12)


def test_nearly_empty_clusters_keep_finite_gradients():
  """A cluster with a vanishing degree (1e-30): the normalised pooled
  adjacency and its gradient stay finite (an unclamped d^-1/2 overflows)."""
  from diffpool_jax.models.pooling.common import normalized_pooled_adjacency
  tiny = 1e-30
  pooled = jnp.array([[[0.0, tiny, 1.0], [tiny, 0.0, tiny],
                       [1.0, tiny, 0.0]]])
  weights = jnp.arange(9.0).reshape(1, 3, 3)
  grads = jax.grad(lambda a: jnp.sum(normalized_pooled_adjacency(a)
                                     * weights))(pooled)
  assert np.all(np.isfinite(np.asarray(grads)))
  np.testing.assert_allclose(
      np.asarray(normalized_pooled_adjacency(pooled))[0],
      [[0, 0, 1], [0, 0, 0], [1, 0, 0]], atol=1e-12)


def test_one_cluster_collapse_is_penalised():
  """All nodes in one of 2 clusters: cluster loss sqrt(2) - 1, ortho
  sqrt(2 - sqrt(2)), modularity 0."""
  batch, logits = two_cliques()
  logits[0, :, 0], logits[0, :, 1] = 30.0, -30.0
  out = dp.dense_dmon_pool(batch.x, batch.adj, logits, batch.node_mask)
  np.testing.assert_allclose(float(out.aux["cluster"]), np.sqrt(2) - 1,
                             rtol=1e-6)
  np.testing.assert_allclose(float(out.aux["ortho"]),
                             np.sqrt(2 - np.sqrt(2)), rtol=1e-6)
  np.testing.assert_allclose(float(out.aux["spectral"]), 0.0, atol=1e-6)


def test_graph_without_edges_gives_finite_zero_losses():
  batch = dp.dense_batch([np.zeros((0, 2), np.int64)],
                         [np.ones((4, 1), np.float32)], np.zeros(1, np.int64),
                         4)
  logits = np.random.default_rng(0).normal(size=(1, 4, 2)).astype(np.float32)
  for name, operator in OPERATORS.items():
    grads = jax.grad(lambda l: sum(operator(batch.x, batch.adj, l,
                                            batch.node_mask).aux.values()))(
                                                logits)
    out = operator(batch.x, batch.adj, logits, batch.node_mask)
    loss = "mincut" if name == "mincut" else "spectral"
    assert float(out.aux[loss]) == 0.0
    assert np.all(np.isfinite(np.asarray(grads)))


@pytest.mark.parametrize("name", sorted(POOLING))
@pytest.mark.parametrize("bad, message", [
    (dict(x=np.ones((2, 5), np.float32)), "argument 'x'"),
    (dict(s_logits=np.ones((2, 4, 3), np.float32)), "argument 's_logits'"),
    (dict(mask=np.ones((2, 6), bool)), "argument 'mask'"),
    (dict(cluster_mask=np.ones((2, 4), bool)), "argument 'cluster_mask'"),
])
def test_bad_arguments_are_named(name, bad, message):
  operator = POOLING[name]
  args = dict(x=np.ones((2, 5, 3), np.float32),
              adj=np.ones((2, 5, 5), np.float32),
              s_logits=np.ones((2, 5, operator.logit_columns(3)),
                               np.float32),
              mask=np.ones((2, 5), bool), cluster_mask=None)
  args.update(bad)
  with pytest.raises(ValueError, match=message):
    operator.function(args["x"], args["adj"], args["s_logits"],
                      args["mask"], cluster_mask=args["cluster_mask"],
                      **operator.extra_arguments(3))


@pytest.mark.parametrize("name", sorted(POOLING))
def test_registry_names_every_returned_loss(name):
  operator = POOLING[name]
  dense, _, _, _ = inputs(2)
  logits = np.random.default_rng(2).normal(
      size=dense.x.shape[:2] + (operator.logit_columns(CLUSTERS),))
  out = operator.function(dense.x, dense.adj, logits, dense.node_mask,
                          **operator.extra_arguments(CLUSTERS))
  assert tuple(out.aux) == operator.aux_names
  assert out.x.shape == (len(SIZES), CLUSTERS, 6)
  assert out.adj.shape == (len(SIZES), CLUSTERS, CLUSTERS)


def dense_balance_pool(x, adj, s_logits, mask=None, cluster_mask=None):
  """The docs' example operator: DiffPool's coarsening with one loss."""
  from diffpool_jax.models.pooling.common import assign, per_graph_mean
  a = assign(x, adj, s_logits, mask, cluster_mask, "dense_balance_pool")
  sizes = jnp.sum(a.s, axis=1)
  balance = (jnp.sum(sizes ** 2, axis=1)
             / jnp.maximum(jnp.sum(a.mask, 1), 1) ** 2)
  aux = {"balance": per_graph_mean(balance, a.graph_mask)}
  return dp.PoolOutput(a.x, a.adj, a.s, aux)


def test_a_new_operator_needs_only_a_function_and_a_registry_entry(
    monkeypatch, tmp_path):
  """Registered by name, the operator trains through Run with its loss
  weighted and recorded by name; no other code knows about it."""
  from diffpool_jax.models.pooling import PoolingOperator
  from diffpool_jax.run import Run, RunConfig
  monkeypatch.setitem(POOLING, "balance",
                      PoolingOperator(dense_balance_pool, ("balance",)))
  config = RunConfig(
      dataset="synthetic", folds=2, epochs=2, max_buckets=1, protocol="paper",
      synthetic={"num_graphs": 24, "communities": [2, 3],
                 "community_size": [3, 4]},
      model={"pooling": "balance", "hidden_dim": 8, "embed_dim": 8,
             "num_layers": 1, "mlp_hidden": [8], "pool_ratios": [0.5],
             "aux_weights": {"balance": 0.5}})
  run = Run(config, tmp_path / "run")
  results = run.fit(progress=False)
  assert run.model_config.weights == {"balance": 0.5}
  balance = run.history["train_balance"]
  assert balance.shape == (2, 2) and np.all((balance > 0) & (balance <= 1))
  assert 0 <= results["score"] <= 1


def dense_sharpened_pool(x, adj, s_logits, mask=None, cluster_mask=None,
                         temperature=1.0, exact=False, calls=None):
  """A test operator with options: the balance operator on s / temperature
  (`exact` stands for an option value that needs the dense form)."""
  if calls is not None:
    calls.append((temperature, exact, type(adj).__name__))
  return dense_balance_pool(x, adj, s_logits / temperature, mask,
                            cluster_mask)


def test_registration_checks_the_declared_losses():
  from diffpool_jax.models.pooling import PoolingOperator, register_pooling
  for name, operator in POOLING.items():
    check_operator(name, operator)                  # the built-ins agree
  with pytest.raises(ValueError, match=r"'wrong': declares the losses "
                     r"\['link'\] but returns \['balance'\]"):
    register_pooling("wrong", PoolingOperator(dense_balance_pool, ("link",)))
  assert "wrong" not in POOLING


def test_an_operator_with_an_option_and_a_dense_only_rule_trains_from_the_cli(
    tmp_path, monkeypatch):
  """Registered from this file alone: --pooling picks it, --pool-option
  sets its options, --aux-weight weighs its loss by name, and its
  dense-only rule keeps every bucket dense (even where the cost rule,
  forced here, would choose edge lists)."""
  from diffpool_jax.cli import train
  from diffpool_jax.engine import session
  from diffpool_jax.models.pooling import PoolingOperator, register_pooling
  from tests.test_train_command import read_metrics, write_config
  calls = []
  register_pooling("sharpened", PoolingOperator(
      functools.partial(dense_sharpened_pool, calls=calls), ("balance",),
      {"temperature": 1.0, "exact": False},
      lambda options: bool(options["exact"])))
  calls.clear()                      # the registration check's own call
  monkeypatch.setattr(session, "sparse_by_cost",
                      lambda sizes, slots: [True] * len(sizes))
  try:
    out = tmp_path / "run"
    flags = ["--config", str(write_config(tmp_path)), "--folds", "2",
             "--epochs", "2", "--quiet", "--no-plots", "--compile-cache",
             "off", "--pooling", "sharpened", "--aux-weight", "balance=0.25"]
    train.main(flags + ["--out", str(out), "--pool-option",
                        "temperature=0.5", "exact=true"])
    saved = json.loads((out / "config.json").read_text())
    assert saved["model"]["pool_options"] == [["exact", True],
                                              ["temperature", 0.5]]
    assert dict(saved["model"]["aux_weights"]) == {"balance": 0.25}
    assert not any(saved["sparse_buckets"])          # dense-only rule
    assert calls and all(c[:2] == (0.5, True) for c in calls)
    assert all(c[2] != "EdgeList" for c in calls)
    assert all("train_balance" in row for row in read_metrics(out))
    with pytest.raises(SystemExit, match="needs the dense first level"):
      train.main(flags + ["--out", str(tmp_path / "sparse"), "--pool-option",
                          "exact=true", "--first-level", "sparse"])
    with pytest.raises(SystemExit, match="'tempo' is not an option of "
                       "pooling='sharpened'"):
      train.main(flags + ["--out", str(tmp_path / "bad"), "--pool-option",
                          "tempo=2"])
    with pytest.raises(SystemExit, match=r"temperature=\[0.5\] is not "
                       "hashable"):     # it keys the compiled programs
      train.main(flags + ["--out", str(tmp_path / "bad"), "--pool-option",
                          "temperature=[0.5]"])
  finally:
    POOLING.pop("sharpened", None)


@pytest.mark.parametrize("name", sorted(POOLING))
def test_two_levels_keep_finite_gradients_when_the_first_collapses(name):
  """A first level that puts every node into one cluster (logit gap 20 to
  120) leaves the coarsened graph a volume of ~1e-30; the second level's
  losses divide by it. MinCutPool and DMoN gave NaN gradients at gaps
  60-87 before common.floored_volume (the ENZYMES divergences of the
  comparison table)."""
  operator = POOLING[name]
  rng = np.random.default_rng(0)
  nodes, clusters, coarse = 12, 4, 2
  upper = np.triu(rng.random((1, nodes, nodes)) < 0.3, 1)
  adj = jnp.asarray((upper | upper.transpose(0, 2, 1)).astype(np.float32))
  x = jnp.asarray(rng.normal(size=(1, nodes, 3)).astype(np.float32))
  second = jnp.asarray(rng.normal(
      size=(1, clusters, operator.logit_columns(coarse))).astype(np.float32))
  first_extra = operator.extra_arguments(clusters, jax.random.key(1))
  second_extra = operator.extra_arguments(coarse, jax.random.key(2))

  def objective(first, second):
    one = operator.function(x, adj, first, **first_extra)
    two = operator.function(one.x, one.adj, second, **second_extra)
    return (sum(one.aux.values()) + sum(two.aux.values()) + jnp.sum(two.x)
            + jnp.sum(two.adj))

  gradients = jax.jit(jax.grad(objective, argnums=(0, 1)))
  for gap in (20.0, 60.0, 80.0, 87.0, 120.0):
    first = np.zeros((1, nodes, operator.logit_columns(clusters)), np.float32)
    first[..., 0] = gap
    for part in gradients(jnp.asarray(first), second):
      assert np.all(np.isfinite(np.asarray(part))), (name, gap)
