"""Padded entries never leak: NaN, inf or 1e30 in whatever a batch pads
(padded nodes' features, their adjacency rows and columns, their
assignment logits, masked cluster columns, an edge list's padding
entries) changes no output and no gradient of any pooling operator, of
any preset's classifier (linen and NNX) or of either first-level form.
Each dirty batch is compared with the clean one (zeros in the padding)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx as fnnx

import diffpool_jax as dp
from diffpool_jax import nnx
from diffpool_jax.adjacency import EdgeList
from diffpool_jax.graphs import dense_batch, sparse_batch
from diffpool_jax.models.classifier import rng_streams
from diffpool_jax.models.pooling import POOLING
from diffpool_jax.models.presets import PRESETS
from tests.helpers import random_graph

FILLS = (np.nan, np.inf, -np.inf, 1e30)
NODES = 8
SIZES = (5, 3, 7)      # every graph leaves padded nodes; one padding graph
SMALL = dict(hidden_dim=8, embed_dim=8, num_layers=2, mlp_hidden=(8,))


def graphs():
  rng = np.random.default_rng(0)
  made = [random_graph(rng, n, 4, 0.5) for n in SIZES]
  return [g[0] for g in made], [g[1] for g in made], [0, 1, 2]


def clean_batch(form: str):
  """Three graphs and a padding graph; form "dense" or "edges"."""
  edges, features, labels = graphs()
  if form == "dense":
    return dense_batch(edges, features, labels, NODES, batch_size=4)
  return sparse_batch(edges, features, labels, NODES, num_edges=40,
                      batch_size=4)


def dirty(batch, fill):
  """The batch with `fill` in every padded entry: padded nodes' features
  and dense adjacency rows and columns; an edge list's padding entries
  moved onto the last (padded) node with weight `fill`."""
  padded = ~np.asarray(batch.node_mask)
  x = np.where(padded[..., None], np.float32(fill), batch.x)
  if isinstance(batch.adj, EdgeList):
    padding = np.asarray(batch.adj.weights) == 0
    adj = EdgeList(np.where(padding, NODES - 1, batch.adj.senders),
                   np.where(padding, NODES - 1, batch.adj.receivers),
                   np.where(padding, np.float32(fill), batch.adj.weights),
                   NODES)
  else:
    touches = padded[:, :, None] | padded[:, None, :]
    adj = np.where(touches, np.float32(fill), batch.adj)
  return batch.replace(x=x.astype(np.float32), adj=adj)


def assert_same(got, want):
  """Trees equal (float32 rounding aside); the clean values are finite."""
  for g, w in zip(jax.tree_util.tree_leaves(got),
                  jax.tree_util.tree_leaves(want)):
    assert np.all(np.isfinite(w))
    np.testing.assert_allclose(np.asarray(g), np.asarray(w), rtol=1e-6,
                               atol=1e-6)


OPERATOR_CASES = [(name, options, form)
                  for name, options in [("diffpool", {"link_loss": "frobenius"}),
                                        ("diffpool", {"link_loss": "pyg"}),
                                        ("diffpool", {"link_loss": "bce"}),
                                        ("mincut", {}), ("dmon", {}),
                                        ("justbalance", {}),
                                        ("asymcheegercut", {}),
                                        ("hosc", {"alpha": 0.5}),
                                        ("bnpool", {"alpha_dp": 2.0})]
                  for form in ("dense", "edges")
                  if not (form == "edges"
                          and POOLING[name].needs_dense(options))]


@pytest.mark.parametrize("name,options,form", OPERATOR_CASES)
def test_operator_outputs_and_gradients_ignore_padding(name, options, form):
  assert {case[0] for case in OPERATOR_CASES} == set(POOLING)
  operator = POOLING[name]
  batch = clean_batch(form)
  rng = np.random.default_rng(1)
  clusters = 4
  columns = operator.logit_columns
  s_logits = rng.normal(size=(4, NODES, columns(clusters))).astype(
      np.float32)
  # graph 1 may use 2 clusters only; the padding graph none
  cluster_mask = np.array([[1, 1, 1, 1], [1, 1, 0, 0], [1, 1, 1, 1],
                           [0, 0, 0, 0]], bool)
  weights = [rng.normal(size=shape).astype(np.float32)
             for shape in [(4, clusters, 4), (4, clusters, clusters)]]
  # Parameters (BN-Pool's block matrix) and a fixed key for the draws.
  extra = operator.extra_arguments(clusters, jax.random.key(5))

  def objective(x, adj, logits):
    out = operator.function(x, adj, logits, batch.node_mask,
                            cluster_mask=cluster_mask, **options, **extra)
    value = (jnp.sum(out.x * weights[0]) + jnp.sum(out.adj * weights[1])
             + sum(out.aux.values()))
    return value, out

  run = jax.jit(jax.grad(objective, argnums=(0, 2), has_aux=True))
  want = run(batch.x, batch.adj, s_logits)
  # A graph of K_i clusters reads the first logit_columns(K_i) columns.
  used = (np.arange(columns(clusters))[None]
          < np.array([columns(max(k, 1)) if k else 0
                      for k in cluster_mask.sum(1)])[:, None])
  masked = ~batch.node_mask[..., None] | ~used[:, None, :]
  for fill in FILLS:
    unclean = dirty(batch, fill)
    logits = np.where(masked, np.float32(fill), s_logits)
    assert_same(run(unclean.x, unclean.adj, logits), want)


def model_batches(form):
  batch = clean_batch(form)
  return batch, [dirty(batch, fill) for fill in FILLS]


PRESET_CASES = [(name, form) for name in PRESETS for form in ("dense", "edges")
                if not (form == "edges" and PRESETS[name].needs_dense)]


@pytest.mark.parametrize("name,form", PRESET_CASES)
def test_linen_classifier_ignores_padding(name, form):
  batch, unclean = model_batches(form)
  model = dp.DiffPool(dp.preset(name, **SMALL), num_classes=3,
                      max_nodes=NODES)
  variables = model.init(jax.random.key(0), batch.x, batch.adj,
                         batch.node_mask)

  def loss(params, x, adj):
    (logits, levels), updates = model.apply(
        {**variables, "params": params}, x, adj, batch.node_mask,
        train=True, mutable=["batch_stats"],
        rngs=rng_streams(jax.random.key(2)))
    real = batch.n_node > 0
    nll = -jnp.take_along_axis(jax.nn.log_softmax(logits),
                               batch.labels[:, None], 1)[:, 0]
    value = jnp.sum(jnp.where(real, nll, 0.0)) + dp.auxiliary_loss(
        levels, {k: 1.0 for k in dp.level_losses(levels)})
    return value, (logits, [(l.s, l.adj, l.aux) for l in levels], updates)

  run = jax.jit(jax.grad(loss, has_aux=True))
  want = run(variables["params"], batch.x, batch.adj)
  for other in unclean:
    assert_same(run(variables["params"], other.x, other.adj), want)


@pytest.mark.parametrize("name", list(PRESETS))
def test_nnx_classifier_ignores_padding(name):
  batch, unclean = model_batches("dense")
  model = nnx.DiffPool(dp.preset(name, **SMALL), 4, 3, NODES,
                       rngs=fnnx.Rngs(0))

  @fnnx.jit
  def run(model, x, adj):
    logits, levels = model(x, adj, batch.node_mask, train=True,
                           key=jax.random.key(2))
    return logits, [(l.s, l.adj, l.aux) for l in levels]

  graph, state = fnnx.split(model)
  want = run(fnnx.merge(graph, state), batch.x, batch.adj)
  for other in unclean:
    assert_same(run(fnnx.merge(graph, state), other.x, other.adj), want)


def test_masks_must_be_boolean_or_exactly_zero_one():
  batch = clean_batch("dense")
  s_logits = np.zeros((4, NODES, 2), np.float32)
  half = batch.node_mask.astype(np.float32) * 0.5
  with pytest.raises(ValueError, match=r"dense_diff_pool: argument 'mask' "
                     r"has the value 0.5 at \(0, 0\); a mask must be bool "
                     "or exactly 0/1"):
    dp.dense_diff_pool(batch.x, batch.adj, s_logits, half)
  with pytest.raises(ValueError, match="argument 'cluster_mask' has the "
                     "value 2"):
    dp.dense_mincut_pool(batch.x, batch.adj, s_logits, batch.node_mask,
                         cluster_mask=np.full((4, 2), 2))
  model = dp.DiffPool(dp.preset("paper", **SMALL), 3, NODES)
  with pytest.raises(ValueError, match="DiffPool: argument 'node_mask' has "
                     "the value 0.5"):
    model.init(jax.random.key(0), batch.x, batch.adj, half)
  # exactly 0/1 numbers are a mask; inside jit only bool is
  ones = batch.node_mask.astype(np.float32)
  want = dp.dense_diff_pool(batch.x, batch.adj, s_logits, batch.node_mask)
  assert_same(dp.dense_diff_pool(batch.x, batch.adj, s_logits, ones), want)
  with pytest.raises(ValueError, match="inside jit its values cannot be "
                     "checked: pass a bool array"):
    jax.jit(dp.dense_diff_pool)(batch.x, batch.adj, s_logits, ones)


def test_more_clusters_than_nodes():
  """A level may not have more clusters than the graph it pools can have
  nodes (an error naming the level); a graph smaller than a fixed count is
  allowed and documented: its surplus clusters get only soft mass."""
  config = dp.preset("pyg", num_clusters=(NODES + 1,), **SMALL)
  with pytest.raises(ValueError, match=r"DiffPool: level 1 has 9 clusters, "
                     r"more than max_nodes, the largest graph \(8\)"):
    dp.DiffPool(config, 3, NODES).init(
        jax.random.key(0), np.zeros((1, NODES, 4), np.float32),
        np.zeros((1, NODES, NODES), np.float32))
  growing = dp.preset("pyg", num_clusters=(4, 6), **SMALL)
  with pytest.raises(ValueError, match="nnx.DiffPool: level 2 has 6 "
                     r"clusters, more than level 1's 4 clusters \(4\)"):
    nnx.DiffPool(growing, 4, 3, NODES, rngs=fnnx.Rngs(0))
  # graph 1 has 3 nodes and 6 clusters: finite, rows of S sum to 1
  batch = clean_batch("dense")
  s_logits = np.random.default_rng(0).normal(size=(4, NODES, 6))
  out = dp.dense_diff_pool(batch.x, batch.adj, s_logits.astype(np.float32),
                           batch.node_mask)
  rows = np.asarray(out.s).sum(-1)
  np.testing.assert_allclose(rows[batch.node_mask], 1.0, rtol=1e-6)
  assert np.all(np.isfinite(out.x)) and np.isfinite(out.link_loss)
